"""Wire formats of the ops API's values: RFC 3339 timestamps and opaque page cursors.

Pure functions; the JSON shapes themselves live in `gateway.ops.schemas`.
"""

from __future__ import annotations

import base64
import binascii
from datetime import UTC, datetime

MAX_CURSOR = 64  # characters of a decoded cursor: row IDs are far shorter


def shown(text: str, limit: int = 200) -> str:
    r"""Return text safe to store and show, of at most `limit` characters.

    Control characters and lone surrogates are escaped (`\x1b`, `\ud800`); longer
    text ends in an ellipsis.
    """
    if text.isprintable() and len(text) <= limit:
        return text
    escaped = "".join(c if c.isprintable() else ascii(c)[1:-1] for c in text)
    return escaped if len(escaped) <= limit else escaped[: limit - 1] + "…"


def timestamp(value: float | None) -> str | None:
    """Render epoch seconds as RFC 3339 UTC."""
    if value is None:
        return None
    return (
        datetime.fromtimestamp(value, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    )


def encode_cursor(value: str | int) -> str:
    """Make an opaque page cursor."""
    return base64.urlsafe_b64encode(str(value).encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> str:
    """Read a page cursor; raises ValueError when it was not made by `encode_cursor`."""
    try:
        value = base64.b64decode(cursor + "=" * (-len(cursor) % 4), altchars=b"-_", validate=True)
        text = value.decode()
    except (binascii.Error, UnicodeDecodeError) as exc:
        raise ValueError("not a cursor from this API") from exc
    # IDs are ASCII letters and digits; str.isalnum() alone also takes "²" and "١".
    if not (text.isascii() and text.isalnum() and len(text) <= MAX_CURSOR):
        raise ValueError("not a cursor from this API")
    return text
