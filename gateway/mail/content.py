"""A message's content as its reader sees it, and the report content checks make of it.

`decode` turns raw message bytes into a `Document`: the decoded subject, From display
name, sender addresses, the text of text/plain parts and of HTML parts (quoted-printable,
base64, charsets, RFC 2047 headers, nested multiparts), code samples kept apart, link
targets. It uses the standard library's modern email API and never raises: whatever
cannot be decoded is listed in `problems`, because content that cannot be read must not
pass as clean (STYLE.md rule 4, fail closed).

What the content rules found (`ContentReport`, a record in `gateway.model`) is computed
from the `Document` off the event loop, before the spool transaction. Pure functions only.
"""

from __future__ import annotations

import email
import email.errors
import hashlib
import re
from collections.abc import Iterator
from dataclasses import dataclass
from email.message import Message
from email.policy import EmailPolicy
from email.utils import getaddresses
from typing import Any

from gateway.mail.headers import MAX_DECODED, HeaderBlock
from gateway.mail.html_text import html_to_text, split_code, tidy
from gateway.mail.memo import Memo

MAX_DEPTH = 20  # deeper MIME nesting than this is not read; it is a problem
_TRANSFER_ENCODINGS = frozenset({"7bit", "8bit", "binary", "quoted-printable", "base64"})
# Defects after which the text of a part cannot be trusted to be what the reader sees.
_FATAL_DEFECTS = (
    email.errors.InvalidBase64CharactersDefect,
    email.errors.InvalidBase64PaddingDefect,
    email.errors.InvalidBase64LengthDefect,
    email.errors.NoBoundaryInMultipartDefect,
    email.errors.StartBoundaryNotFoundDefect,
    email.errors.MultipartInvariantViolationDefect,
)
SENDER_HEADERS = ("From", "Sender", "Reply-To")
# The fields `decode` reads: the subject and senders, and those that shape the MIME tree.
READ_FIELDS = frozenset(
    {"subject", "from", "sender", "reply-to", "content-type", "content-transfer-encoding"}
)
_FIELD_LINE = re.compile(rb"[\x21-\x39\x3b-\x7e]*:")  # what the email parser takes as a field
_LINK_ADDRESS = re.compile(r"(?:https?://|www\.)\S+", re.IGNORECASE)
HEADER_MEMORY = 1024  # parsed MIME header fields remembered (Content-Type and the like)
MEMO_FIELD_MAX = 998  # longer fields are parsed every time (RFC 5322's line length)


class _Policy(EmailPolicy):
    """The standard library's default policy, remembering the fields it parsed.

    The modern email API parses a field (with its full RFC 5322 grammar) each time it is
    read, and reading a MIME tree reads each part's Content-Type half a dozen times; the
    copies of a campaign repeat the same few field values. A parsed field depends only on
    its name and value and is read-only, so one parse serves every read of the same field.
    """

    def header_fetch_parse(self, name: str, value: str) -> Any:
        parse = super().header_fetch_parse
        if hasattr(value, "name") or len(value) > MEMO_FIELD_MAX:
            return parse(name, value)
        return _FIELDS.get(f"{name}\0{value}", lambda _: parse(name, value))


_FIELDS: Memo[object] = Memo(HEADER_MEMORY)
_POLICY = _Policy()


@dataclass(frozen=True, slots=True)
class Document:
    """The decoded, human-visible content of one message."""

    subject: str = ""
    from_name: str = ""
    senders: tuple[tuple[str, str], ...] = ()  # (header, address) of From, Sender, Reply-To
    text: str = ""  # text/plain parts, code samples removed
    html: str = ""  # text of text/html parts, code samples removed
    code: str = ""  # code samples of both, for explanations
    links: tuple[str, ...] = ()  # link and image targets, URL-decoded
    problems: tuple[str, ...] = ()  # what could not be decoded

    @property
    def body(self) -> str:
        """The text a reader reads: the plain part, or the HTML's text without one."""
        return self.text if self.text.strip() else self.html

    def fingerprint(self) -> str:
        """Return a digest of what the reader reads: subject and body, normalised.

        Case and spacing are ignored, and so are link addresses, which carry a tracking
        token per send: the same mail sent again by a re-run job has the same fingerprint,
        and a personalised one the same per recipient.
        """
        body = _LINK_ADDRESS.sub(" ", self.body)
        text = " ".join(self.subject.casefold().split()) + "\0" + " ".join(body.casefold().split())
        return hashlib.blake2b(text.encode("utf-8", "replace"), digest_size=12).hexdigest()

    def fields(self) -> Iterator[tuple[str, str]]:
        """Yield (where, text) of everything visible: subject, From name, text, HTML, links."""
        yield "subject", self.subject
        yield "from_name", self.from_name
        yield "text", self.text
        yield "html", self.html
        for link in self.links:
            yield "link", link


def content_key(content: bytes | HeaderBlock) -> bytes:
    """Return a digest of everything `decode` reads: equal keys decode to equal documents.

    Fields that differ from one recipient to the next (To, Message-ID, Date, Received,
    a List-Unsubscribe token) are left out. A line the email parser would not take as a
    field ends its header block there: that line and every one after it are body to the
    parser, so all of them are part of the key. Takes the message, or its header block
    parsed already.
    """
    headers = content if isinstance(content, HeaderBlock) else HeaderBlock.parse(content)
    digest = hashlib.blake2b(digest_size=16)
    body_from_here = False
    for name, raw in headers.fields:
        body_from_here = body_from_here or not _FIELD_LINE.match(raw)
        if body_from_here or name in READ_FIELDS:
            digest.update(len(raw).to_bytes(8, "big") + raw)
    digest.update(b"\0" + headers.rest)
    return digest.digest()


def decode(content: bytes, headers: HeaderBlock | None = None) -> Document:
    """Decode a message for content checks; never raises (problems are listed instead).

    `headers` is the message's header block when the caller parsed it already.
    """
    problems: list[str] = []
    headers = headers or HeaderBlock.parse(content)
    subject = _header(headers, "Subject", problems)
    senders: list[tuple[str, str]] = []
    from_name = ""
    for name in SENDER_HEADERS:
        value = _header(headers, name, problems)
        for display, address in getaddresses([value]) if value else []:
            if address:
                senders.append((name.lower(), address.strip().lower()))
            if name == "From" and display and not from_name:
                from_name = display.strip()
    try:
        message = email.message_from_bytes(content, policy=_POLICY)
    except Exception as exc:  # noqa: BLE001 - the parser must not take admission down
        problems.append(f"the message could not be parsed: {type(exc).__name__}: {exc}")
        return Document(subject, from_name, tuple(senders), problems=tuple(problems))
    texts: list[str] = []
    htmls: list[str] = []
    code: list[str] = []
    links: list[str] = []
    readable = 0
    for where, part, kind in _leaves(message, "1", 0, problems):
        body = _text_of(part, f"part {where} ({kind})", problems)
        if body is None:
            continue
        readable += 1
        if kind == "text/html":
            shown = html_to_text(body)
            htmls.append(shown.text)
            code.append(shown.code)
            links.extend(shown.links)
        else:
            prose, sample = split_code(body.replace("\r\n", "\n"))
            texts.append(prose)
            code.append(sample)
    if not readable and not problems:
        problems.append("the message has no text/plain or text/html part to check")
    return Document(
        subject=subject,
        from_name=from_name,
        senders=tuple(dict.fromkeys(senders)),
        text=tidy("\n\n".join(texts)),
        html="\n\n".join(filter(None, htmls)),  # each tidy already, so the join is too
        code=tidy("\n\n".join(code)),
        links=tuple(dict.fromkeys(links)),
        problems=tuple(problems),
    )


def _header(headers: HeaderBlock, name: str, problems: list[str]) -> str:
    value = headers.get(name) or ""
    if len(headers.raw_value(name) or b"") > MAX_DECODED:
        problems.append(
            f"the {name} header is longer than {MAX_DECODED} bytes; its end was not read"
        )
    if any("\udc80" <= char <= "\udcff" for char in value):
        problems.append(f"the {name} header has bytes that are not UTF-8")
        value = value.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
    if "=?" in value and "?=" in value:
        problems.append(f"the {name} header has an encoded-word that could not be decoded")
    return " ".join(value.split())


def _leaves(
    part: Message, where: str, depth: int, problems: list[str]
) -> Iterator[tuple[str, Message, str]]:
    """Yield (part number, part, content type) of every inline text/plain or HTML part."""
    problems.extend(
        f"part {where}: {_defect_name(d)}" for d in part.defects if isinstance(d, _FATAL_DEFECTS)
    )
    if depth > MAX_DEPTH:
        problems.append(f"part {where}: MIME nesting deeper than {MAX_DEPTH} levels")
        return
    if part.is_multipart():
        children = part.get_payload()
        for index, child in enumerate(children if isinstance(children, list) else [], 1):
            yield from _leaves(child, f"{where}.{index}", depth + 1, problems)
        return
    kind = part.get_content_type()  # each call parses the field's value again
    if kind not in {"text/plain", "text/html"} or part.get_content_disposition() == "attachment":
        return
    yield where, part, kind


def _payload(part: Message, label: str, problems: list[str]) -> bytes | None:
    """Undo the transfer encoding of one part; None (with a problem) when it cannot be."""
    encoding = str(part.get("Content-Transfer-Encoding", "7bit")).strip().lower()
    if encoding not in _TRANSFER_ENCODINGS:
        problems.append(f"{label}: unknown transfer encoding {encoding!r}")
        return None
    raw = part.get_payload(decode=True)
    if not isinstance(raw, bytes):
        problems.append(f"{label}: the body could not be decoded")
        return None
    damage = [d for d in part.defects if isinstance(d, _FATAL_DEFECTS)]  # seen while decoding
    if damage:
        problems.append(f"{label}: {_defect_name(damage[0])}")
        return None
    return raw


def _text_of(part: Message, label: str, problems: list[str]) -> str | None:
    """Decode one text part's body; None (with a problem) when it cannot be read."""
    raw = _payload(part, label, problems)
    if raw is None:
        return None
    charset = part.get_content_charset("us-ascii") or "us-ascii"
    try:
        return raw.decode(charset)
    except LookupError:
        problems.append(f"{label}: unknown charset {charset!r}")
        return None
    except UnicodeDecodeError:
        pass
    # Mislabelled UTF-8 (8-bit bytes declared as us-ascii) is common and readable.
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        problems.append(f"{label}: the body is not valid {charset}")
        return None


def _defect_name(defect: Exception) -> str:
    name = type(defect).__name__.removesuffix("Defect")
    return "".join(f" {c.lower()}" if c.isupper() else c for c in name).strip()
