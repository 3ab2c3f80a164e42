"""Upstream conversations in a process of their own, so that they have a CPU to themselves.

Python runs one thread at a time, and the gateway's event loop already carries the SMTP
ingress; the SMTP client side of the relay (four round trips and their parsing per
message) would share that one CPU however many the machine has. With `upstream.process`
separate (the default on a machine with more than one CPU) the relay hands each delivery
to `python -m gateway.relay.upstream_process`, which runs the real upstream. Everything
durable stays in the gateway: claims, leases, retries and settlements; the child holds
nothing but connections, so losing it loses nothing.

Frames on the child's pipes (`gateway.childproc`: a length and a pickle):
standard input carries the upstream settings first, then (id, mail_from, rcpts, content,
ids) per delivery; standard output carries (id, results); end of input means close the
connections and exit; standard error is the log. The child ignores SIGINT (a terminal's
Ctrl-C reaches the whole process group; the gateway stops it in order) and, on Linux,
dies with the gateway, so a gateway killed -9 loses only its in-flight deliveries, whose
leases the next start takes back. A child that dies is started again on the next delivery;
the deliveries it had in hand are answered as transient failures and retried.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import sys
from collections.abc import Sequence

import structlog
import uvloop

from gateway import log as logging
from gateway.childproc import become_child, frame, read_frame, start_child
from gateway.model import DeliveryIds, Outcome, RecipientResult
from gateway.relay.upstream import Upstream, create_upstream
from gateway.settings import LogSettings, RuntimeSettings, Settings, UpstreamSettings

log = structlog.get_logger(__name__)

STOP_TIMEOUT = 10.0  # seconds the child gets to say QUIT to the upstream when closing


class ProcessUpstream:
    """An upstream that hands each delivery to a child process running the real one."""

    def __init__(self, settings: Settings) -> None:
        self._start_frame = frame((settings.upstream, settings.log, settings.runtime))
        self._proc: asyncio.subprocess.Process | None = None
        self._answers: asyncio.Task[None] | None = None
        self._pending: dict[int, tuple[asyncio.Future[list[RecipientResult]], Sequence[str]]] = {}
        self._ids = itertools.count()
        self._starting = asyncio.Lock()

    @property
    def pid(self) -> int | None:
        """The running child's process id, or None while none runs."""
        running = self._proc is not None and self._proc.returncode is None
        return self._proc.pid if running and self._proc is not None else None

    async def deliver(
        self, mail_from: str, rcpts: Sequence[str], content: bytes, ids: DeliveryIds
    ) -> list[RecipientResult]:
        """Send one message through the child; answer for every recipient, in order."""
        try:
            stdin = await self._child()
        except OSError as exc:
            log.exception("upstream_process_failed")
            return _all(rcpts, Outcome.TRANSIENT, f"upstream process could not start: {exc}")
        request = next(self._ids)
        answer: asyncio.Future[list[RecipientResult]] = asyncio.get_running_loop().create_future()
        self._pending[request] = (answer, rcpts)
        try:
            stdin.write(frame((request, mail_from, tuple(rcpts), content, ids)))
            return await answer
        finally:
            self._pending.pop(request, None)

    async def open(self) -> None:
        """Start the child now, so that its start-up does not delay the first deliveries."""
        try:
            await self._child()
        except OSError:  # deliveries try again, and answer transient while it fails
            log.exception("upstream_process_failed")

    async def close(self) -> None:
        """Let the child close its connections and exit; kill it if it does not."""
        proc, self._proc = self._proc, None
        if proc is None or proc.stdin is None:
            return
        proc.stdin.close()
        try:
            await asyncio.wait_for(proc.wait(), STOP_TIMEOUT)
        except TimeoutError:
            proc.kill()
            await proc.wait()
        if self._answers is not None:
            await self._answers

    async def _child(self) -> asyncio.StreamWriter:
        """Return the running child's input, starting a child first when none runs."""
        async with self._starting:
            proc = self._proc
            if proc is None or proc.returncode is not None or proc.stdin is None:
                proc, stdin, stdout = await start_child(__name__)
                stdin.write(self._start_frame)
                self._proc = proc
                self._answers = asyncio.create_task(self._read_answers(stdout, proc))
                log.info("upstream_process_started", pid=proc.pid)
            if proc.stdin is None:
                raise RuntimeError("the upstream process has no input")
            return proc.stdin

    async def _read_answers(
        self, stdout: asyncio.StreamReader, proc: asyncio.subprocess.Process
    ) -> None:
        while (answer := await read_frame(stdout)) is not None:
            request, results = answer
            waiting = self._pending.get(request)
            if waiting is not None and not waiting[0].done():
                waiting[0].set_result(results)
        code = await proc.wait()
        if self._proc is proc:  # not closed by us: it died
            log.error("upstream_process_exited", pid=proc.pid, code=code)
        # Whatever it had in hand may or may not have reached the upstream: retry later.
        for answer_future, rcpts in list(self._pending.values()):
            if not answer_future.done():
                reply = f"451 4.3.0 upstream process exited ({code}) during the delivery"
                answer_future.set_result(_all(rcpts, Outcome.TRANSIENT, reply))


def _all(rcpts: Sequence[str], outcome: Outcome, reply: str) -> list[RecipientResult]:
    return [RecipientResult(rcpt, outcome, reply) for rcpt in rcpts]


# --- the child ------------------------------------------------------------------------------


async def serve(upstream: Upstream, requests: asyncio.StreamReader) -> None:
    """Deliver each request as it comes, answer on standard output, until input ends."""
    loop = asyncio.get_running_loop()
    transport, protocol = await loop.connect_write_pipe(asyncio.Protocol, sys.stdout)
    answers = asyncio.StreamWriter(transport, protocol, None, loop)

    async def handle(
        request: int, mail_from: str, rcpts: tuple[str, ...], content: bytes, ids: DeliveryIds
    ) -> None:
        try:
            results = await upstream.deliver(mail_from, rcpts, content, ids)
        except Exception as exc:  # answer all the same, or the gateway waits for ever
            log.exception("upstream_delivery_crashed")
            results = _all(rcpts, Outcome.TRANSIENT, f"451 4.3.0 upstream process error: {exc}")
        answers.write(frame((request, results)))

    async with asyncio.TaskGroup() as deliveries:
        while (request := await read_frame(requests)) is not None:
            deliveries.create_task(handle(*request))
    await upstream.close()
    transport.close()


async def _main(settings: UpstreamSettings) -> None:
    loop = asyncio.get_running_loop()
    requests = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(requests), sys.stdin)
    structlog.contextvars.bind_contextvars(process="upstream")
    await serve(create_upstream(settings), requests)


def main() -> None:
    """Entry point of the upstream process (`python -m gateway.relay.upstream_process`)."""
    start: tuple[UpstreamSettings, LogSettings, RuntimeSettings] = become_child()
    settings, log_settings, runtime = start
    logging.configure(log_settings.format, log_settings.level, final=True)
    with contextlib.suppress(BrokenPipeError):  # the gateway went away first
        if runtime.event_loop == "uvloop":
            uvloop.run(_main(settings))
        else:
            asyncio.run(_main(settings))


if __name__ == "__main__":
    main()
