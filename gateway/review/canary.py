"""Canary releases: send a slice of a held campaign, watch its feedback, then the rest.

A canary starts as a partial release of the oldest `recipients` held (the campaign stays
held, so nothing else of it goes out, mail arriving meanwhile included). A watcher then
advances it, one spool transaction a step (written against the transaction port):

    sending ──slice settled──► observing ──`observe` quiet──► completed (rest released)
        └──────────── the feedback breaker holds ────────────► failed (rest stays held)
    an operator releasing or rejecting the campaign meanwhile ends it (ended)

The breaker is judged on every step, so bad feedback fails the canary as soon as it is
recorded, not only when the observation ends. Pure decisions; the storage is the port's.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace

from gateway.errors import Conflict
from gateway.model import AuditEntry, Campaign, Canary, FeedbackStats, ReleaseScope, Verdict
from gateway.spool.port import Tx
from gateway.states import CANARY_ACTIVE, CampaignState, CanaryState

ACTOR = "canary"  # who releases the rest, in the timeline and the audit log

Judge = Callable[[Campaign, FeedbackStats], Verdict]


@dataclass(frozen=True, slots=True)
class CanaryPlan:
    """What an operator asked for: a share or a count of the held recipients, and a wait."""

    observe: float
    percent: float | None = None
    count: int | None = None

    def size(self, held: int) -> int:
        """Return the slice of `held` recipients to send first (at least one)."""
        if self.count is not None:
            return self.count
        return max(1, int(held * (self.percent or 0) / 100))


def start(
    tx: Tx, campaign_id: str, plan: CanaryPlan, *, actor: str, reason: str, now: float
) -> Campaign | None:
    """Release a slice of a held campaign and start watching it; None if there is no campaign.

    Raises `Conflict` when the campaign is not held, already has a canary under way, or
    the slice would be every held recipient (that is a plain release).
    """
    campaign = tx.campaign(campaign_id)
    if campaign is None:
        return None
    if campaign.state is not CampaignState.HELD:
        raise Conflict(f"campaign {campaign_id} is {campaign.state}; only a held one can canary")
    current = tx.lock_canary(campaign_id)
    if current is not None and current.state in CANARY_ACTIVE:
        raise Conflict(f"campaign {campaign_id} already has a canary {current.state}")
    held = campaign.counters.held
    recipients = plan.size(held)
    if recipients >= held:
        raise Conflict(
            f"a canary of {recipients} would send all {held} held recipients; release instead"
        )
    tx.release(campaign_id, actor, now, ReleaseScope(max_recipients=recipients))
    canary = Canary(campaign_id, recipients, plan.observe, actor, reason, now)
    tx.put_canary(canary)
    tx.event(
        campaign_id,
        now,
        "canary_started",
        actor,
        recipients=recipients,
        observe=plan.observe,
        still_held=held - recipients,
        reason=reason,
    )
    return tx.campaign(campaign_id)


def advance(
    tx: Tx, campaign_id: str, now: float, judge: Judge, audit: Callable[[Canary], AuditEntry]
) -> Canary | None:
    """Take the canary's next step, if one is due; return the canary after it (None: no step).

    `audit` describes the automatic release of the rest, stored with it.
    """
    canary = tx.lock_canary(campaign_id)
    if canary is None or canary.state not in CANARY_ACTIVE:
        return None
    campaign = tx.campaign(campaign_id)
    verdict = None
    if campaign is not None and campaign.state is CampaignState.HELD:
        verdict = judge(campaign, tx.feedback(campaign, now))
    step = next_step(canary, campaign, verdict, now)
    if step is None:
        return None
    changed, event, details = step
    if changed.state is CanaryState.FAILED and verdict is not None and campaign is not None:
        tx.merge_findings(campaign, verdict.findings)
    if changed.state is CanaryState.COMPLETED:
        tx.release(campaign_id, ACTOR, now)
        tx.audit(audit(changed))
    tx.update_canary(changed)
    tx.event(campaign_id, now, event, ACTOR, **details)
    return changed


def next_step(
    canary: Canary, campaign: Campaign | None, verdict: Verdict | None, now: float
) -> tuple[Canary, str, dict[str, object]] | None:
    """Decide an active canary's next state, its timeline event and details (None: wait)."""
    if campaign is None or campaign.state is not CampaignState.HELD or verdict is None:
        # An operator released or rejected it meanwhile: their decision stands.
        state = str(campaign.state) if campaign else "gone"
        ended = replace(canary, state=CanaryState.ENDED, decided_at=now)
        return ended, "canary_ended", {"campaign_state": state}
    if verdict.hold:
        failed = replace(canary, state=CanaryState.FAILED, decided_at=now)
        return failed, "canary_failed", {"findings": sorted({f.kind for f in verdict.findings})}
    if canary.sent_at is None:
        if campaign.counters.queued + campaign.counters.deferred:
            return None  # the slice is still going out (leased recipients count as queued)
        sent = replace(canary, state=CanaryState.OBSERVING, sent_at=now)
        return sent, "canary_sent", {"decide_at": sent.decide_at}
    if canary.decide_at is not None and now < canary.decide_at:
        return None
    done = replace(canary, state=CanaryState.COMPLETED, decided_at=now)
    return done, "canary_completed", {"recipients": campaign.counters.held}
