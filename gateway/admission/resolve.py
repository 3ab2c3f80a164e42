"""Campaign resolution (DESIGN.md §2): which campaign a message belongs to.

And what its sender declared. Key header list, implicit campaigns (sender + normalised subject),
client scoping, declaration headers. Pure functions of the parsed header block.
"""

from __future__ import annotations

import re

import structlog

from gateway.mail.addresses import normalise_address
from gateway.mail.headers import HeaderBlock
from gateway.model import CampaignRef, Declaration, Inbound
from gateway.settings import CampaignSettings

log = structlog.get_logger(__name__)

DECLARATION_HEADERS = ("X-Declared-Size", "X-Campaign-Category", "X-Campaign-Locale")
_SPACES = re.compile(r"\s+")


def normalise_subject(subject: str) -> str:
    """Fold case and whitespace so that cosmetic differences do not split a campaign."""
    return _SPACES.sub(" ", subject).strip().casefold()


def comparable(address: str, casefold_local: bool = True) -> str:
    """Return how a recipient is compared with others and with segments."""
    # An address a segment could not hold still needs a stable form for duplicates.
    return normalise_address(address, casefold_local) or address.strip().casefold()


def read_declaration(headers: HeaderBlock) -> Declaration:
    """Read the declaration headers; a size that is not a whole number is left undeclared."""
    size_text = headers.get("X-Declared-Size")
    size = int(size_text) if size_text and size_text.strip().isdigit() else None
    if size_text is not None and size is None:
        log.warning("declared_size_invalid", value=size_text)
    return Declaration(
        size=size,
        category=(headers.get("X-Campaign-Category") or "").strip().lower() or None,
        locale=(headers.get("X-Campaign-Locale") or "").strip() or None,
    )


def resolve(headers: HeaderBlock, inbound: Inbound, settings: CampaignSettings) -> CampaignRef:
    """Work out the campaign of a message (DESIGN.md §2)."""
    subject = headers.get("Subject") or ""
    declaration = read_declaration(headers)
    for name in settings.key_headers:
        value = headers.get(name)
        if value and value.strip():
            return CampaignRef(
                client=inbound.client,
                key=value.strip(),
                implicit=False,
                sender=inbound.mail_from,
                subject=subject,
                declaration=declaration,
            )
    key = f"implicit:{inbound.mail_from.lower()}:{normalise_subject(subject)}"
    return CampaignRef(
        client=inbound.client,
        key=key,
        implicit=True,
        sender=inbound.mail_from,
        subject=subject,
        declaration=declaration,
    )
