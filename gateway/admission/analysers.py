"""Content analysis on threads of the gateway process (`policies.content_processes: 0`).

Content analysis (MIME decoding and the content rules' scanners) is CPU work. On threads
it shares the gateway's one Python lock with the event loop and the spool writer; in
analysis processes (`gateway.policy.analysis_process`) it has CPUs to itself. Either
way it runs within `policies.content_timeout`, and time spent waiting for a free worker
is backpressure, not part of the budget. A crash, a hang or a worker that never frees up
raises, and the admitter holds the campaign (fail closed).
"""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor

from gateway.errors import Unanalysed
from gateway.model import ContentReport, Decider, Submission
from gateway.settings import QUEUE_WAIT


class ThreadAnalysers:
    """Content analysis on a few threads of the gateway process."""

    def __init__(self, threads: int, timeout: float, *, queue_wait: float = QUEUE_WAIT) -> None:
        self._timeout = timeout
        self._queue_wait = queue_wait
        # Threads never die when a wait times out, so a stuck analysis occupies one worker;
        # the pool bounds how many can pile up, and later messages time out (and hold).
        self._pool = ThreadPoolExecutor(threads, thread_name_prefix="content")

    async def open(self) -> None:
        """Nothing to start: threads start with their first task."""

    async def analyse(self, decider: Decider, submission: Submission) -> ContentReport:
        """Analyse on a thread; `Unanalysed` past the budget or when no thread frees up."""
        loop = asyncio.get_running_loop()
        running = asyncio.Event()

        def analyse() -> ContentReport:
            loop.call_soon_threadsafe(running.set)
            return decider.analyse(submission)

        work = loop.run_in_executor(self._pool, analyse)
        try:
            await asyncio.wait_for(running.wait(), self._queue_wait)
        except TimeoutError:
            raise Unanalysed(f"no analysis thread was free for {self._queue_wait:g} s") from None
        try:
            return await asyncio.wait_for(work, self._timeout)
        except TimeoutError:
            raise Unanalysed(f"content analysis took longer than {self._timeout:g} s") from None

    async def close(self) -> None:
        """Stop the threads; a stuck one is left to die with the process."""
        self._pool.shutdown(wait=False, cancel_futures=True)
