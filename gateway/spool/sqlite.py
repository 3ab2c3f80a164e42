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
import json
import os
import queue
import sqlite3
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict
from pathlib import Path
from typing import Any, TypeVar

import structlog

from gateway.errors import CampaignRejected, SpoolError, SpoolLocked
from gateway.model import (
    CLAIMABLE,
    Admission,
    Campaign,
    CampaignState,
    Counters,
    Decide,
    Declaration,
    Delivery,
    Finding,
    RecipientRecord,
    RecipientState,
    Settlement,
    Submission,
    new_id,
)
from gateway.spool.base import migrations

T = TypeVar("T")
Work = Callable[[sqlite3.Connection], Any]
log = structlog.get_logger(__name__)

_CAMPAIGN_COLUMNS = (
    "id, key, client, implicit, state, sender, subject, declared_size, declared_category,"
    " declared_locale, received, queued, held, relayed, deferred, failed, discarded,"
    " suppressed, escaped, findings, created_at, updated_at"
)
_RECIPIENT_COLUMNS = (
    "id, message_id, campaign_id, address, state, attempts, next_attempt_at, last_reply, updated_at"
)
_CLAIMABLE = tuple(str(state) for state in CLAIMABLE)


class _Writer:
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
        self._loop = asyncio.get_running_loop()
        self._thread = threading.Thread(target=self._run, name="spool-writer", daemon=True)
        self._thread.start()

    async def submit(self, work: Work) -> Any:
        if self._loop is None:
            raise SpoolError("the spool is not open")
        future: asyncio.Future[Any] = self._loop.create_future()
        self._jobs.put((work, future))
        return await future

    async def stop(self) -> None:
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
                except Exception as exc:  # noqa: BLE001 - handed to the caller's future
                    conn.execute("ROLLBACK TO unit")
                    conn.execute("RELEASE unit")
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


class SqliteSpool:
    """The Spool protocol on one SQLite database file."""

    def __init__(self, path: Path, *, commit_delay: float = 0.0, max_batch: int = 256) -> None:
        self.path = path
        self._writer = _Writer(self._connect, commit_delay, max_batch)
        self._reader: ThreadPoolExecutor | None = None
        self._read_conn: sqlite3.Connection | None = None
        self._lock_fd: int | None = None

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        conn.execute("PRAGMA busy_timeout = 5000")
        conn.execute("PRAGMA synchronous = FULL")  # WAL + FULL: each COMMIT is durable
        return conn

    async def open(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock()
        conn = self._connect()
        try:
            conn.execute("PRAGMA journal_mode = WAL")
            _migrate(conn)
            recovered = _recover_leases(conn)
        finally:
            conn.close()
        if recovered:
            log.info("spool_leases_recovered", recipients=recovered)
        self._writer.start()
        self._reader = ThreadPoolExecutor(max_workers=1, thread_name_prefix="spool-reader")
        self._read_conn = self._connect()
        log.info("spool_opened", path=str(self.path))

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

    async def accept(
        self, submission: Submission, decide: Decide, implicit_window: float
    ) -> Admission:
        result: Admission = await self._writer.submit(
            lambda conn: _accept(conn, submission, decide, implicit_window)
        )
        return result

    async def claim(self, owner: str, now: float, limit: int, lease: float) -> list[Delivery]:
        result: list[Delivery] = await self._writer.submit(
            lambda conn: _claim(conn, owner, now, limit, lease)
        )
        return result

    async def settle(self, owner: str, settlements: Sequence[Settlement], now: float) -> int:
        result: int = await self._writer.submit(lambda conn: _settle(conn, owner, settlements, now))
        return result

    async def release_leases(self, owner: str) -> int:
        result: int = await self._writer.submit(lambda conn: _release(conn, owner))
        return result

    async def next_due(self) -> float | None:
        def work(conn: sqlite3.Connection) -> float | None:
            row = conn.execute(
                "SELECT MIN(next_attempt_at) FROM recipients WHERE state IN (?, ?)", _CLAIMABLE
            ).fetchone()
            return None if row[0] is None else float(row[0])

        return await self._read(work)

    async def campaign(self, campaign_id: str) -> Campaign | None:
        def work(conn: sqlite3.Connection) -> Campaign | None:
            row = conn.execute(
                f"SELECT {_CAMPAIGN_COLUMNS} FROM campaigns WHERE id = ?", (campaign_id,)
            ).fetchone()
            return None if row is None else _campaign_from_row(row)

        return await self._read(work)

    async def find_campaign(self, client: str, key: str) -> Campaign | None:
        def work(conn: sqlite3.Connection) -> Campaign | None:
            row = conn.execute(
                f"SELECT {_CAMPAIGN_COLUMNS} FROM campaigns WHERE client = ? AND key = ?"
                " ORDER BY created_at DESC LIMIT 1",
                (client, key),
            ).fetchone()
            return None if row is None else _campaign_from_row(row)

        return await self._read(work)

    async def recipients(
        self,
        *,
        campaign_id: str | None = None,
        message_id: str | None = None,
        state: RecipientState | None = None,
        limit: int = 1000,
    ) -> list[RecipientRecord]:
        clauses, params = [], []
        for column, value in (
            ("campaign_id", campaign_id),
            ("message_id", message_id),
            ("state", state),
        ):
            if value is not None:
                clauses.append(f"{column} = ?")
                params.append(str(value))
        where = f"WHERE {' AND '.join(clauses)}" if clauses else ""

        def work(conn: sqlite3.Connection) -> list[RecipientRecord]:
            rows = conn.execute(
                f"SELECT {_RECIPIENT_COLUMNS} FROM recipients {where} ORDER BY id LIMIT ?",
                (*params, limit),
            ).fetchall()
            return [_recipient_from_row(row) for row in rows]

        return await self._read(work)

    async def count_by_state(self) -> dict[RecipientState, int]:
        def work(conn: sqlite3.Connection) -> dict[RecipientState, int]:
            rows = conn.execute("SELECT state, COUNT(*) FROM recipients GROUP BY state").fetchall()
            counts = dict.fromkeys(RecipientState, 0)
            counts.update({RecipientState(state): count for state, count in rows})
            return counts

        return await self._read(work)


def _migrate(conn: sqlite3.Connection) -> None:
    conn.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
    row = conn.execute("SELECT MAX(version) FROM schema_version").fetchone()
    current = row[0] or 0
    for version, sql in migrations():
        if version > current:
            # executescript commits first; wrap the migration in its own transaction.
            conn.executescript(
                f"BEGIN;\n{sql}\nINSERT INTO schema_version VALUES ({version});\nCOMMIT;"
            )
            log.info("spool_migrated", version=version)


def _recover_leases(conn: sqlite3.Connection) -> int:
    """Give back leases of a previous process: the lock file proves none is alive."""
    # Counters already count a leased recipient as queued, so only the rows change.
    conn.execute("BEGIN IMMEDIATE")
    cursor = conn.execute(
        "UPDATE recipients SET state = 'queued', lease_owner = NULL, lease_until = NULL"
        " WHERE state = 'sending'"
    )
    conn.execute("COMMIT")
    return cursor.rowcount


def _accept(conn: sqlite3.Connection, sub: Submission, decide: Decide, window: float) -> Admission:
    ref = sub.campaign
    now = sub.received_at
    if ref.implicit:
        row = conn.execute(
            f"SELECT {_CAMPAIGN_COLUMNS} FROM campaigns WHERE client = ? AND key = ?"
            " AND created_at >= ? ORDER BY created_at DESC LIMIT 1",
            (ref.client, ref.key, now - window),
        ).fetchone()
    else:
        row = conn.execute(
            f"SELECT {_CAMPAIGN_COLUMNS} FROM campaigns WHERE client = ? AND key = ?"
            " ORDER BY created_at DESC LIMIT 1",
            (ref.client, ref.key),
        ).fetchone()
    count = len(sub.rcpt_tos)
    if row is None:
        campaign_id = new_id(now)
        declared = ref.declaration
        conn.execute(
            "INSERT INTO campaigns (id, client, key, implicit, state, sender, subject, declared_size,"
            " declared_category, declared_locale, received, created_at, updated_at)"
            " VALUES (?, ?, ?, ?, 'open', ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                campaign_id,
                ref.client,
                ref.key,
                int(ref.implicit),
                ref.sender,
                ref.subject,
                declared.size,
                declared.category,
                declared.locale,
                count,
                now,
                now,
            ),
        )
    else:
        campaign_id = row[0]
        if row[4] == CampaignState.REJECTED:
            raise CampaignRejected(campaign_id, ref.key)
        # A declaration fills what earlier mail left open; conflicts are policy's business.
        conn.execute(
            "UPDATE campaigns SET received = received + ?, updated_at = ?,"
            " declared_size = COALESCE(declared_size, ?),"
            " declared_category = COALESCE(declared_category, ?),"
            " declared_locale = COALESCE(declared_locale, ?) WHERE id = ?",
            (
                count,
                now,
                ref.declaration.size,
                ref.declaration.category,
                ref.declaration.locale,
                campaign_id,
            ),
        )
    campaign = _campaign_from_row(
        conn.execute(
            f"SELECT {_CAMPAIGN_COLUMNS} FROM campaigns WHERE id = ?", (campaign_id,)
        ).fetchone()
    )
    verdict = decide(campaign, sub)
    if verdict.findings:
        _add_findings(conn, campaign, verdict.findings)
    held = verdict.hold or campaign.state == CampaignState.HELD
    if verdict.hold and campaign.state != CampaignState.HELD:
        _hold(conn, campaign_id, now)
    state = RecipientState.HELD if held else RecipientState.QUEUED
    conn.execute(
        "INSERT INTO messages (id, campaign_id, client, mail_from, content, size, ingress, received_at)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        (
            sub.message_id,
            campaign_id,
            sub.client,
            sub.mail_from,
            sub.content,
            len(sub.content),
            sub.ingress,
            now,
        ),
    )
    conn.executemany(
        "INSERT INTO recipients (message_id, campaign_id, address, state, next_attempt_at, updated_at)"
        " VALUES (?, ?, ?, ?, ?, ?)",
        [(sub.message_id, campaign_id, address, str(state), now, now) for address in sub.rcpt_tos],
    )
    column = "held" if held else "queued"
    conn.execute(f"UPDATE campaigns SET {column} = {column} + ? WHERE id = ?", (count, campaign_id))
    return Admission(message_id=sub.message_id, campaign_id=campaign_id, held=held)


def _hold(conn: sqlite3.Connection, campaign_id: str, now: float) -> None:
    """Quarantine a campaign: nothing of it that is still waiting may be relayed."""
    moved = {}
    for source in CLAIMABLE:
        moved[source] = conn.execute(
            "UPDATE recipients SET state = 'held', updated_at = ? WHERE campaign_id = ? AND state = ?",
            (now, campaign_id, str(source)),
        ).rowcount
    queued, deferred = moved[RecipientState.QUEUED], moved[RecipientState.DEFERRED]
    conn.execute(
        "UPDATE campaigns SET state = 'held', held = held + ?, queued = queued - ?,"
        " deferred = deferred - ?, escaped = relayed, updated_at = ? WHERE id = ?",
        (queued + deferred, queued, deferred, now, campaign_id),
    )


def _add_findings(
    conn: sqlite3.Connection, campaign: Campaign, findings: Sequence[Finding]
) -> None:
    """Merge findings by (rule, kind): a repeat raises its count instead of a new entry."""
    merged = {(f.rule, f.kind): {**asdict(f), "count": 1} for f in campaign.findings}
    for finding in findings:
        entry = merged.get((finding.rule, finding.kind))
        if entry is None:
            merged[(finding.rule, finding.kind)] = {**asdict(finding), "count": 1}
        else:
            entry.update({**asdict(finding), "count": entry["count"] + 1})
    conn.execute(
        "UPDATE campaigns SET findings = ? WHERE id = ?",
        (json.dumps(list(merged.values())), campaign.id),
    )


def _claim(
    conn: sqlite3.Connection, owner: str, now: float, limit: int, lease: float
) -> list[Delivery]:
    message_ids = [
        row[0]
        for row in conn.execute(
            "SELECT message_id FROM recipients WHERE state IN (?, ?) AND next_attempt_at <= ?"
            " GROUP BY message_id ORDER BY MIN(next_attempt_at) LIMIT ?",
            (*_CLAIMABLE, now, limit),
        )
    ]
    if not message_ids:
        return []
    marks = ",".join("?" * len(message_ids))
    by_message: dict[str, list[tuple[int, str, int]]] = {}
    moved_from_deferred: Counter[str] = Counter()
    for source in CLAIMABLE:
        for rid, message_id, campaign_id, address, attempts in conn.execute(
            "UPDATE recipients SET state = 'sending', lease_owner = ?, lease_until = ?,"
            f" updated_at = ? WHERE message_id IN ({marks}) AND state = ? AND next_attempt_at <= ?"
            " RETURNING id, message_id, campaign_id, address, attempts",
            (owner, now + lease, now, *message_ids, str(source), now),
        ).fetchall():
            by_message.setdefault(message_id, []).append((rid, address, attempts))
            if source == RecipientState.DEFERRED:
                moved_from_deferred[campaign_id] += 1
    # Campaign counters treat a leased recipient as queued: it is not delivered yet.
    for campaign_id, moved in moved_from_deferred.items():
        conn.execute(
            "UPDATE campaigns SET deferred = deferred - ?, queued = queued + ? WHERE id = ?",
            (moved, moved, campaign_id),
        )
    deliveries = []
    for mid, campaign_id, mail_from, content, received_at in conn.execute(
        f"SELECT id, campaign_id, mail_from, content, received_at FROM messages WHERE id IN ({marks})",
        message_ids,
    ):
        rows = sorted(by_message.get(mid, []))
        if not rows:
            continue
        deliveries.append(
            Delivery(
                message_id=mid,
                campaign_id=campaign_id,
                mail_from=mail_from,
                content=bytes(content),
                recipients=tuple((rid, address) for rid, address, _ in rows),
                attempts=max(attempts for _, _, attempts in rows),
                first_attempt_at=received_at,
            )
        )
    return deliveries


_SETTLED_COUNTER = {
    RecipientState.RELAYED: "relayed",
    RecipientState.DEFERRED: "deferred",
    RecipientState.FAILED: "failed",
    RecipientState.QUEUED: "queued",
}


def _settle(
    conn: sqlite3.Connection, owner: str, settlements: Sequence[Settlement], now: float
) -> int:
    changes: Counter[tuple[str, str]] = Counter()
    changed = 0
    for item in settlements:
        row = conn.execute(
            "UPDATE recipients SET state = ?, attempts = attempts + 1, last_reply = ?,"
            " next_attempt_at = ?, lease_owner = NULL, lease_until = NULL, updated_at = ?"
            " WHERE id = ? AND state = 'sending' AND lease_owner = ? RETURNING campaign_id",
            (
                str(item.state),
                item.reply,
                item.next_attempt_at or now,
                now,
                item.recipient_id,
                owner,
            ),
        ).fetchone()
        if row is None:
            continue  # the lease was lost (expired and taken over): the other owner decides
        changed += 1
        changes[(row[0], _SETTLED_COUNTER[item.state])] += 1
        changes[(row[0], "queued")] -= 1
    for (campaign_id, column), delta in changes.items():
        if delta:
            conn.execute(
                f"UPDATE campaigns SET {column} = {column} + ?, updated_at = ? WHERE id = ?",
                (delta, now, campaign_id),
            )
    return changed


def _release(conn: sqlite3.Connection, owner: str) -> int:
    return conn.execute(
        "UPDATE recipients SET state = 'queued', lease_owner = NULL, lease_until = NULL"
        " WHERE state = 'sending' AND lease_owner = ?",
        (owner,),
    ).rowcount


def _campaign_from_row(row: Sequence[Any]) -> Campaign:
    (
        cid,
        key,
        client,
        implicit,
        state,
        sender,
        subject,
        size,
        category,
        locale,
        *counts,
        findings,
        created_at,
        updated_at,
    ) = row
    return Campaign(
        id=cid,
        key=key,
        client=client,
        implicit=bool(implicit),
        state=CampaignState(state),
        sender=sender,
        subject=subject,
        declared=Declaration(size=size, category=category, locale=locale),
        counters=Counters(*counts),
        created_at=created_at,
        updated_at=updated_at,
        findings=tuple(
            Finding(**{k: v for k, v in f.items() if k != "count"}) for f in json.loads(findings)
        ),
    )


def _recipient_from_row(row: Sequence[Any]) -> RecipientRecord:
    rid, message_id, campaign_id, address, state, attempts, next_at, reply, updated_at = row
    return RecipientRecord(
        id=rid,
        message_id=message_id,
        campaign_id=campaign_id,
        address=address,
        state=RecipientState(state),
        attempts=attempts,
        next_attempt_at=next_at,
        last_reply=reply,
        updated_at=updated_at,
    )
