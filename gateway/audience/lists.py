"""Audience segments as data: reading address lists into the hashes a segment is stored as.

A segment is stored as the 64-bit hashes of its normalised addresses (8 bytes each, in
the spool, never a Python set of strings). This module is pure: it turns bytes of a
text or CSV list into hashes and counts what it could not read, line by line, so an
upload of any size is parsed in bounded memory.
"""

from __future__ import annotations

import csv
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

from gateway.mail.addresses import address_hash, normalise_address

EMAIL_COLUMNS = ("email", "e-mail", "email_address", "email address", "mail", "address")
SAMPLES = 10


@dataclass
class ReadStats:
    """What reading a list found: lines, usable addresses, and the rest with examples."""

    lines: int = 0
    addresses: int = 0
    blank: int = 0
    invalid: int = 0
    invalid_samples: list[dict[str, object]] = field(default_factory=list)

    def bad(self, line: int, text: str) -> None:
        """Count an unreadable line and keep the first few as examples."""
        self.invalid += 1
        if len(self.invalid_samples) < SAMPLES:
            self.invalid_samples.append({"line": line, "text": text[:200]})


class ListReader:
    """Turns chunks of a text list (one address per line) or a CSV file into hashes.

    Feed bytes as they arrive; each call returns the hashes of the complete lines seen.
    A CSV file's first line is its header; the address column is `column` or the first
    header named like an email column. A quoted CSV field spanning lines is not supported
    and is counted as invalid, never dropped silently.
    """

    def __init__(
        self, *, csv_format: bool, column: str | None = None, casefold_local: bool = True
    ) -> None:
        self.stats = ReadStats()
        self._csv = csv_format
        self._column = column
        self._index: int | None = None
        self._casefold = casefold_local
        self._rest = b""

    def feed(self, chunk: bytes) -> list[int]:
        """Read the complete lines in `chunk` (plus what was left from the last one).

        Raises ValueError when a CSV header names no address column.
        """
        data = self._rest + chunk
        cut = data.rfind(b"\n") + 1
        self._rest = data[cut:]
        return list(self._read(data[:cut].splitlines()))

    def finish(self) -> list[int]:
        """Read what is left after the last newline."""
        rest, self._rest = self._rest, b""
        return list(self._read([rest] if rest else []))

    def _read(self, raw_lines: Iterable[bytes]) -> Iterator[int]:
        for raw in raw_lines:
            self.stats.lines += 1
            number = self.stats.lines
            text = raw.decode("utf-8", "replace").rstrip("\r")
            if number == 1:
                text = text.lstrip("\ufeff")  # a byte-order mark from spreadsheet exports
            if not text.strip():
                self.stats.blank += 1
                continue
            if self._csv:
                cells = next(csv.reader([text]), [])
                if self._index is None:
                    self._index = self._header(cells)
                    continue
                text = cells[self._index] if self._index < len(cells) else ""
            mailbox = normalise_address(text, self._casefold)
            if mailbox is None:
                self.stats.bad(number, text)
                continue
            self.stats.addresses += 1
            yield address_hash(mailbox)

    def _header(self, cells: list[str]) -> int:
        names = [cell.strip().lower() for cell in cells]
        wanted = [self._column.lower()] if self._column else list(EMAIL_COLUMNS)
        for name in wanted:
            if name in names:
                return names.index(name)
        expected = self._column or " or ".join(EMAIL_COLUMNS)
        raise ValueError(f"the CSV header {cells!r} has no column {expected}")
