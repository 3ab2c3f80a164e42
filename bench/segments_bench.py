"""Segment benchmark: load a 10-million-address list into the spool and look members up.

Reports load time and rate, the process's peak resident memory, the spool's bytes per
address, and membership lookups per second through the same SQL admission uses (batches
of 1,000 recipients, half of them members). The list is generated once under a temporary
folder (one address per line); the spool is fresh for every run.

    .venv/bin/python bench/segments_bench.py                  # 10,000,000 addresses
    .venv/bin/python bench/segments_bench.py --addresses 1000000
"""

from __future__ import annotations

import argparse
import asyncio
import random
import resource
import sqlite3
import tempfile
import time
from pathlib import Path

from gateway.audience.loader import SegmentLoader
from gateway.log import configure
from gateway.mail.addresses import address_hash
from gateway.spool import SqliteSpool
from gateway.spool.sql_segments import members, version_of
from gateway.spool.sqlite import connect


def address(i: int) -> str:
    return f"user{i}@example{i % 97}.com"


def write_list(path: Path, count: int) -> None:
    with path.open("w") as handle:
        for start in range(0, count, 100_000):
            handle.write(
                "".join(f"{address(i)}\n" for i in range(start, min(count, start + 100_000)))
            )


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def lookups(db: Path, count: int, batches: int) -> float:
    """Return membership checks per second over `batches` batches of 1,000 recipients."""
    conn = connect(db)
    live = version_of(conn, "big")
    if live is None:
        raise SystemExit("the segment did not load")
    rng = random.Random(7)
    batch_hashes = [
        [address_hash(address(i)) for i in rng.sample(range(count), 500)]
        + [address_hash(f"stranger{rng.randrange(10**9)}@example.net") for _ in range(500)]
        for _ in range(batches)
    ]
    started = time.perf_counter()
    found = sum(len(members(conn, live[0], hashes)) for hashes in batch_hashes)
    elapsed = time.perf_counter() - started
    conn.close()
    if found != 500 * batches:
        raise SystemExit(f"expected {500 * batches} members, found {found}")
    return batches * 1000 / elapsed


async def load(db: Path, source: Path) -> tuple[float, int]:
    spool = SqliteSpool(db)
    await spool.open()
    try:
        started = time.perf_counter()
        report = await SegmentLoader(spool).load_file("big", source)
        if report is None:
            raise SystemExit("nothing loaded")
        return time.perf_counter() - started, report.segment.size
    finally:
        await spool.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--addresses", type=int, default=10_000_000)
    parser.add_argument("--batches", type=int, default=200, help="lookup batches of 1,000")
    parser.add_argument("--tmpdir", type=Path, default=None)
    args = parser.parse_args()
    configure("console", "warning")
    with tempfile.TemporaryDirectory(dir=args.tmpdir) as tmp:
        folder = Path(tmp)
        source = folder / "list.txt"
        print(f"writing {args.addresses:,} addresses ...", flush=True)
        write_list(source, args.addresses)
        baseline = rss_mb()
        seconds, size = asyncio.run(load(folder / "spool.db", source))
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        disk = sum(p.stat().st_size for p in folder.glob("spool.db*"))
        with sqlite3.connect(folder / "spool.db") as conn:
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        checkpointed = sum(p.stat().st_size for p in folder.glob("spool.db*"))
        rate = lookups(folder / "spool.db", args.addresses, args.batches)
        print(f"file           {source.stat().st_size / 1e6:,.0f} MB")
        print(
            f"load           {seconds:,.1f} s ({size / seconds:,.0f} addresses/s), {size:,} stored"
        )
        print(f"memory         RSS {baseline:,.0f} MB before, peak {peak:,.0f} MB")
        print(
            f"spool on disk  {checkpointed / 1e6:,.0f} MB ({checkpointed / size:.1f} bytes/address;"
            f" {disk / 1e6:,.0f} MB before the WAL checkpoint)"
        )
        print(
            f"lookups        {rate:,.0f} recipients/s ({1e6 / rate:.1f} µs each, batches of 1,000)"
        )


if __name__ == "__main__":
    main()
