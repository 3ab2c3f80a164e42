"""Summarise a py-spy profile of the gateway: where the time goes, by subsystem and function.

Reads the collapsed stacks that `relay_bench.py --pyspy` records (`py-spy record --format
raw --threads`, idle samples left out) and prints the share of samples per thread, per
subsystem of the event loop thread (aiosmtpd protocol, our ingest, spool, relay,
aiosmtplib, logging, HTTP, the loop itself) and the functions with the most own time.

    .venv/bin/python bench/profile_summary.py bench/out/profile-throughput-s50-run1.txt
"""

from __future__ import annotations

import argparse
import re
from collections import Counter
from pathlib import Path

FRAME = re.compile(r"^(?P<func>.*) \((?P<file>[^:()]+)(?::\d+)?\)$")

# Leaf to root, the first frame that matches names the subsystem of a main-thread sample.
SUBSYSTEMS = (
    ("logging (structlog)", ("structlog/", "logging/")),
    ("aiosmtplib (relay client)", ("aiosmtplib/",)),
    ("relay (our code)", ("gateway/relay/",)),
    ("spool, event-loop side (our code)", ("gateway/spool/",)),
    (
        "ingest (our code: headers, campaign, policy)",
        (
            "gateway/ingress/",
            "gateway/campaigns",
            "gateway/mime",
            "gateway/segments",
            "gateway/policy/",
            "gateway/model",
        ),
    ),
    ("HTTP and metrics", ("gateway/ops/", "aiohttp/", "prometheus_client/")),
    ("aiosmtpd protocol", ("aiosmtpd/",)),
)
THREADS = {"MainThread": "event loop thread", "spool-writer": "spool writer thread"}


def subsystem(frames: list[str]) -> str:
    for frame in reversed(frames):
        for name, paths in SUBSYSTEMS:
            if any(p in frame for p in paths):
                return name
    return "event loop itself (asyncio, selector, transports)"


def writer_unit(frames: list[str]) -> str:
    """What the spool writer was doing: the outermost statement function, else its own loop."""
    for frame in frames:
        if "gateway/spool/sql" in frame:
            return f"{own(frame)} (in a unit of work)"
    if frames and "_commit" in frames[-1]:
        return "COMMIT, BEGIN, SAVEPOINT (the fsync is in COMMIT)"
    return own(frames[-1]) if frames else "?"


def own(frame: str) -> str:
    match = FRAME.match(frame)
    return f"{match['func']} ({match['file']})" if match else frame


def summarise(path: Path, top: int) -> str:
    threads: Counter[str] = Counter()
    systems: Counter[str] = Counter()
    writer: Counter[str] = Counter()
    leaves: Counter[str] = Counter()
    total = 0
    for line in path.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        head, *frames = stack.split(";")
        name = head.split(": ", 1)[-1]
        thread = THREADS.get(name, "spool reader thread" if "spool-reader" in name else name)
        total += count
        threads[thread] += count
        if thread == "event loop thread":
            systems[subsystem(frames)] += count
        elif thread == "spool writer thread":
            writer[writer_unit(frames)] += count
        if frames:
            leaves[f"[{thread}] {own(frames[-1])}"] += count

    def pct(n: int) -> str:
        return f"{100 * n / total:5.1f}%"

    out = [f"{path.name}: {total:,} samples (on CPU or holding the GIL; idle left out)", ""]
    out += ["by thread:"] + [f"  {pct(n)}  {t}" for t, n in threads.most_common()]
    out += ["", "event loop thread by subsystem (share of all samples):"]
    out += [f"  {pct(n)}  {s}" for s, n in systems.most_common()]
    out += ["", "spool writer thread by unit of work (share of all samples):"]
    out += [f"  {pct(n)}  {s}" for s, n in writer.most_common(8)]
    out += ["", f"top {top} functions by own time:"]
    out += [f"  {pct(n)}  {f}" for f, n in leaves.most_common(top)]
    return "\n".join(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("profiles", nargs="+", type=Path)
    parser.add_argument("--top", type=int, default=20)
    args = parser.parse_args()
    for path in args.profiles:
        print(summarise(path, args.top), end="\n\n")


if __name__ == "__main__":
    main()
