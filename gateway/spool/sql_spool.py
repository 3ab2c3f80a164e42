"""The Spool protocol on a SQL database: the part both backends share.

A backend (`SqliteSpool`, `PostgresSpool`) supplies how to write (`_write`: a unit of its
writers' group commit), how to read (`_read`: a consistent snapshot beside the writers),
its lifecycle and a few engine-specific statements; every look-up and change below is
one of the shared statement modules run through those two doors.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from typing import TypeVar, cast

from gateway.model import (
    AuditEntry,
    Campaign,
    CampaignEvent,
    Delivery,
    Feedback,
    FeedbackEvent,
    FeedbackOutcome,
    FeedbackSample,
    Finding,
    Forward,
    ForwardState,
    Manifest,
    RecipientRecord,
    ReleaseScope,
    Segment,
    Settlement,
    SmtpUser,
    StoredMessage,
    Throttler,
    Token,
)
from gateway.spool import sql_access as access
from gateway.spool import sql_canary, sql_segments, sql_throttle
from gateway.spool import sql_feedback as fb
from gateway.spool import sql_queue as q
from gateway.spool import sql_review as r
from gateway.spool.base import HELD_NAMED_LIMIT, SpoolGauges
from gateway.spool.dialect import Conn
from gateway.spool.port import Tx
from gateway.spool.sql_tx import SqlTx
from gateway.states import CampaignState, RecipientState

T = TypeVar("T")


class _Rehearsed(Exception):
    """Raised inside a rehearsal's unit so that the writer rolls it back."""

    def __init__(self, result: object) -> None:
        super().__init__("rehearsed")
        self.result = result


class SqlSpool:
    """Every Spool method as shared statements; subclasses supply the doors and lifecycle."""

    async def _write(self, work: Callable[[Conn], T]) -> T:
        raise NotImplementedError

    async def _read(self, work: Callable[[Conn], T]) -> T:
        raise NotImplementedError

    async def _snapshot(self, work: Callable[[Conn], T]) -> T:
        """Run several reads on one snapshot (PostgreSQL's reads are snapshots already)."""
        return await self._read(work)

    async def ping(self) -> None:
        await self._read(lambda c: c.execute("SELECT 1").fetchone())

    # -- the queue ----------------------------------------------------------------------

    async def transact(self, work: Callable[[Tx], T]) -> T:
        return await self._write(lambda c: work(SqlTx(c)))

    async def read(self, work: Callable[[Tx], T]) -> T:
        return await self._read(lambda c: work(SqlTx(c)))

    async def rehearse(self, work: Callable[[Tx], T]) -> T:
        def run_and_undo(conn: Conn) -> T:
            raise _Rehearsed(work(SqlTx(conn)))  # the writer rolls a raising unit back

        try:
            await self._write(run_and_undo)
        except _Rehearsed as done:
            return cast("T", done.result)
        raise AssertionError("a rehearsal always rolls back")  # pragma: no cover

    async def claim(
        self,
        owner: str,
        now: float,
        limit: int,
        lease: float,
        *,
        throttler: Throttler | None = None,
    ) -> list[Delivery]:
        if throttler is None:
            return await self._write(lambda c: q.claim(c, owner, now, limit, lease))
        deliveries, waits = await self._write(
            lambda c: q.claim_throttled(c, owner, now, limit, lease, throttler)
        )
        if waits:  # told only once committed: a claim that failed left nothing waiting
            throttler.waited(waits)
        return deliveries

    async def throttle_tats(self, buckets: Sequence[str]) -> dict[str, float]:
        return await self._read(lambda c: sql_throttle.tats(c, buckets))

    async def throttle_waiting(self, campaign_id: str) -> dict[str, int]:
        return await self._read(lambda c: sql_throttle.waiting(c, campaign_id))

    async def settle(self, owner: str, settlements: Sequence[Settlement], now: float) -> int:
        return await self._write(lambda c: q.settle(c, owner, settlements, now))

    async def release_leases(self, owner: str, now: float) -> int:
        return await self._write(lambda c: q.give_back(c, now=now, owner=owner))

    async def renew_leases(self, owner: str, recipient_ids: Sequence[int], until: float) -> int:
        return await self._write(lambda c: q.renew(c, owner, recipient_ids, until))

    async def next_due(self) -> float | None:
        return await self._read(q.next_due)

    async def count_by_state(self) -> dict[RecipientState, int]:
        return await self._read(q.count_by_state)

    async def gauges(self, limit: int = HELD_NAMED_LIMIT) -> SpoolGauges:
        return await self._snapshot(lambda c: r.gauges(c, limit))

    # -- campaigns and review -----------------------------------------------------------

    async def campaign(self, campaign_id: str) -> Campaign | None:
        return await self._snapshot(
            lambda c: _one_with_feedback(c, q.campaign_by_id(c, campaign_id))
        )

    async def find_campaign(self, client: str, key: str) -> Campaign | None:
        return await self._snapshot(
            lambda c: _one_with_feedback(c, r.find_campaign(c, client, key))
        )

    async def campaigns(
        self,
        *,
        state: CampaignState | None = None,
        limit: int = 50,
        before: str | None = None,
        key: str | None = None,
    ) -> list[Campaign]:
        return await self._snapshot(
            lambda c: _with_feedback(c, r.list_campaigns(c, state, limit, before, key))
        )

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
        return await self._read(
            lambda c: q.recipients(c, campaign_id, message_id, state, limit, after)
        )

    async def retained(
        self, since: float, after: str = "", limit: int = 500
    ) -> list[tuple[StoredMessage, tuple[str, ...]]]:
        return await self._read(lambda c: r.retained(c, since, after, limit))

    async def segment_page(self, version: int, after: int | None, limit: int = 10_000) -> list[int]:
        return await self._read(lambda c: sql_segments.page(c, version, after, limit))

    async def message(self, message_id: str) -> StoredMessage | None:
        return await self._read(lambda c: r.message(c, message_id))

    async def active_canaries(self) -> list[str]:
        return await self._read(sql_canary.active)

    async def _decide(
        self,
        work: Callable[[Conn], T],
        audit: AuditEntry | Callable[[T], AuditEntry | None] | None,
    ) -> T:
        """Make an operator's change and, in the same transaction, its audit entry.

        The entry may be a function of the change's result (an approval's approvers).
        """

        def change_and_audit(conn: Conn) -> T:
            result = work(conn)
            entry = audit(result) if callable(audit) else audit
            if entry is not None:
                access.append_audit(conn, entry)
            return result

        return await self._write(change_and_audit)

    async def hold(
        self, campaign_id: str, finding: Finding, now: float, *, audit: AuditEntry | None = None
    ) -> Campaign | None:
        return await self._decide(lambda c: r.manual_hold(c, campaign_id, finding, now), audit)

    async def release(
        self,
        campaign_id: str,
        actor: str,
        now: float,
        scope: ReleaseScope | None = None,
        *,
        audit: AuditEntry | None = None,
    ) -> Campaign | None:
        return await self._decide(lambda c: r.release(c, campaign_id, actor, now, scope), audit)

    async def reject(
        self, campaign_id: str, actor: str, now: float, *, audit: AuditEntry | None = None
    ) -> Campaign | None:
        return await self._decide(lambda c: r.reject(c, campaign_id, actor, now), audit)

    async def approve_release(
        self,
        campaign_id: str,
        actor: str,
        now: float,
        *,
        audit: Callable[[list[str]], AuditEntry | None] | None = None,
        details: Mapping[str, object] | None = None,
    ) -> list[str]:
        return await self._decide(
            lambda c: r.approve_release(c, campaign_id, actor, now, details or {}), audit
        )

    async def put_manifest(self, manifest: Manifest, *, audit: AuditEntry | None = None) -> None:
        await self._decide(lambda c: r.put_manifest(c, manifest), audit)

    async def set_relay_paused(
        self, paused: bool, actor: str, reason: str, now: float, *, audit: AuditEntry | None = None
    ) -> None:
        await self._decide(lambda c: r.set_relay_paused(c, paused, actor, reason, now), audit)

    async def relay_paused(self) -> bool:
        return await self._read(q.relay_paused)

    # -- segments -----------------------------------------------------------------------

    async def segment_begin(self, name: str, now: float) -> int:
        return await self._write(lambda c: sql_segments.begin(c, name, now))

    async def segment_add(self, version: int, hashes: Sequence[int]) -> int:
        return await self._write(lambda c: sql_segments.add(c, version, hashes))

    async def segment_publish(self, segment: Segment) -> int | None:
        return await self._write(lambda c: sql_segments.publish(c, segment))

    async def segment_abandon(self, version: int) -> None:
        await self._write(lambda c: sql_segments.abandon(c, version))

    async def segments(self) -> list[Segment]:
        return await self._read(sql_segments.segments)

    async def segment(self, name: str) -> Segment | None:
        return await self._read(lambda c: sql_segments.segment(c, name))

    async def purge_segments(self) -> int:
        return await self._write(sql_segments.purge)

    async def retire_bodies(self, before: float, now: float, limit: int = 500) -> int:
        return await self._write(lambda c: q.retire_bodies(c, before, now, limit))

    async def prune_frequency(self, before: float) -> int:
        return await self._write(
            lambda c: c.execute("DELETE FROM frequency WHERE at < ?", (before,)).rowcount
        )

    # -- provider feedback and the forward outbox -----------------------------------------

    async def record_feedback(
        self, source: str, events: Sequence[FeedbackEvent], now: float, *, body: bytes | None
    ) -> FeedbackOutcome:
        return await self._write(lambda c: fb.record(c, source, events, now, body=body))

    async def feedback(
        self, campaign_id: str, since: float | None = None, until: float | None = None
    ) -> Feedback:
        if since is None and until is None:
            return await self._read(
                lambda c: fb.totals(c, [campaign_id]).get(campaign_id, Feedback())
            )
        low, high = since or 0.0, until if until is not None else float(2**62)
        return await self._read(lambda c: fb.window(c, campaign_id, low, high))

    async def feedback_samples(self, campaign_id: str) -> list[FeedbackSample]:
        return await self._read(lambda c: fb.samples(c, campaign_id))

    async def unattributed_feedback(self) -> dict[str, int]:
        return await self._read(fb.unattributed)

    async def claim_forwards(
        self, owner: str, now: float, limit: int, lease: float
    ) -> list[Forward]:
        return await self._write(lambda c: fb.claim(c, owner, now, limit, lease))

    async def settle_forward(
        self,
        owner: str,
        forward_id: int,
        state: ForwardState,
        now: float,
        *,
        next_attempt_at: float = 0.0,
        error: str = "",
    ) -> bool:
        return await self._write(
            lambda c: fb.settle(
                c, owner, forward_id, state, now, next_attempt_at=next_attempt_at, error=error
            )
        )

    async def forwards(
        self, *, state: ForwardState | None = None, limit: int = 50, before: int | None = None
    ) -> list[Forward]:
        return await self._read(lambda c: fb.forwards(c, state, limit, before))

    async def forward(self, forward_id: int) -> Forward | None:
        return await self._read(lambda c: fb.forward(c, forward_id))

    async def retry_forward(
        self, forward_id: int, now: float, *, audit: AuditEntry | None = None
    ) -> Forward | None:
        return await self._decide(lambda c: fb.retry(c, forward_id, now), audit)

    async def next_forward_due(self) -> float | None:
        return await self._read(fb.next_due)

    async def prune_feedback(self, before: float) -> int:
        return await self._write(lambda c: fb.prune(c, before))

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

    async def add_user(self, user: SmtpUser) -> None:
        await self._write(lambda c: access.add_user(c, user))

    async def smtp_user(self, name: str) -> SmtpUser | None:
        return await self._read(lambda c: access.smtp_user(c, name))

    async def smtp_users(self) -> list[SmtpUser]:
        return await self._read(access.smtp_users)

    async def remove_user(self, name: str) -> bool:
        return await self._write(lambda c: access.remove_user(c, name))


def _with_feedback(conn: Conn, campaigns: list[Campaign]) -> list[Campaign]:
    """Return the campaigns with their feedback totals, read on the same snapshot."""
    found = fb.totals(conn, [c.id for c in campaigns])
    return [replace(c, feedback=found[c.id]) if c.id in found else c for c in campaigns]


def _one_with_feedback(conn: Conn, campaign: Campaign | None) -> Campaign | None:
    return None if campaign is None else _with_feedback(conn, [campaign])[0]
