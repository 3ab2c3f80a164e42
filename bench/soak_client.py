"""The soak's load client: N SMTP sessions kept busy until a deadline, every reply timed.

Each session connects once, says EHLO and sends one message after another (MAIL, RCPT,
DATA without pipelining, like smtp-source and bench/latency_client.py) until the deadline,
then QUIT. It is a closed loop: a session sends its next message as soon as the last one
is answered, so the gateway always has every session's work waiting. The clock of a
message starts when its final "<CRLF>.<CRLF>" has been handed to the socket and stops when
the reply line has been read, the same as the latency scenario.

A soak must see problems rather than stop at the first: a reply other than the expected
one, or a connection that drops, is counted and kept (the first ERRORS_KEPT in full), and
the session reconnects. What the load did is readable from another thread while it runs
(accepted, open sessions) and complete once `run` returns. The client also measures its
own event loop's lag (a 50 ms sleep's overshoot), so a slow client would show.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from array import array
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from harness import HOST
from soak_traffic import Job

ERRORS_KEPT = 20
LAG_TICK = 0.05


class SmtpReplyError(RuntimeError):
    """The server answered something other than what the client expected."""


@dataclass
class SoakLoad:
    """The state of one soak's load, filled in by `run`."""

    port: int
    sessions: int
    duration: float
    next_job: Callable[[], Job]
    accepted_job: Callable[[Job], None]
    started: float = 0.0  # perf_counter when the first session was started
    all_open_s: float | None = None  # seconds until every session had its EHLO answered
    ended: float = 0.0  # perf_counter when the last session had closed
    accepted: int = 0
    rejected: int = 0  # final replies other than 250
    errors: int = 0  # every unexpected reply or dropped connection
    error_samples: list[str] = field(default_factory=list)
    open: int = 0
    min_open: int | None = None  # fewest sessions open between all open and the deadline
    done_at: array[float] = field(default_factory=lambda: array("d"))  # reply time, from start
    latency: array[float] = field(default_factory=lambda: array("d"))  # seconds, same order
    lag: array[float] = field(default_factory=lambda: array("d"))

    def run(self) -> None:
        """Run the load to its end on a new event loop (uvloop when it is installed)."""
        factory: Callable[[], asyncio.AbstractEventLoop] | None = None
        try:
            import uvloop  # noqa: PLC0415 - optional; the project's venv has it

            factory = uvloop.new_event_loop
        except ImportError:
            pass
        with asyncio.Runner(loop_factory=factory) as runner:
            runner.run(self._all())

    @property
    def loop_name(self) -> str:
        try:
            import uvloop  # noqa: F401, PLC0415
        except ImportError:
            return "asyncio"
        return "uvloop"

    async def _all(self) -> None:
        self.started = time.perf_counter()
        deadline = self.started + self.duration
        async with asyncio.TaskGroup() as tasks:
            tasks.create_task(self._lag(deadline))
            for _ in range(self.sessions):
                tasks.create_task(self._session(deadline))
        self.ended = time.perf_counter()

    async def _lag(self, deadline: float) -> None:
        while (before := time.perf_counter()) < deadline:
            await asyncio.sleep(LAG_TICK)
            self.lag.append(time.perf_counter() - before - LAG_TICK)

    def _error(self, what: str) -> None:
        self.errors += 1
        if len(self.error_samples) < ERRORS_KEPT:
            at = time.perf_counter() - self.started
            self.error_samples.append(f"{at:.1f}s: {what}"[:500])

    def _opened(self) -> None:
        self.open += 1
        if self.open == self.sessions and self.all_open_s is None:
            self.all_open_s = time.perf_counter() - self.started
            self.min_open = self.open

    def _closed(self, deadline: float) -> None:
        self.open -= 1
        if self.min_open is not None and time.perf_counter() < deadline:
            self.min_open = min(self.min_open, self.open)

    async def _session(self, deadline: float) -> None:
        while time.perf_counter() < deadline:
            try:
                reader, writer = await asyncio.open_connection(HOST, self.port)
            except OSError as exc:
                self._error(f"connect: {exc!r}")
                await asyncio.sleep(0.5)
                continue
            try:
                await _expect(reader, 220)
                writer.write(b"EHLO soak.bench.test\r\n")
                await _expect(reader, 250)
                self._opened()
                try:
                    await self._messages(reader, writer, deadline)
                finally:
                    self._closed(deadline)
                writer.write(b"QUIT\r\n")
                await _expect(reader, 221)
            except (SmtpReplyError, OSError) as exc:
                self._error(f"session: {exc}")
                await asyncio.sleep(0.5)
            finally:
                writer.close()
                with contextlib.suppress(OSError):
                    await writer.wait_closed()

    async def _messages(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, deadline: float
    ) -> None:
        while time.perf_counter() < deadline:
            job = self.next_job()
            writer.write(f"MAIL FROM:<{job.mail_from}>\r\n".encode())
            await _expect(reader, 250)
            writer.write(f"RCPT TO:<{job.rcpt}>\r\n".encode())
            await _expect(reader, 250)
            writer.write(b"DATA\r\n")
            await _expect(reader, 354)
            writer.write(job.payload)
            await writer.drain()
            sent = time.perf_counter()
            code, line = await _reply(reader)
            now = time.perf_counter()
            if code != 250:
                self.rejected += 1
                self._error(f"{job.campaign.key} <{job.rcpt}>: {line}")
                continue
            self.accepted += 1
            self.accepted_job(job)
            self.done_at.append(now - self.started)
            self.latency.append(now - sent)

    def summary(self) -> dict[str, Any]:
        """What the client measured, without the per-message arrays."""
        window = self.ended - self.started
        return {
            "loop": self.loop_name,
            "sessions": self.sessions,
            "all_open_s": self.all_open_s,
            "min_open_after_all_open": self.min_open,
            "window_s": window,
            "accepted": self.accepted,
            "rejected": self.rejected,
            "errors": self.errors,
            "error_samples": self.error_samples,
            "accept_rate": self.accepted / window,
            "latency_ms": percentiles(self.latency),
            "client_loop_lag_ms": percentiles(self.lag),
        }


def percentiles(values: array[float] | list[float]) -> dict[str, float]:
    """p50, p99 and max of seconds, in milliseconds (nearest rank)."""
    if not values:
        return {"count": 0, "p50": 0.0, "p99": 0.0, "max": 0.0}
    ordered = sorted(values)

    def rank(q: float) -> float:
        return 1000 * ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]

    return {"count": len(ordered), "p50": rank(0.5), "p99": rank(0.99), "max": 1000 * ordered[-1]}


async def _reply(reader: asyncio.StreamReader) -> tuple[int, str]:
    """Read one (possibly multi-line) reply; return its code and its last line."""
    while True:
        line = await reader.readline()
        if not line:
            raise SmtpReplyError("connection closed by the server")
        if line[3:4] != b"-":
            break
    text = line.decode(errors="replace").strip()
    try:
        return int(line[:3]), text
    except ValueError:
        raise SmtpReplyError(f"not an SMTP reply: {text!r}") from None


async def _expect(reader: asyncio.StreamReader, code: int) -> None:
    got, line = await _reply(reader)
    if got != code:
        raise SmtpReplyError(f"expected {code}, got {line}")
