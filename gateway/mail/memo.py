"""A bounded, thread-safe memo of small results keyed by the digest of the text they read.

Personalised mail is mostly its campaign's template: of a newsletter's paragraphs, only
the greeting and the links differ from one recipient to the next. Work whose result
depends only on one block of text (a paragraph's language, a header's parse) is kept
here under the block's digest, so the blocks every copy shares are read once and the
ones that differ are read again. Keys are 16-byte BLAKE2b digests of the block, never the
text itself, and at most `size` entries are kept (least recently used out first), so the
memory a memo takes is bounded whatever the mail: `size` x (digest + a small result).
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from collections.abc import Callable
from typing import Generic, TypeVar

V = TypeVar("V")
_MISSING = object()


def digest(text: str) -> bytes:
    """Return the key of a block of text: 16 bytes of BLAKE2b over its UTF-8."""
    return hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=16).digest()


class Memo(Generic[V]):
    """At most `size` results by the digest of the block they were computed from."""

    def __init__(self, size: int) -> None:
        if size < 1:
            raise ValueError(f"a memo keeps at least one entry, not {size}")
        self.size = size
        self._entries: OrderedDict[bytes, V] = OrderedDict()
        self._lock = threading.Lock()  # content analysis runs in several threads

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, text: str, compute: Callable[[str], V]) -> V:
        """Return `compute(text)`, from the memo when this exact block was computed before.

        `compute` runs outside the lock and must be a pure function of `text`; its result
        is kept only when it returns (an exception is not remembered).
        """
        key = digest(text)
        with self._lock:
            found = self._entries.get(key, _MISSING)
            if found is not _MISSING:
                self._entries.move_to_end(key)
                return found  # type: ignore[return-value]
        value = compute(text)
        with self._lock:
            self._entries[key] = value
            self._entries.move_to_end(key)
            while len(self._entries) > self.size:
                self._entries.popitem(last=False)
        return value

    def clear(self) -> None:
        """Forget every entry."""
        with self._lock:
            self._entries.clear()
