"""Loading audience segments into the spool, from files or streamed uploads.

A load parses the list in chunks off the event loop (bounded memory, whatever the list's
size), writes members in batches beside the live version, and publishes the new version in
one transaction: readers see the old list or the new one. A failed or oversized load is
abandoned and purged; the live list stays. Knows nothing of HTTP or policy files.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import structlog

from gateway.audience.lists import ListReader, ReadStats
from gateway.errors import SendbrakeError
from gateway.model import Segment
from gateway.spool.base import Segments

log = structlog.get_logger(__name__)

BATCH = 20_000  # members per spool transaction: big enough to be quick, small enough not to stall ingest
FILE_CHUNK = 1024 * 1024


class UploadTooLarge(SendbrakeError):
    """An upload went past segments.max_upload_size."""


@dataclass(frozen=True)
class LoadReport:
    """What a load did: the segment as published, and what could not be read."""

    segment: Segment
    stats: ReadStats
    replaced_version: int | None

    @property
    def duplicates(self) -> int:
        """Addresses listed more than once (stored once)."""
        return self.stats.addresses - self.segment.size


class SegmentLoader:
    """Loads segments into one spool."""

    def __init__(
        self,
        spool: Segments,
        *,
        casefold_local: bool = True,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._spool = spool
        self._casefold = casefold_local
        self._clock = clock

    async def load(
        self,
        name: str,
        chunks: AsyncIterator[bytes],
        *,
        csv_format: bool,
        column: str | None = None,
        source: str,
        loaded_by: str,
        digest: str | None = None,
        max_bytes: int | None = None,
    ) -> LoadReport:
        """Read a whole list and make it the segment `name`; raise ValueError for a bad CSV."""
        reader = ListReader(csv_format=csv_format, column=column, casefold_local=self._casefold)
        version = await self._spool.segment_begin(name, self._clock())
        size = total = 0
        batch: list[int] = []
        try:
            async for chunk in chunks:
                total += len(chunk)
                _check_size(total, max_bytes)
                batch += await asyncio.to_thread(reader.feed, chunk)
                if len(batch) >= BATCH:
                    size += await self._spool.segment_add(version, batch)
                    batch = []
            batch += reader.finish()
            size += await self._spool.segment_add(version, batch)
            segment = Segment(
                name=name,
                version=version,
                size=size,
                lines=reader.stats.lines,
                invalid=reader.stats.invalid,
                source=source,
                digest=digest,
                loaded_by=loaded_by,
                loaded_at=self._clock(),
            )
            replaced = await self._spool.segment_publish(segment)
        except BaseException:
            await asyncio.shield(self._spool.segment_abandon(version))
            raise
        logged = asdict(segment)
        log.info("segment_loaded", segment=logged.pop("name"), replaced=replaced, **logged)
        return LoadReport(segment, reader.stats, replaced)

    async def load_file(
        self, name: str, path: Path, column: str | None = None
    ) -> LoadReport | None:
        """Load a segment file unless the spool already holds this exact file's content."""
        digest = await asyncio.to_thread(_file_digest, path)
        source = f"file:{await asyncio.to_thread(path.resolve)}"
        current = await self._spool.segment(name)
        if current is not None and current.digest == digest and current.source == source:
            return None
        return await self.load(
            name,
            _read_chunks(path),
            csv_format=path.suffix.lower() == ".csv",
            column=column,
            source=source,
            loaded_by="policy files",
            digest=digest,
        )

    async def purge(self) -> int:
        """Delete retired versions' members in bounded chunks; return rows removed."""
        removed = 0
        while step := await self._spool.purge_segments():
            removed += step
        return removed


def _check_size(total: int, max_bytes: int | None) -> None:
    if max_bytes is not None and total > max_bytes:
        raise UploadTooLarge(f"the list is larger than {max_bytes} bytes")


def _file_digest(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(FILE_CHUNK):
            digest.update(chunk)
    return f"sha256:{digest.hexdigest()}"


async def _read_chunks(path: Path) -> AsyncIterator[bytes]:
    handle = await asyncio.to_thread(path.open, "rb")
    with handle:
        while chunk := await asyncio.to_thread(handle.read, FILE_CHUNK):
            yield chunk
