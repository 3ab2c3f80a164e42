"""Wire formats of the ops API's values: RFC 3339 timestamps and opaque page cursors.

Pure functions; the JSON shapes themselves live in `gateway.ops.schemas`.
"""

from __future__ import annotations

import base64
import binascii
from datetime import UTC, datetime


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
    if not text.isalnum():
        raise ValueError("not a cursor from this API")
    return text
