"""DATA as bytes: read to CRLF.CRLF in chunks, unstuffed, and checked before admission.

What makes a message unacceptable as sent, whatever its content means: its size, NUL,
a bare CR or LF (where another server could see a different end of data: SMTP
smuggling), lines over RFC 5321's limit, a header block over the gateway's. Each check is
one pass of C over the buffer (count, find, split), never a loop per line in Python: this
is the ingress's hot path. Pure functions but `receive_data`, which reads a stream.
"""

from __future__ import annotations

import asyncio
import re
import sys
from typing import Literal

REPLY_TOO_BIG = "552 5.3.4 Message size exceeds fixed maximum message size"
REPLY_LINE_TOO_LONG = "500 5.5.2 Line too long (see RFC 5321 4.5.3.1.6)"
# Postfix's words for smtpd_forbid_bare_newline = reject; permanent, as a retry sends the same.
REPLY_BARE_LF = "550 5.5.2 Error: bare <LF> received"
REPLY_BARE_CR = "550 5.5.2 Error: bare <CR> received"
REPLY_NUL = "550 5.6.0 Error: NUL byte received"

_LINE_END = re.compile(rb"\r\n|\r|\n")
_DOT_LINE_END = b".\r\n"
_TERMINATOR = b"\r\n.\r\n"

Received = tuple[bytes, int]  # DATA as sent (still dot-stuffed) and its size in bytes


def check_data(
    data: bytes,
    size: int,
    *,
    size_limit: int | None,
    line_limit: int,
    header_limit: int,
    bare_newlines: Literal["reject", "accept"],
) -> tuple[str | None, bytes]:
    """Return the refusal of DATA as received, or None and the data to admit.

    Only CRLF.CRLF ends DATA, here and (RFC 5321 4.1.1.4) everywhere; a bare CR or LF
    is where another server may see a different end (SMTP smuggling), so by default
    such a message is refused whole, as Postfix's `smtpd_forbid_bare_newline = reject`
    does, once DATA has really ended (the session stays in step with the client).
    With `accept`, every line end becomes CRLF before unstuffing (the client stuffed
    the dots of its own lines), so no upstream can find an end of data inside.
    """
    if size_limit and size > size_limit:
        return REPLY_TOO_BIG, data  # only now: RFC 5321 4.2.5
    if b"\x00" in data:
        return REPLY_NUL, data
    if fault := bare_newline(data):
        if bare_newlines == "reject":
            return REPLY_BARE_LF if fault == "LF" else REPLY_BARE_CR, data
        data = _LINE_END.sub(b"\r\n", data)
    if len(data) > line_limit and _longest_line(data) > line_limit:
        return REPLY_LINE_TOO_LONG, data
    if (
        len(data) > header_limit
        and not data.startswith(b"\r\n")
        and data.find(b"\r\n\r\n", 0, header_limit + 2) < 0
    ):
        return f"552 5.3.4 Message header exceeds {header_limit} bytes", data
    return None, data


async def receive_data(reader: asyncio.StreamReader, size_limit: int | None) -> Received | None:
    """Read DATA up to CRLF.CRLF: (the data before it, its size), or None if the client left.

    Past the size limit the data is dropped, but reading goes on to the terminator. The
    data is still dot-stuffed; the size counts the stuffing, as aiosmtpd does.
    """
    limit = size_limit or sys.maxsize
    chunks: list[bytes] = []
    size = 0
    last = b"\r\n"  # the last bytes read; the DATA line's CRLF may begin the terminator
    while True:
        try:
            chunk = await reader.readuntil(_DOT_LINE_END)
        except asyncio.LimitOverrunError as exc:  # a long stretch without a dot line end
            chunk = await reader.read(exc.consumed)
        except asyncio.IncompleteReadError:
            return None
        if not chunk:
            return None
        last = (last + chunk)[-len(_TERMINATOR) :]
        done = last == _TERMINATOR
        if done:
            chunk = chunk[: -len(_DOT_LINE_END)]
        size += len(chunk)
        if size <= limit:
            chunks.append(chunk)
        else:
            chunks.clear()
        if done:
            return b"".join(chunks), size


def bare_newline(data: bytes) -> str | None:
    """Return "LF" or "CR" when `data` has one not paired as CRLF, else None.

    Counting is four passes of C over the buffer, far quicker than a regex's scan.
    """
    pairs = data.count(b"\r\n")
    if data.count(b"\n") != pairs:
        return "LF"
    if data.count(b"\r") != pairs:
        return "CR"
    return None


def _longest_line(data: bytes) -> int:
    """Length of the longest line, its CRLF included."""
    return max(map(len, data.split(b"\r\n"))) + 2


def unstuff(data: bytes) -> bytes:
    """Remove the dot the client added to each line that starts with one (RFC 5321 4.5.2)."""
    if data.startswith(b"."):
        data = data[1:]
    return data.replace(b"\r\n.", b"\r\n")
