"""Campaign resolution (DESIGN.md §2): which campaign a message belongs to.

And what its sender declared. Key header list, implicit campaigns (sender + normalised subject),
client scoping, declaration headers. Pure functions of the parsed header block.

`check_headers` runs first: a key or declaration header that no retry could make valid
(not UTF-8, control characters, too long, a size that is not a number) refuses the
message with `MessageRefused`, naming the header. Text that is only shown (the subject)
is made storable instead: bytes that are not UTF-8 become U+FFFD, and the content
analysis reports them, which holds the campaign.
"""

from __future__ import annotations

import hashlib
import re

import structlog

from gateway.errors import MessageRefused
from gateway.mail.addresses import normalise_address
from gateway.mail.headers import HeaderBlock
from gateway.model import CampaignRef, Declaration, Inbound
from gateway.settings import CampaignSettings

log = structlog.get_logger(__name__)

DECLARATION_HEADERS = ("X-Declared-Size", "X-Campaign-Category", "X-Campaign-Locale")
_SPACES = re.compile(r"\s+")
_UNDECODABLE = re.compile(r"[\ud800-\udfff]")  # bytes that were not UTF-8 (surrogateescape)
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
_UNSTORABLE = re.compile(r"[\x00\ud800-\udfff]")  # no database text column takes these
MAX_KEY = 255  # characters of a key or declaration header: an identifier, not prose
MAX_DECLARED_SIZE = 1_000_000_000  # recipients; larger is a typo, and must fit any column
MAX_SUBJECT_IN_KEY = 200  # characters of an implicit key's subject, then a digest of the rest


def check_headers(headers: HeaderBlock, settings: CampaignSettings) -> None:
    """Refuse a message whose key or declaration headers can never be valid as sent."""
    for name in (*settings.key_headers, "X-Campaign-Category", "X-Campaign-Locale"):
        value = headers.get(name)
        if value is None:
            continue
        if _UNDECODABLE.search(value):
            raise MessageRefused(name, "is not valid UTF-8")
        if _CONTROL.search(value.strip()):
            raise MessageRefused(name, "contains a control character")
        if len(value.strip()) > MAX_KEY:
            raise MessageRefused(name, f"is longer than {MAX_KEY} characters")
    size = headers.get("X-Declared-Size")
    if size is not None and declared_size(size) is None:
        raise MessageRefused(
            "X-Declared-Size", f"is not a whole number of recipients from 0 to {MAX_DECLARED_SIZE}"
        )


def declared_size(text: str) -> int | None:
    """Return the size an X-Declared-Size value declares, or None if it declares none."""
    text = text.strip()
    # isdecimal alone takes other scripts' digits, which int() reads; ² is not even that.
    if not (text.isascii() and text.isdecimal()) or len(text) > len(str(MAX_DECLARED_SIZE)):
        return None
    size = int(text)
    return size if size <= MAX_DECLARED_SIZE else None


def storable(text: str) -> str:
    """Return `text` with what no database text column stores (NUL, non-UTF-8) as U+FFFD."""
    return _UNSTORABLE.sub("\ufffd", text)


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
    size = declared_size(size_text) if size_text else None
    if size_text is not None and size is None:
        log.warning("declared_size_invalid", value=storable(size_text)[:64])
    return Declaration(
        size=size,
        category=(headers.get("X-Campaign-Category") or "").strip().lower() or None,
        locale=(headers.get("X-Campaign-Locale") or "").strip() or None,
    )


def resolve(headers: HeaderBlock, inbound: Inbound, settings: CampaignSettings) -> CampaignRef:
    """Work out the campaign of a message (DESIGN.md §2)."""
    subject = storable(headers.get("Subject") or "")
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
    keyed_by = subject if inbound.subject is None else storable(inbound.subject)
    key = f"implicit:{inbound.mail_from.lower()}:{_key_subject(normalise_subject(keyed_by))}"
    return CampaignRef(
        client=inbound.client,
        key=key,
        implicit=True,
        sender=inbound.mail_from,
        subject=subject,
        declaration=declaration,
    )


def _key_subject(subject: str) -> str:
    """Bound a subject for a key (keys are indexed): its start, then a digest of it all."""
    if len(subject) <= MAX_SUBJECT_IN_KEY:
        return subject
    digest = hashlib.blake2b(subject.encode(), digest_size=8).hexdigest()
    return f"{subject[:MAX_SUBJECT_IN_KEY]}…{digest}"
