"""The SQLite spool's single writer thread, which groups concurrent commits into one.

Concurrent SMTP sessions hand it units of work; it runs every unit that is waiting, each
inside its own SAVEPOINT, then commits them all with one fsync and only then answers
their futures. So a 250 always follows a durable commit, without one fsync per message.
A unit that raises is rolled back to its savepoint alone; the others still commit.
"""

from __future__ import annotations

import asyncio
import queue
import sqlite3
import threading
import time
from collections.abc import Callable
from typing import Any

import structlog

from gateway.errors import SpoolError

Work = Callable[[sqlite3.Connection], Any]
log = structlog.get_logger(__name__)


class Writer:
    """The single writer thread that groups concurrent commits into one."""

    def __init__(
        self, connect: Callable[[], sqlite3.Connection], delay: float, max_batch: int
    ) -> None:
        self._connect = connect
        self._delay = delay
        self._max_batch = max_batch
        self._jobs: queue.SimpleQueue[tuple[Work, asyncio.Future[Any]] | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self.commits = 0  # transactions committed; units / commits is the grouping factor
        self.units = 0

    def start(self) -> None:
        """Start the thread; units are answered on the running event loop."""
        self._loop = asyncio.get_running_loop()
        self._thread = threading.Thread(target=self._run, name="spool-writer", daemon=True)
        self._thread.start()

    async def submit(self, work: Work) -> Any:
        """Run `work` in the next group commit; return its result once that is durable."""
        if self._loop is None:
            raise SpoolError("the spool is not open")
        future: asyncio.Future[Any] = self._loop.create_future()
        self._jobs.put((work, future))
        return await future

    async def stop(self) -> None:
        """Commit what is waiting, then stop the thread."""
        if self._thread is None:
            return
        self._jobs.put(None)
        await asyncio.to_thread(self._thread.join)
        self._thread = self._loop = None

    def _run(self) -> None:
        conn = self._connect()
        try:
            while (first := self._jobs.get()) is not None:
                batch = [first]
                if self._delay:
                    time.sleep(self._delay)
                stop = False
                while len(batch) < self._max_batch:
                    try:
                        job = self._jobs.get_nowait()
                    except queue.Empty:
                        break
                    if job is None:
                        stop = True
                        break
                    batch.append(job)
                self._commit(conn, batch)
                if stop:
                    break
        finally:
            conn.close()

    def _commit(
        self, conn: sqlite3.Connection, batch: list[tuple[Work, asyncio.Future[Any]]]
    ) -> None:
        results: list[tuple[bool, Any]] = []
        try:
            conn.execute("BEGIN IMMEDIATE")
            for work, _ in batch:
                conn.execute("SAVEPOINT unit")
                try:
                    results.append((True, work(conn)))
                    conn.execute("RELEASE unit")
                except Exception as exc:
                    if not conn.in_transaction:
                        raise  # SQLite rolled everything back (disk full, I/O): all units fail
                    conn.execute("ROLLBACK TO unit")
                    conn.execute("RELEASE unit")
                    if isinstance(exc, sqlite3.Error):
                        exc = SpoolError(f"spool write failed: {exc}")
                    results.append((False, exc))
            conn.execute("COMMIT")
            self.commits += 1
            self.units += len(batch)
        except sqlite3.Error as exc:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            log.exception("spool_commit_failed", units=len(batch))
            results = [(False, SpoolError(f"spool commit failed: {exc}"))] * len(batch)
        loop = self._loop
        if loop is None:  # stop() raced a commit; nobody is waiting any more
            return
        for (_, future), (ok, value) in zip(batch, results, strict=True):
            loop.call_soon_threadsafe(_resolve, future, ok, value)


def _resolve(future: asyncio.Future[Any], ok: bool, value: Any) -> None:
    if future.done():  # the waiting session went away; the commit stands regardless
        return
    if ok:
        future.set_result(value)
    else:
        future.set_exception(value)
