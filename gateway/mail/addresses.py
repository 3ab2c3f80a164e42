"""Mail addresses as sendbrake compares them: normalised, hashed to 64 bits, by domain.

Pure functions. A recipient, a segment member and a protected identity's address all
meet in this form, so duplicates and segment membership are exact look-ups.
"""

from __future__ import annotations

import hashlib
import re

_LOCAL = re.compile(r"^[^\s@<>()\[\],;:\"]{1,64}$")
_DOMAIN = re.compile(
    r"^(?=.{1,253}$)([a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z][a-z0-9-]{0,62}$"
)


def normalise_address(text: str, casefold_local: bool = True) -> str | None:
    """Return the comparable form of an address, or None when it is not one.

    Whitespace and angle brackets are trimmed, the domain is case-folded (domains are
    case-insensitive) and so is the local part unless `casefold_local` is off.
    """
    value = text.strip().strip("<>").strip()
    local, at, domain = value.rpartition("@")
    if not at or not _LOCAL.match(local):
        return None
    if domain.isascii():
        domain = domain.lower()
    else:
        try:
            domain = domain.encode("idna").decode("ascii").lower()
        except UnicodeError:
            return None
    if not _DOMAIN.match(domain):
        return None
    return f"{local.casefold() if casefold_local else local}@{domain}"


def address_hash(mailbox: str) -> int:
    """Return the signed 64-bit key of a normalised address (fits an SQL INTEGER)."""
    digest = hashlib.blake2b(mailbox.encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


def domain_of(mailbox: str) -> str:
    """Return the domain of a normalised address."""
    return mailbox.rpartition("@")[2]
