"""The spool's writer threads, which group concurrent commits into one.

Concurrent SMTP sessions hand units of work to a queue; a writer thread takes every unit
that is waiting, runs each inside its own SAVEPOINT, then commits them all with one fsync
and only then answers their futures. So a 250 always follows a durable commit, without
one fsync per message. A unit that raises is rolled back to its savepoint alone; the
others still commit. SQLite has one writer thread (its single writer is the campaigns'
lock); PostgreSQL may have several, each with its own connection and group commit.
"""

from __future__ import annotations

import asyncio
import queue
import threading
import time
from collections.abc import Callable
from typing import Any

import structlog

from gateway.errors import SpoolError
from gateway.spool.dialect import Conn, Dialect

Work = Callable[[Conn], Any]
Job = tuple[Work, "asyncio.Future[Any]"]
log = structlog.get_logger(__name__)
_DEADLOCK_RETRIES = 3  # a unit that keeps losing deadlocks then fails (451: the client retries)


class Writer:
    """Writer threads sharing one queue of units, each grouping what waits into one commit."""

    def __init__(
        self,
        connect: Callable[[], Conn],
        dialect: Dialect,
        *,
        delay: float = 0.0,
        max_batch: int = 256,
        threads: int = 1,
    ) -> None:
        self._connect = connect
        self._dialect = dialect
        self._delay = delay
        self._max_batch = max_batch
        self._count = threads
        self._jobs: queue.SimpleQueue[Job | None] = queue.SimpleQueue()
        self._threads: list[threading.Thread] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self.commits = 0  # transactions committed; units / commits is the grouping factor
        self.units = 0

    def start(self) -> None:
        """Start the threads; units are answered on the running event loop."""
        self._loop = asyncio.get_running_loop()
        self._threads = [
            threading.Thread(target=self._run, name=f"spool-writer-{n}", daemon=True)
            for n in range(self._count)
        ]
        for thread in self._threads:
            thread.start()

    async def submit(self, work: Work) -> Any:
        """Run `work` in the next group commit; return its result once that is durable."""
        if self._loop is None:
            raise SpoolError("the spool is not open")
        future: asyncio.Future[Any] = self._loop.create_future()
        self._jobs.put((work, future))
        return await future

    async def stop(self) -> None:
        """Commit what is waiting, then stop the threads."""
        if not self._threads:
            return
        for _ in self._threads:
            self._jobs.put(None)
        for thread in self._threads:
            await asyncio.to_thread(thread.join)
        self._threads, self._loop = [], None

    def _run(self) -> None:
        conn: Conn | None = None
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
                conn = self._commit(conn, batch)
                if stop:
                    break
        finally:
            if conn is not None:
                _close(conn)

    def _commit(self, conn: Conn | None, batch: list[Job], *, tries: int = 0) -> Conn | None:
        """Commit `batch` as one transaction; return the connection to use next.

        A unit that lost a deadlock is tried again alone (`tries` times so far), after the
        batch commits: inside the batch it would wait for the same locks again.
        """
        alone = tries >= _DEADLOCK_RETRIES
        dialect = self._dialect
        answered: list[tuple[Job, tuple[bool, Any]]] = []
        retry: list[Job] = []
        try:
            conn = self._begin(conn)
            for job in batch:
                outcome = self._unit(conn, job[0], alone)
                if outcome is None:
                    retry.append(job)
                else:
                    answered.append((job, outcome))
            conn.execute("COMMIT")
            self.commits += 1
            self.units += len(answered)
        except dialect.errors as exc:
            log.exception("spool_commit_failed", units=len(batch))
            if conn is not None:
                _close(conn)  # a broken connection is opened anew for the next batch
            failed = (False, SpoolError(f"spool commit failed: {exc}"))
            conn, retry, answered = None, [], [(job, failed) for job in batch]
        self._answer(answered)
        for job in retry:
            conn = self._commit(conn, [job], tries=tries + 1)
        return conn

    def _begin(self, conn: Conn | None) -> Conn:
        """Open the batch's transaction, on a new connection if the last one broke."""
        if conn is not None:
            try:
                conn.execute(self._dialect.begin)
            except self._dialect.errors:
                if not self._dialect.broken(conn):
                    raise
                _close(conn)  # nothing ran yet: a new connection may try again
            else:
                return conn
        conn = self._connect()
        try:
            conn.execute(self._dialect.begin)
        except self._dialect.errors:
            _close(conn)
            raise
        return conn

    def _unit(self, conn: Conn, work: Work, alone: bool) -> tuple[bool, Any] | None:
        """Run one unit in its savepoint; None when it should be tried again on its own."""
        conn.execute("SAVEPOINT unit")
        try:
            result = work(conn)
        except Exception as exc:
            if not self._dialect.in_transaction(conn):
                raise  # the engine rolled everything back (disk full, I/O): all units fail
            conn.execute("ROLLBACK TO unit")
            conn.execute("RELEASE unit")
            if self._dialect.transient(exc) and not alone:
                return None
            if isinstance(exc, self._dialect.errors):
                exc = SpoolError(f"spool write failed: {exc}")
            return False, exc
        conn.execute("RELEASE unit")
        return True, result

    def _answer(self, answered: list[tuple[Job, tuple[bool, Any]]]) -> None:
        loop = self._loop
        if loop is None:  # stop() raced a commit; nobody is waiting any more
            return
        for (_, future), (ok, value) in answered:
            loop.call_soon_threadsafe(_resolve, future, ok, value)


def _close(conn: Conn) -> None:
    try:
        conn.close()  # type: ignore[attr-defined]
    except Exception:  # closing a connection that broke may fail too; it is gone either way
        log.debug("spool_connection_close_failed", exc_info=True)


def _resolve(future: asyncio.Future[Any], ok: bool, value: Any) -> None:
    if future.done():  # the waiting session went away; the commit stands regardless
        return
    if ok:
        future.set_result(value)
    else:
        future.set_exception(value)
