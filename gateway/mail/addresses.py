"""Mail addresses: which ones SMTP may carry, and how sendbrake compares them.

`mailbox_problem` is the envelope's gate: RFC 5321's Mailbox syntax, widened by RFC 6531
(SMTPUTF8) to UTF-8 local parts and U-label domains, so that nothing accepted at MAIL or
RCPT is undeliverable by construction. The rest is the comparable form: normalised,
hashed to 64 bits, by domain. A recipient, a segment member and a protected identity's
address all meet in that form, so duplicates and segment membership are exact look-ups.
Pure functions.
"""

from __future__ import annotations

import hashlib
import ipaddress
import re

import idna

_LOCAL = re.compile(r"^[^\s@<>()\[\],;:\"]{1,64}$")
_DOMAIN = re.compile(
    r"^(?=.{1,253}$)([a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z][a-z0-9-]{0,62}$"
)


# RFC 5321 4.1.2, with RFC 6531's UTF8-non-ascii in atext and qtext (checked apart).
_ATEXT = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~\-\u0080-\U0010ffff]"
_DOT_STRING = re.compile(rf"{_ATEXT}+(?:\.{_ATEXT}+)*")
_QUOTED_STRING = re.compile(r'"(?:[\x20\x21\x23-\x5b\x5d-\x7e\u0080-\U0010ffff]|\\[\x20-\x7e])*"')
_LDH_LABEL = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?")  # RFC 5321 sub-domain
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")  # C0, DEL and C1
_UNDECODABLE = re.compile(r"[\ud800-\udfff]")  # bytes that were not UTF-8 (surrogateescape)
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
# Nearly every address: an ASCII dot-atom of at most 64 octets @ a host name, at once.
_PLAIN_MAILBOX = re.compile(
    rf"(?=[^@]{{1,64}}@)[A-Za-z0-9!#$%&'*+/=?^_`{{|}}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{{|}}~-]+)*"
    rf"@{_LABEL}(?:\.{_LABEL})*"
)
MAX_LOCAL_PART = 64  # octets, RFC 5321 4.5.3.1.1
MAX_DOMAIN = 255  # octets, RFC 5321 4.5.3.1.2
MAX_PATH = 256  # octets with the angle brackets, RFC 5321 4.5.3.1.3


def mailbox_problem(mailbox: str) -> str | None:  # noqa: PLR0911 - a return per rule, in order
    """Say what makes `mailbox` (local@domain, no brackets) unfit for SMTP, or None.

    UTF-8 passes here (RFC 6531); whether the transaction declared SMTPUTF8 is the
    caller's to check, with `str.isascii`. Bytes that were not UTF-8 arrive as lone
    surrogates (the SMTP server decodes with surrogateescape) and are refused.
    """
    if len(mailbox) <= MAX_PATH - 2 and _PLAIN_MAILBOX.fullmatch(mailbox):
        return None  # the common case in one pass; what follows says what is wrong
    if _UNDECODABLE.search(mailbox):
        return "is not valid UTF-8"
    if _CONTROL.search(mailbox):
        return "contains a control character"
    if len(mailbox.encode()) > MAX_PATH - 2:
        return f"is longer than {MAX_PATH - 2} octets"
    local, at, domain = mailbox.rpartition("@")
    if not at:
        return "has no @domain"
    if not local:
        return "has an empty local part"
    if len(local.encode()) > MAX_LOCAL_PART:
        return f"has a local part longer than {MAX_LOCAL_PART} octets"
    if not (_DOT_STRING.fullmatch(local) or _QUOTED_STRING.fullmatch(local)):
        return "has a local part that is not valid (RFC 5321 4.1.2)"
    return _domain_problem(domain)


def _domain_problem(domain: str) -> str | None:  # noqa: PLR0911 - as mailbox_problem
    if not domain:
        return "has an empty domain"
    if domain.startswith("[") and domain.endswith("]"):
        literal = domain[1:-1]
        tagged = literal[:5].lower() == "ipv6:"  # RFC 5321 4.1.3: IPv6 literals are tagged
        try:
            address = ipaddress.ip_address(literal[5:] if tagged else literal)
        except ValueError:
            address = None
        if address is None or (address.version == 6) != tagged:
            return "has an address literal that is not an IP address"
        return None
    if len(domain.encode()) > MAX_DOMAIN:
        return f"has a domain longer than {MAX_DOMAIN} octets"
    if not domain.isascii():
        try:
            domain = idna.encode(domain, uts46=True).decode("ascii")
        except (idna.IDNAError, UnicodeError):
            return "has a domain that is not a valid internationalised name (IDNA 2008)"
    if not all(_LDH_LABEL.fullmatch(label) for label in domain.split(".")):
        return "has a domain that is not a valid host name (RFC 5321 4.1.2)"
    return None


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
