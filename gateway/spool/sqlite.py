"""SQLite spool (WAL) with group commit: the embedded default, nothing to install.

One writer thread owns the write connection (`gateway.spool.writer`): concurrent SMTP
sessions hand it units of work and it commits all that wait with one fsync, so a 250
always follows a durable commit. Reads use a second connection on their own thread (WAL
lets them run beside the writer). A lock file makes the spool exclusive to one process,
which is what lets `open` reclaim every lease a crash left behind.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import sqlite3
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TypeVar

import structlog

from gateway.errors import SpoolError, SpoolLocked
from gateway.spool import sql_queue as q
from gateway.spool import sql_segments
from gateway.spool.base import migrations
from gateway.spool.dialect import Conn, Dialect
from gateway.spool.sql_spool import SqlSpool
from gateway.spool.writer import Writer

T = TypeVar("T")
log = structlog.get_logger(__name__)

SQLITE = Dialect(
    name="sqlite",
    begin="BEGIN IMMEDIATE",
    errors=(sqlite3.Error,),
    in_transaction=lambda conn: bool(conn.in_transaction),
    transient=lambda _exc: False,  # one writer: nobody to deadlock with
    broken=lambda _conn: False,  # a file does not go away under an open connection
    shared=False,
    leased_index="INDEXED BY recipients_leased",
)


class SqliteConnection(sqlite3.Connection):
    """A connection that tells the shared statements they run on SQLite."""

    dialect = SQLITE


class SqliteSpool(SqlSpool):
    """The Spool protocol on one SQLite database file."""

    def __init__(
        self,
        path: Path,
        *,
        commit_delay: float = 0.0,
        max_batch: int = 256,
        busy_timeout: float = 5.0,
        durable: bool = True,
    ) -> None:
        self._busy_timeout = busy_timeout
        self._durable = durable  # False only for scratch spools (a replay's): no fsync
        self.path = path
        self._writer = Writer(self._connect, SQLITE, delay=commit_delay, max_batch=max_batch)
        self._reader: ThreadPoolExecutor | None = None
        self._read_conn: SqliteConnection | None = None
        self._lock_fd: int | None = None

    def _connect(self) -> SqliteConnection:
        return connect(self.path, self._busy_timeout, durable=self._durable)

    async def open(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock()
        owner_only(self.path)
        conn = self._connect()
        try:
            conn.execute("PRAGMA journal_mode = WAL")
            migrate(conn)
            # The lock file proves no other process is alive to own these leases.
            with conn:
                recovered = q.give_back(conn, now=time.time())
                sql_segments.retire_unfinished(conn)
        finally:
            conn.close()
        if recovered:
            log.info("spool_leases_recovered", recipients=recovered)
        self._start()
        log.info("spool_opened", path=str(self.path))

    async def attach(self) -> None:
        """Open the spool of a gateway that may be running, to use it beside that gateway.

        With no gateway running this is `open`. Beside one, it never migrates the schema
        or reclaims leases (only the lock holder may), and a schema of another version is
        a `SpoolError`; writes still go through this spool's writer in transactions that
        take SQLite's write lock, which the gateway's writer waits for, never behind it.
        """
        try:
            await self.open()
        except SpoolLocked:
            pass
        else:
            return
        conn = self._connect()
        try:
            current = schema_version(conn)
        finally:
            conn.close()
        latest = migrations("sqlite")[-1][0]
        if current != latest:
            raise SpoolError(
                f"{self.path} has schema version {current}, this sendbrake needs {latest}:"
                " restart the gateway with this version first (it migrates on start)"
            )
        self._start()

    def _start(self) -> None:
        self._writer.start()
        self._reader = ThreadPoolExecutor(max_workers=1, thread_name_prefix="spool-reader")
        self._read_conn = self._connect()

    def _lock(self) -> None:
        fd = os.open(f"{self.path}.lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise SpoolLocked(f"{self.path} is in use by another sendbrake process") from None
        self._lock_fd = fd

    async def close(self) -> None:
        await self._writer.stop()
        if self._reader is not None:
            self._reader.shutdown(wait=True)
            self._reader = None
        if self._read_conn is not None:
            self._read_conn.close()
            self._read_conn = None
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    async def _write(self, work: Callable[[Conn], T]) -> T:
        result: T = await self._writer.submit(work)
        return result

    async def _read(self, work: Callable[[Conn], T]) -> T:
        if self._reader is None or self._read_conn is None:
            raise SpoolError("the spool is not open")
        conn = self._read_conn
        try:
            return await asyncio.get_running_loop().run_in_executor(self._reader, work, conn)
        except sqlite3.Error as exc:
            raise SpoolError(f"spool read failed: {exc}") from exc

    async def _snapshot(self, work: Callable[[Conn], T]) -> T:
        def within(conn: Conn) -> T:
            conn.execute("BEGIN")  # one WAL snapshot for every read of `work`
            try:
                return work(conn)
            finally:
                conn.execute("ROLLBACK")  # read only: nothing to keep

        return await self._read(within)


def owner_only(path: Path) -> None:
    """Create the database file readable by its owner only; tighten older ones too.

    SQLite gives the -wal and -shm files it creates the database file's mode.
    """
    os.close(os.open(path, os.O_RDWR | os.O_CREAT, 0o600))
    for suffix in ("", "-wal", "-shm"):
        with contextlib.suppress(FileNotFoundError):
            Path(f"{path}{suffix}").chmod(0o600)


def connect(path: Path, busy_timeout: float = 5.0, *, durable: bool = True) -> SqliteConnection:
    """Open a connection with the settings every spool connection uses."""
    conn = sqlite3.connect(
        path, isolation_level=None, check_same_thread=False, factory=SqliteConnection
    )
    conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout * 1000)}")
    # WAL + FULL: each COMMIT is durable; a scratch spool that is thrown away skips fsync.
    conn.execute(f"PRAGMA synchronous = {'FULL' if durable else 'OFF'}")
    return conn


def migrate(conn: sqlite3.Connection) -> None:
    """Apply the forward-only migrations this database has not seen yet."""
    conn.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
    current = schema_version(conn)
    for version, sql in migrations("sqlite"):
        if version > current:
            # executescript commits first; wrap the migration in its own transaction.
            conn.executescript(
                f"BEGIN;\n{sql}\nINSERT INTO schema_version VALUES ({version});\nCOMMIT;"
            )
            log.info("spool_migrated", version=version)


def schema_version(conn: sqlite3.Connection) -> int:
    """Return the last migration this database has seen (0 for a new one)."""
    try:
        row = conn.execute("SELECT MAX(version) FROM schema_version").fetchone()
    except sqlite3.OperationalError:  # no such table: nothing was ever migrated
        return 0
    return int(row[0] or 0)
