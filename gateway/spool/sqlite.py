"""SQLite spool (WAL) with group commit: the embedded default, nothing to install.

One writer thread owns the write connection. Concurrent SMTP sessions hand it units of
work; it runs every unit that is waiting, each inside its own SAVEPOINT, then commits
them all with one fsync and only then answers their futures. So a 250 always follows a
durable commit, without one fsync per message. Reads use a second connection on their
own thread (WAL lets them run beside the writer). A lock file makes the spool exclusive
to one process, which is what lets `open` reclaim every lease a crash left behind.
"""

from __future__ import annotations

import asyncio
import fcntl
import os
import sqlite3
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

import structlog

from gateway.errors import SpoolError, SpoolLocked
from gateway.model import (
    AuditEntry,
    Campaign,
    CampaignEvent,
    Delivery,
    Finding,
    Manifest,
    RecipientRecord,
    ReleaseScope,
    Segment,
    Settlement,
    StoredMessage,
    Token,
)
from gateway.spool import sqlite_access as access
from gateway.spool import sqlite_queue as q
from gateway.spool import sqlite_review as r
from gateway.spool import sqlite_segments
from gateway.spool.base import HELD_NAMED_LIMIT, SpoolGauges, migrations
from gateway.spool.port import Tx
from gateway.spool.sqlite_tx import SqliteTx
from gateway.spool.sqlite_writer import Writer
from gateway.states import CampaignState, RecipientState

T = TypeVar("T")
Work = Callable[[sqlite3.Connection], Any]
log = structlog.get_logger(__name__)


class SqliteSpool:
    """The Spool protocol on one SQLite database file."""

    def __init__(
        self,
        path: Path,
        *,
        commit_delay: float = 0.0,
        max_batch: int = 256,
        busy_timeout: float = 5.0,
    ) -> None:
        self._busy_timeout = busy_timeout
        self.path = path
        self._writer = Writer(self._connect, commit_delay, max_batch)
        self._reader: ThreadPoolExecutor | None = None
        self._read_conn: sqlite3.Connection | None = None
        self._lock_fd: int | None = None

    def _connect(self) -> sqlite3.Connection:
        return connect(self.path, self._busy_timeout)

    async def open(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock()
        conn = self._connect()
        try:
            conn.execute("PRAGMA journal_mode = WAL")
            migrate(conn)
            # The lock file proves no other process is alive to own these leases.
            with conn:
                recovered = q.give_back(conn, now=time.time())
                sqlite_segments.retire_unfinished(conn)
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
        latest = migrations()[-1][0]
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
        fd = os.open(f"{self.path}.lock", os.O_RDWR | os.O_CREAT, 0o644)
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

    async def _write(self, work: Callable[[sqlite3.Connection], T]) -> T:
        result: T = await self._writer.submit(work)
        return result

    async def _read(self, work: Callable[[sqlite3.Connection], T]) -> T:
        if self._reader is None or self._read_conn is None:
            raise SpoolError("the spool is not open")
        conn = self._read_conn
        try:
            return await asyncio.get_running_loop().run_in_executor(self._reader, work, conn)
        except sqlite3.Error as exc:
            raise SpoolError(f"spool read failed: {exc}") from exc

    async def ping(self) -> None:
        await self._read(lambda c: c.execute("SELECT 1").fetchone())

    # -- the queue ----------------------------------------------------------------------

    async def transact(self, work: Callable[[Tx], T]) -> T:
        return await self._write(lambda c: work(SqliteTx(c)))

    async def read(self, work: Callable[[Tx], T]) -> T:
        return await self._read(lambda c: work(SqliteTx(c)))

    async def claim(self, owner: str, now: float, limit: int, lease: float) -> list[Delivery]:
        return await self._write(lambda c: q.claim(c, owner, now, limit, lease))

    async def settle(self, owner: str, settlements: Sequence[Settlement], now: float) -> int:
        return await self._write(lambda c: q.settle(c, owner, settlements, now))

    async def release_leases(self, owner: str, now: float) -> int:
        return await self._write(lambda c: q.give_back(c, now=now, owner=owner))

    async def renew_leases(self, owner: str, recipient_ids: Sequence[int], until: float) -> int:
        return await self._write(lambda c: q.renew(c, owner, recipient_ids, until))

    async def next_due(self) -> float | None:
        def work(conn: sqlite3.Connection) -> float | None:
            # A lease running out makes work due too: its recipients are taken over then.
            row = conn.execute(
                "SELECT MIN(at) FROM (SELECT MIN(next_attempt_at) AS at FROM recipients"
                " WHERE state IN (?, ?) UNION ALL SELECT MIN(lease_until) FROM recipients"
                " WHERE state = 'sending')",
                q.CLAIMABLE_STATES,
            ).fetchone()
            return None if row[0] is None else float(row[0])

        return await self._read(work)

    async def count_by_state(self) -> dict[RecipientState, int]:
        def work(conn: sqlite3.Connection) -> dict[RecipientState, int]:
            rows = conn.execute("SELECT state, COUNT(*) FROM recipients GROUP BY state").fetchall()
            counts = dict.fromkeys(RecipientState, 0)
            counts.update({RecipientState(state): count for state, count in rows})
            return counts

        return await self._read(work)

    async def gauges(self, limit: int = HELD_NAMED_LIMIT) -> SpoolGauges:
        return await self._read(lambda c: r.gauges(c, limit))

    # -- campaigns and review -----------------------------------------------------------

    async def campaign(self, campaign_id: str) -> Campaign | None:
        return await self._read(lambda c: q.campaign_by_id(c, campaign_id))

    async def find_campaign(self, client: str, key: str) -> Campaign | None:
        def work(conn: sqlite3.Connection) -> Campaign | None:
            row = conn.execute(
                f"SELECT {q.CAMPAIGN_COLUMNS} FROM campaigns WHERE client = ? AND key = ?"
                " ORDER BY created_at DESC LIMIT 1",
                (client, key),
            ).fetchone()
            return None if row is None else q.campaign_from_row(row)

        return await self._read(work)

    async def campaigns(
        self, *, state: CampaignState | None = None, limit: int = 50, before: str | None = None
    ) -> list[Campaign]:
        return await self._read(lambda c: r.list_campaigns(c, state, limit, before))

    async def events(self, campaign_id: str) -> list[CampaignEvent]:
        return await self._read(lambda c: r.events(c, campaign_id))

    async def recipients(
        self,
        *,
        campaign_id: str | None = None,
        message_id: str | None = None,
        state: RecipientState | None = None,
        limit: int = 1000,
        after: int = 0,
    ) -> list[RecipientRecord]:
        clauses, params = ["id > ?"], [str(after)]
        for column, value in (
            ("campaign_id", campaign_id),
            ("message_id", message_id),
            ("state", state),
        ):
            if value is not None:
                clauses.append(f"{column} = ?")
                params.append(str(value))

        def work(conn: sqlite3.Connection) -> list[RecipientRecord]:
            rows = conn.execute(
                f"SELECT {q.RECIPIENT_COLUMNS} FROM recipients WHERE {' AND '.join(clauses)}"
                " ORDER BY id LIMIT ?",
                (*params, limit),
            ).fetchall()
            return [q.recipient_from_row(row) for row in rows]

        return await self._read(work)

    async def message(self, message_id: str) -> StoredMessage | None:
        return await self._read(lambda c: r.message(c, message_id))

    async def hold(self, campaign_id: str, finding: Finding, now: float) -> Campaign | None:
        return await self._write(lambda c: r.manual_hold(c, campaign_id, finding, now))

    async def release(
        self, campaign_id: str, actor: str, now: float, scope: ReleaseScope | None = None
    ) -> Campaign | None:
        return await self._write(lambda c: r.release(c, campaign_id, actor, now, scope))

    async def reject(self, campaign_id: str, actor: str, now: float) -> Campaign | None:
        return await self._write(lambda c: r.reject(c, campaign_id, actor, now))

    async def approve_release(self, campaign_id: str, actor: str, now: float) -> list[str]:
        return await self._write(lambda c: r.approve_release(c, campaign_id, actor, now))

    async def put_manifest(self, manifest: Manifest) -> None:
        await self._write(lambda c: r.put_manifest(c, manifest))

    async def set_relay_paused(self, paused: bool, actor: str, reason: str, now: float) -> None:
        await self._write(lambda c: r.set_relay_paused(c, paused, actor, reason, now))

    async def relay_paused(self) -> bool:
        return await self._read(q.relay_paused)

    # -- segments -----------------------------------------------------------------------

    async def segment_begin(self, name: str, now: float) -> int:
        return await self._write(lambda c: sqlite_segments.begin(c, name, now))

    async def segment_add(self, version: int, hashes: Sequence[int]) -> int:
        return await self._write(lambda c: sqlite_segments.add(c, version, hashes))

    async def segment_publish(self, segment: Segment) -> int | None:
        return await self._write(lambda c: sqlite_segments.publish(c, segment))

    async def segment_abandon(self, version: int) -> None:
        await self._write(lambda c: sqlite_segments.abandon(c, version))

    async def segments(self) -> list[Segment]:
        return await self._read(sqlite_segments.segments)

    async def segment(self, name: str) -> Segment | None:
        return await self._read(lambda c: sqlite_segments.segment(c, name))

    async def purge_segments(self) -> int:
        return await self._write(sqlite_segments.purge)

    async def prune_frequency(self, before: float) -> int:
        return await self._write(
            lambda c: c.execute("DELETE FROM frequency WHERE at < ?", (before,)).rowcount
        )

    # -- audit and tokens ---------------------------------------------------------------

    async def append_audit(self, entry: AuditEntry) -> int:
        return await self._write(lambda c: access.append_audit(c, entry))

    async def audit_log(self, limit: int = 50, before: int | None = None) -> list[AuditEntry]:
        return await self._read(lambda c: access.audit_log(c, limit, before))

    async def token_by_hash(self, sha256: str) -> Token | None:
        return await self._read(lambda c: access.token_by_hash(c, sha256))

    async def add_token(self, token: Token) -> None:
        await self._write(lambda c: access.add_token(c, token))

    async def tokens(self) -> list[Token]:
        return await self._read(access.tokens)

    async def revoke_token(self, name: str, now: float) -> bool:
        return await self._write(lambda c: access.revoke_token(c, name, now))


def connect(path: Path, busy_timeout: float = 5.0) -> sqlite3.Connection:
    """Open a connection with the settings every spool connection uses."""
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout * 1000)}")
    conn.execute("PRAGMA synchronous = FULL")  # WAL + FULL: each COMMIT is durable
    return conn


def migrate(conn: sqlite3.Connection) -> None:
    """Apply the forward-only migrations this database has not seen yet."""
    conn.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
    current = schema_version(conn)
    for version, sql in migrations():
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
