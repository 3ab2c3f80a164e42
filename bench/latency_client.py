"""An SMTP client that times each reply to the end of DATA: what smtp-source cannot report.

Each session connects once, says EHLO and then sends messages one after another (MAIL,
RCPT, DATA without pipelining, like smtp-source). The clock starts when the final
"<CRLF>.<CRLF>" has been handed to the socket and stops when the reply line arrives, so
the figure is the server's time to answer (for sendbrake: admission plus the spool's
durable commit; for Postfix: cleanup writing and fsyncing the queue file). Standard
library only.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Sequence
from dataclasses import dataclass

from harness import HOST, RCPT_DOMAIN, SENDER


class SmtpReplyError(RuntimeError):
    """The server answered something the client did not expect."""


@dataclass(frozen=True)
class LatencyResult:
    messages: int
    seconds: float
    latencies: list[float]

    def percentile(self, q: float) -> float:
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]

    def summary(self) -> dict[str, float]:
        return {
            "p50_ms": 1000 * self.percentile(0.50),
            "p99_ms": 1000 * self.percentile(0.99),
            "max_ms": 1000 * max(self.latencies),
            "rate": self.messages / self.seconds,
        }


def message_bytes(text: str) -> bytes:
    """The DATA payload: CRLF line ends, dot-stuffed, with the terminating dot line."""
    lines = [("." + line) if line.startswith(".") else line for line in text.splitlines()]
    return ("\r\n".join(lines) + "\r\n.\r\n").encode()


async def _reply(reader: asyncio.StreamReader, expect: int) -> None:
    while True:
        line = await reader.readline()
        if not line:
            raise SmtpReplyError(f"connection closed while waiting for {expect}")
        if line[3:4] != b"-":
            break
    if int(line[:3]) != expect:
        raise SmtpReplyError(f"expected {expect}, got {line.decode(errors='replace').strip()}")


async def _session(port: int, payload: bytes, jobs: itertools.count, total: int, out: list[float]):
    reader, writer = await asyncio.open_connection(HOST, port)
    try:
        await _reply(reader, 220)
        writer.write(b"EHLO bench.test\r\n")
        await _reply(reader, 250)
        while (n := next(jobs)) <= total:
            writer.write(f"MAIL FROM:<{SENDER}>\r\n".encode())
            await _reply(reader, 250)
            writer.write(f"RCPT TO:<{n}lat@{RCPT_DOMAIN}>\r\n".encode())
            await _reply(reader, 250)
            writer.write(b"DATA\r\n")
            await _reply(reader, 354)
            writer.write(payload)
            await writer.drain()
            started = time.perf_counter()
            await _reply(reader, 250)
            out.append(time.perf_counter() - started)
        writer.write(b"QUIT\r\n")
        await _reply(reader, 221)
    finally:
        writer.close()


async def _run(ports: Sequence[int], payload: bytes, messages: int, sessions: int) -> LatencyResult:
    jobs = itertools.count(1)
    latencies: list[float] = []
    started = time.perf_counter()
    async with asyncio.TaskGroup() as tasks:
        for n in range(sessions):
            port = ports[n % len(ports)]
            tasks.create_task(_session(port, payload, jobs, messages, latencies))
    return LatencyResult(messages, time.perf_counter() - started, latencies)


def measure_latency(
    port: int | Sequence[int], text: str, messages: int, sessions: int
) -> LatencyResult:
    """Send `messages` copies of `text` (unique recipients) over `sessions` sessions.

    With several ports (replicas of one gateway), the sessions are dealt out among them
    in turn; every session takes the next message when its last one is answered.
    """
    ports = [port] if isinstance(port, int) else list(port)
    return asyncio.run(_run(ports, message_bytes(text), messages, sessions))
