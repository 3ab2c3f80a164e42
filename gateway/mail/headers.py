"""Byte-exact access to a message's header block, as an MTA edits it.

Campaign resolution needs a few header values, and the relay must send the body
untouched except for the headers we add or strip. Re-serialising through the `email`
package would rewrite folding and encodings, so we split the header block into raw
fields, decode only the values asked for, and join the bytes back. Pure functions only.
"""

from __future__ import annotations

import email
import re
from dataclasses import dataclass
from email import policy
from email.errors import HeaderParseError
from email.header import decode_header, make_header

_END_OF_HEADERS = re.compile(rb"\r?\n\r?\n")
_FOLD = re.compile(r"\r?\n(?=[ \t])")
# The stdlib's RFC 2047 decoder is quadratic in a value's length (2 MB of encoded-words
# took 11 s); a value is decoded up to this many bytes (~3 ms), which no real subject nears.
MAX_DECODED = 8 * 1024


@dataclass(frozen=True, slots=True)
class HeaderBlock:
    """A message split into raw header fields (folding kept) and the untouched rest."""

    fields: tuple[tuple[str, bytes], ...]  # (lower-cased name, raw field bytes with its line end)
    rest: bytes  # the blank line and the body

    @classmethod
    def parse(cls, content: bytes) -> HeaderBlock:
        """Split `content` at the end of its header block."""
        if content.startswith((b"\r\n", b"\n")):
            return cls((), content)
        match = _END_OF_HEADERS.search(content)
        if match is None:
            end = len(content)  # headers only, no body
        else:  # the header block keeps its last line end; the blank line starts `rest`
            end = match.start() + (2 if content[match.start()] == ord("\r") else 1)
        head, rest = content[:end], content[end:]
        names: list[str] = []
        parts: list[list[bytes]] = []  # each field's lines, joined once (a long fold is linear)
        for line in head.splitlines(keepends=True):
            if line[:1] in (b" ", b"\t") and parts:
                parts[-1].append(line)
            else:
                names.append(line.split(b":", 1)[0].strip().decode("ascii", "replace").lower())
                parts.append([line])
        return cls(tuple(zip(names, map(b"".join, parts), strict=True)), rest)

    def get(self, name: str) -> str | None:
        """Return the first field called `name`, unfolded and RFC 2047-decoded, or None.

        Only the first `MAX_DECODED` bytes of the value are read (`raw_value` tells).
        """
        value = self.raw_value(name)
        return None if value is None else decode_value(value)

    def raw_value(self, name: str) -> bytes | None:
        """Return the raw value (folding and encoded-words kept) of the first `name` field."""
        wanted = name.lower()
        for field_name, raw in self.fields:
            if field_name == wanted:
                return raw.split(b":", 1)[1] if b":" in raw else b""
        return None

    def has(self, name: str) -> bool:
        """Tell whether a field called `name` is present."""
        wanted = name.lower()
        return any(field_name == wanted for field_name, _ in self.fields)

    def without(self, names: frozenset[str]) -> HeaderBlock:
        """Return a copy without the fields whose lower-cased names are in `names`."""
        return HeaderBlock(tuple(f for f in self.fields if f[0] not in names), self.rest)

    def prepend(self, *lines: str) -> HeaderBlock:
        """Return a copy with `lines` (``Name: value``) added at the top, CRLF-terminated."""
        added = tuple(
            (line.split(":", 1)[0].lower(), line.encode("utf-8") + b"\r\n") for line in lines
        )
        return HeaderBlock(added + self.fields, self.rest)

    def append(self, *lines: str) -> HeaderBlock:
        """Return a copy with `lines` (``Name: value``) added at the end, CRLF-terminated."""
        fields = list(self.fields)
        if fields and not fields[-1][1].endswith(b"\n"):  # headers only, no final line end
            fields[-1] = (fields[-1][0], fields[-1][1] + b"\r\n")
        added = [(line.split(":", 1)[0].lower(), line.encode("utf-8") + b"\r\n") for line in lines]
        return HeaderBlock((*fields, *added), self.rest)

    def to_bytes(self) -> bytes:
        """Join the fields and the rest back into message bytes."""
        return b"".join(raw for _, raw in self.fields) + self.rest


def decode_value(raw: bytes) -> str:
    """Unfold a raw header value and decode RFC 2047 encoded-words; never raises.

    A value longer than `MAX_DECODED` bytes is cut at its last blank before that.
    """
    if len(raw) > MAX_DECODED:
        cut = max(raw.rfind(b" ", 0, MAX_DECODED), raw.rfind(b"\t", 0, MAX_DECODED))
        raw = raw[: cut if cut > 0 else MAX_DECODED]
    text = _FOLD.sub("", raw.decode("utf-8", "surrogateescape")).strip()
    try:
        return str(make_header(decode_header(text)))
    except (HeaderParseError, LookupError, UnicodeError, ValueError):
        return text


def text_preview(content: bytes, limit: int = 500) -> str:
    """Return the start of the message's text (plain part preferred), decoded; never raises."""
    try:
        message = email.message_from_bytes(content, policy=policy.default)
        body = message.get_body(preferencelist=("plain", "html"))
        text = body.get_content() if body is not None else ""
    except (LookupError, UnicodeError, ValueError, AttributeError, KeyError):
        return ""
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"
