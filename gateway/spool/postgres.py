"""PostgreSQL spool: several gateway replicas sharing one database behave as one gateway.

PostgreSQL is the distributed engine; nothing of ours runs between replicas. The shared
statements run through `PgConnection` (psycopg 3, synchronous, because the transaction
port is a plain function run inside a writer's transaction, exactly as on SQLite).
What makes several writers safe:

- an admission locks its campaign's row (`FOR UPDATE`) until its transaction commits, so
  the counter update and the blast-radius decision are one step across replicas; only
  when there is no row yet does it take the key's advisory lock, so two replicas never
  create the same campaign twice;
- claims lock the messages they take with `FOR NO KEY UPDATE SKIP LOCKED`, and leases
  expire, so a replica that dies has its work taken over by the others;
- each writer connection groups concurrent units into one commit (`gateway.spool.writer`),
  and a unit that loses a deadlock is tried again on its own after the batch commits.

Unlike SQLite's, `open` never gives back leases: other replicas own them. Only the one
replica holding the leader lock reports the spool-wide gauges, so alerts fire once.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from functools import lru_cache
from typing import Any, TypeVar

import psycopg
import structlog
from psycopg import errors as pg_errors
from psycopg.pq import TransactionStatus

from gateway.errors import SpoolError
from gateway.spool.base import HELD_NAMED_LIMIT, SpoolGauges, migrations
from gateway.spool.dialect import Conn, Cursor, Dialect
from gateway.spool.sql_spool import SqlSpool
from gateway.spool.writer import Writer

T = TypeVar("T")
log = structlog.get_logger(__name__)

# Advisory locks are the database's, not the schema's: their keys name the schema, so
# two spools in two schemas of one database never share a lock.
_MIGRATION_LOCK = "sendbrake:migrations"
_LEADER_LOCK = "sendbrake:leader"
_LOCK_KEY = "hashtextextended(current_schema() || chr(1) || ?::text, 0)"
_TRANSIENT = (
    pg_errors.DeadlockDetected,
    pg_errors.SerializationFailure,
    pg_errors.LockNotAvailable,
)
# Loads older than this that never finished were left by a replica that died (a load of
# ten million members takes minutes); younger ones may belong to a live replica.
_ABANDONED_LOAD_AGE = 6 * 3600.0


def _in_transaction(conn: Any) -> bool:
    status = conn.raw.info.transaction_status
    return status in (TransactionStatus.INTRANS, TransactionStatus.INERROR)


POSTGRES = Dialect(
    name="postgres",
    begin="BEGIN",
    errors=(psycopg.Error,),
    in_transaction=_in_transaction,
    transient=lambda exc: isinstance(exc, _TRANSIENT),
    broken=lambda conn: bool(conn.raw.closed),
    shared=True,
    key_lock=(
        "SELECT pg_advisory_xact_lock(hashtextextended(?::text,"
        " hashtextextended(current_schema() || chr(1) || ?::text, 0)))"
    ),
)


@lru_cache(maxsize=1024)
def _placeholders(sql: str) -> str:
    """Turn the shared statements' `?` placeholders into psycopg's `%s`."""
    return sql.replace("%", "%%").replace("?", "%s")


class PgConnection:
    """A psycopg connection that runs the shared statements (their `?` placeholders)."""

    dialect = POSTGRES

    def __init__(self, raw: psycopg.Connection[Any]) -> None:
        self.raw = raw

    def execute(self, sql: str, parameters: Sequence[Any] = (), /) -> Cursor:
        return self.raw.execute(_placeholders(sql), tuple(parameters))

    def executemany(self, sql: str, parameters: Iterable[Sequence[Any]], /) -> Cursor:
        cursor = self.raw.cursor()
        cursor.executemany(_placeholders(sql), list(parameters))
        return cursor

    def close(self) -> None:
        self.raw.close()


class PostgresSpool(SqlSpool):
    """The Spool protocol on one PostgreSQL database, shared by any number of replicas."""

    def __init__(
        self,
        url: str,
        *,
        writers: int = 1,
        readers: int = 2,
        commit_delay: float = 0.0,
        max_batch: int = 256,
        connect_timeout: float = 5.0,
    ) -> None:
        self.url = url
        self._timeout = connect_timeout
        self._writer = Writer(
            self._connect, POSTGRES, delay=commit_delay, max_batch=max_batch, threads=writers
        )
        self._readers = readers
        self._reader: ThreadPoolExecutor | None = None
        self._local = threading.local()  # each reader thread's connection
        self._read_conns: list[PgConnection] = []
        self._leader: PgConnection | None = None
        self._leading = False
        self._leader_guard = threading.Lock()

    def _connect(self, *, reading: bool = False) -> PgConnection:
        raw = psycopg.connect(self.url, autocommit=True, connect_timeout=max(1, int(self._timeout)))
        if reading:  # every read is one snapshot, and never writes
            raw.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
            raw.read_only = True
            raw.autocommit = False
        return PgConnection(raw)

    async def open(self) -> None:
        await asyncio.to_thread(self._migrate)
        self._start()
        log.info("spool_opened", backend="postgres")

    async def attach(self) -> None:
        """Open beside running gateways: never migrates; a schema of another version fails."""
        conn = await asyncio.to_thread(self._connect)
        try:
            current = schema_version(conn)
        finally:
            conn.close()
        latest = migrations("postgres")[-1][0]
        if current != latest:
            raise SpoolError(
                f"the PostgreSQL spool has schema version {current}, this sendbrake needs"
                f" {latest}: start a gateway of this version first (it migrates on start)"
            )
        self._start()

    def _migrate(self) -> None:
        try:
            conn = self._connect()
        except psycopg.Error as exc:
            raise SpoolError(f"cannot reach the PostgreSQL spool: {exc}") from exc
        try:
            # Replicas starting together migrate one at a time; the later ones find it done.
            conn.execute(f"SELECT pg_advisory_lock({_LOCK_KEY})", (_MIGRATION_LOCK,))
            conn.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
            current = schema_version(conn)
            for version, sql in migrations("postgres"):
                if version > current:
                    with conn.raw.transaction():
                        conn.raw.execute(sql)
                        conn.execute("INSERT INTO schema_version VALUES (?)", (version,))
                    log.info("spool_migrated", backend="postgres", version=version)
            retired = conn.execute(
                "UPDATE segment_versions SET state = 'retired'"
                " WHERE state = 'loading' AND started_at < ?",
                (time.time() - _ABANDONED_LOAD_AGE,),
            ).rowcount
            if retired:
                log.info("spool_abandoned_loads_retired", versions=retired)
            conn.execute(f"SELECT pg_advisory_unlock({_LOCK_KEY})", (_MIGRATION_LOCK,))
        finally:
            conn.close()

    def _start(self) -> None:
        self._writer.start()
        self._reader = ThreadPoolExecutor(
            max_workers=self._readers, thread_name_prefix="spool-reader"
        )

    async def close(self) -> None:
        await self._writer.stop()
        if self._reader is not None:
            self._reader.shutdown(wait=True)
            self._reader = None
        for conn in [*self._read_conns, *([self._leader] if self._leader else [])]:
            conn.close()
        self._read_conns, self._leader = [], None

    async def _write(self, work: Callable[[Conn], T]) -> T:
        result: T = await self._writer.submit(work)
        return result

    async def _read(self, work: Callable[[Conn], T]) -> T:
        if self._reader is None:
            raise SpoolError("the spool is not open")
        return await asyncio.get_running_loop().run_in_executor(self._reader, self._run_read, work)

    def _run_read(self, work: Callable[[Conn], T]) -> T:
        for attempt in (1, 2):
            conn: PgConnection | None = getattr(self._local, "conn", None)
            try:
                if conn is None:
                    conn = self._connect(reading=True)
                    self._local.conn = conn
                    self._read_conns.append(conn)
                with conn.raw.transaction():
                    return work(conn)
            except psycopg.Error as exc:
                if conn is not None and conn.raw.closed:  # the server went away (a restart)
                    self._local.conn = None
                    self._read_conns.remove(conn)
                    if attempt == 1:
                        continue  # a read is safe to try again, on a new connection
                raise SpoolError(f"spool read failed: {exc}") from exc
        raise AssertionError("unreachable")

    async def gauges(self, limit: int = HELD_NAMED_LIMIT) -> SpoolGauges:
        snapshot = await super().gauges(limit)
        leader = await asyncio.to_thread(self._lead)
        return snapshot if leader else snapshot.as_follower()

    def _lead(self) -> bool:
        """Hold (or try to take) the leader lock: its holder reports the spool-wide gauges.

        A session lock on a connection of its own: when the leader dies its connection
        closes, the lock goes with it, and another replica takes it at its next scrape.
        """
        with self._leader_guard:
            try:
                if self._leader is None or self._leader.raw.closed:
                    self._leader = self._connect()
                    self._leading = False
                if not self._leading:
                    row = self._leader.execute(
                        f"SELECT pg_try_advisory_lock({_LOCK_KEY})", (_LEADER_LOCK,)
                    )
                    self._leading = bool(row.fetchone()[0])
                else:
                    self._leader.execute("SELECT 1")  # still connected, so still the holder
            except psycopg.Error:
                log.warning("spool_leader_lost", exc_info=True)
                if self._leader is not None:
                    self._leader.close()
                self._leader, self._leading = None, False
            return self._leading

    async def segment_add(self, version: int, hashes: Sequence[int]) -> int:
        return await self._write(lambda c: copy_members(c, version, hashes))


def copy_members(conn: Conn, version: int, hashes: Sequence[int]) -> int:
    """Add members to a loading version with COPY; return how many were new."""
    raw = conn.raw  # type: ignore[attr-defined]
    with raw.cursor() as cursor:
        cursor.execute(
            "CREATE TEMP TABLE IF NOT EXISTS segment_load (hash BIGINT NOT NULL)"
            " ON COMMIT DELETE ROWS"
        )
        with cursor.copy("COPY segment_load (hash) FROM STDIN (FORMAT BINARY)") as copy:
            copy.set_types(["int8"])
            for member in hashes:
                copy.write_row((member,))
        cursor.execute(
            "INSERT INTO segment_members (version, hash) SELECT %s, hash FROM segment_load"
            " ORDER BY hash ON CONFLICT DO NOTHING",
            (version,),
        )
        added = cursor.rowcount
        cursor.execute("DELETE FROM segment_load")  # another unit of this commit may load too
    return int(added)


def schema_version(conn: PgConnection) -> int:
    """Return the last migration this database has seen (0 for a new one)."""
    row = conn.execute("SELECT to_regclass('schema_version') IS NOT NULL").fetchone()
    if not row[0]:
        return 0
    return int(conn.execute("SELECT MAX(version) FROM schema_version").fetchone()[0] or 0)
