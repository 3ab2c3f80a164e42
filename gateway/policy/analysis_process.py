"""Content analysis in processes of their own, so that it has CPUs the gateway's lock lacks.

Python runs one thread at a time, and personalised mail needs its content read for every
copy (MIME decoding, HTML-to-text, language detection: most of the gateway's CPU per
message). With `policies.content_processes` above 0 (by default, one per CPU on a
machine with more than one) the admitter hands each message that needs reading to
`python -m gateway.policy.analysis_process`. The child holds an `Engine` per policy
version (the two latest) and its memos; the gateway remembers each clean report it gets
back, so content read once is recalled on the event loop without a trip to a child.

Each child reads one message at a time, so a child that overruns `content_timeout` has
nothing else in hand: it is killed (its campaign is held, as on threads) and a new one
started, and no other message pays for it. Time spent waiting for a free child is
backpressure, not part of the budget. A child that dies mid-reading holds that message
only; one found dead while idle is replaced before a message reaches it, holding nothing.
Replacements are counted by reason (`on_replaced`: the service's metric).

Frames (`gateway.childproc`): standard input carries the start frame (the registry
factory and the log settings), then ("policies", blueprint) whenever the child lacks a
version, and ("read", version, content, header fields, content key) per message;
standard output carries "ready" once set up, then (report, error) per read. End of input
stops the child.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
from collections.abc import Callable
from typing import BinaryIO

import structlog

from gateway import log as logging
from gateway.childproc import (
    become_child,
    frame,
    read_frame,
    read_frame_blocking,
    reap,
    start_child,
)
from gateway.errors import Unanalysed
from gateway.mail.content import content_key
from gateway.model import ContentReport, Decider, Submission
from gateway.policy.engine import Blueprint, Engine
from gateway.policy.registry import Registry, default_registry
from gateway.settings import QUEUE_WAIT, LogSettings

log = structlog.get_logger(__name__)

VERSIONS = 2  # engines a child keeps: the policy set in force, and the one before a reload


def key_of(submission: Submission) -> bytes:
    """Return the content key the admitter set, or compute it (a submission built without)."""
    return submission.content_key or content_key(submission.content)


class _Child:
    """One analysis process and what the gateway knows it holds; it reads one message at a time."""

    def __init__(self, start: bytes) -> None:
        self._start = start
        self._proc: asyncio.subprocess.Process | None = None
        self._pipes: tuple[asyncio.StreamWriter, asyncio.StreamReader] | None = None
        self._versions: list[str] = []  # as the child keeps them, oldest first

    @property
    def pid(self) -> int | None:
        """The process id, once started."""
        return None if self._proc is None else self._proc.pid

    @property
    def exited(self) -> bool:
        """Whether it was started and has exited since (killed while idle, say)."""
        return self._proc is not None and self._proc.returncode is not None

    async def start(self) -> tuple[asyncio.StreamWriter, asyncio.StreamReader]:
        """Start the process, unless it runs; return its input and output."""
        if self._pipes is None:
            self._proc, stdin, stdout = await start_child(__name__)
            stdin.write(self._start)
            if await read_frame(stdout) != "ready":  # imported and set up: reading can be timed
                code = await self._proc.wait()
                raise Unanalysed(f"the analysis process exited ({code}) while starting")
            self._pipes = stdin, stdout
            log.info("analysis_process_started", pid=self._proc.pid)
        return self._pipes

    async def read(self, blueprint: Blueprint, submission: Submission) -> ContentReport:
        """Have the child read one message's content; `Unanalysed` when it died doing it."""
        stdin, stdout = await self.start()
        if blueprint.version not in self._versions:
            stdin.write(frame(("policies", blueprint)))
            self._versions = [*self._versions, blueprint.version][-VERSIONS:]
        fields, key = submission.header_fields, key_of(submission)
        stdin.write(frame(("read", blueprint.version, submission.content, fields, key)))
        answer = await read_frame(stdout)
        if answer is None:
            code = await self._proc.wait() if self._proc is not None else None
            raise Unanalysed(f"the analysis process exited ({code}) while reading it")
        report, error = answer
        if error is not None:
            raise Unanalysed(f"content analysis failed: {error}")
        result: ContentReport = report
        return result

    async def stop(self, *, kill: bool = False) -> None:
        """End its input and wait for it to exit; `kill` ends one that may be stuck at once."""
        if self._proc is None or self._pipes is None:
            return
        self._pipes[0].close()
        if kill and self._proc.returncode is None:
            self._proc.kill()
        await reap(self._proc)


class ProcessAnalysers:
    """Content analysis in `processes` child processes, one message at a time each."""

    def __init__(
        self,
        processes: int,
        timeout: float,
        *,
        log_settings: LogSettings,
        registry: Callable[[], Registry] = default_registry,
        queue_wait: float = QUEUE_WAIT,
        on_replaced: Callable[[str], None] | None = None,
    ) -> None:
        """`registry` is a module-level function the child imports to build its engines.

        `on_replaced` hears why a child was replaced: "timeout" or "exited" (a metric).
        """
        self._timeout = timeout
        self._on_replaced = on_replaced
        self._queue_wait = queue_wait
        self._start = frame((registry, log_settings))
        self._idle: asyncio.Queue[_Child] = asyncio.Queue()
        self._children = [_Child(self._start) for _ in range(processes)]
        self._retiring: set[asyncio.Future[None]] = set()  # replaced children, being killed
        self._closed = False
        for child in self._children:
            self._idle.put_nowait(child)

    @property
    def pids(self) -> list[int]:
        """The running children's process ids."""
        return [pid for child in self._children if (pid := child.pid) is not None]

    @property
    def busy(self) -> int:
        """How many children are reading a message now."""
        return len(self._children) - self._idle.qsize()

    async def open(self) -> None:
        """Start every child now, so that their start-up does not delay the first messages."""
        await asyncio.gather(*(child.start() for child in self._children))

    async def analyse(self, decider: Decider, submission: Submission) -> ContentReport:
        """Read the content in a free child; remember a clean report in the gateway's engine."""
        if not isinstance(decider, Engine):
            raise TypeError("analysis processes rebuild an Engine; use threads for other deciders")
        try:
            child = await asyncio.wait_for(self._idle.get(), self._queue_wait)
        except TimeoutError:
            raise Unanalysed(f"no analysis process was free for {self._queue_wait:g} s") from None
        if child.exited:  # it died idle (the OOM killer, an operator): not this message's doing
            child = self._replace(child)
            self._count("exited")
        try:
            await child.start()  # a replacement's start-up is not the message's reading
            report = await asyncio.wait_for(
                child.read(decider.blueprint(), submission), self._timeout
            )
        except BaseException as exc:
            # Timed out, died or cancelled mid-frame: what it holds is unknown, so replace it.
            child = self._replace(child)
            if isinstance(exc, TimeoutError | Unanalysed):  # not a cancellation: it failed
                self._count("timeout" if isinstance(exc, TimeoutError) else "exited")
            if isinstance(exc, TimeoutError):
                raise Unanalysed(f"content analysis took longer than {self._timeout:g} s") from None
            raise
        finally:
            self._idle.put_nowait(child)
        decider.learn(key_of(submission), report)
        return report

    def _count(self, reason: str | None) -> None:
        if reason and self._on_replaced is not None and not self._closed:
            self._on_replaced(reason)

    def _replace(self, old: _Child) -> _Child:
        """Kill `old` (its exit is awaited by `close`) and put a new child in its place."""
        new = _Child(self._start)
        self._children[self._children.index(old)] = new
        if self._closed:  # `close` stopped it; the new one is never started
            return new
        log.warning("analysis_process_replaced", pid=old.pid)
        stopping = asyncio.ensure_future(old.stop(kill=True))
        self._retiring.add(stopping)
        stopping.add_done_callback(self._retiring.discard)
        return new

    async def close(self) -> None:
        """Stop every child (killing those still reading) and wait for them all to exit."""
        self._closed = True
        idle = set()
        while not self._idle.empty():
            idle.add(self._idle.get_nowait())
        stopping = (child.stop(kill=child not in idle) for child in self._children)
        await asyncio.gather(*stopping, *self._retiring)


# --- the child ------------------------------------------------------------------------------


def serve(registry: Registry, requests: int, answers: BinaryIO) -> None:
    """Answer each read request in turn until input ends."""
    engines: dict[str, Engine] = {}  # by policy version, oldest first
    answers.write(frame("ready"))
    answers.flush()
    while (request := read_frame_blocking(requests)) is not None:
        if request[0] == "policies":
            blueprint: Blueprint = request[1]
            engines[blueprint.version] = Engine(
                blueprint.policies,
                registry=registry,
                budget=blueprint.budget,
                scan_budget=blueprint.scan_budget,
            )
            while len(engines) > VERSIONS:
                del engines[next(iter(engines))]
            continue
        _, version, content, fields, key = request
        answer: tuple[ContentReport | None, str | None]
        try:
            answer = (engines[version].read(content, fields, key), None)
        except Exception as exc:  # answer all the same: the gateway holds, never waits for ever
            log.exception("content_analysis_crashed")
            answer = (None, f"{type(exc).__name__}: {exc}")
        answers.write(frame(answer))
        answers.flush()


def main() -> None:
    """Entry point of an analysis process (`python -m gateway.policy.analysis_process`)."""
    start: tuple[Callable[[], Registry], LogSettings] = become_child()
    registry, log_settings = start
    logging.configure(log_settings.format, log_settings.level, final=True)
    structlog.contextvars.bind_contextvars(process="analysis")
    with contextlib.suppress(BrokenPipeError):  # the gateway went away first
        serve(registry(), sys.stdin.fileno(), sys.stdout.buffer)


if __name__ == "__main__":
    main()
