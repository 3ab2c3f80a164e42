"""The feedback circuit breaker at work: judge campaigns whose feedback just changed.

After a batch of provider events (or a DSN) is recorded, each campaign it counted for is
judged by the `feedback` rules in force (`Engine.judge_feedback`), in a spool transaction
of its own: the findings join the campaign's, and a sending campaign (open or released)
whose verdict holds is held, like any rule's hold. A held campaign is left as it
is (its feedback counters are in its JSON); one with a canary release under way is judged
by the canary watcher, which fails the canary on its next step (`gateway.review.canary`).
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Iterable

import structlog

from gateway.errors import SpoolError
from gateway.metrics import Metrics
from gateway.model import Verdict
from gateway.review.canary import Judge
from gateway.spool.base import Spool
from gateway.spool.port import Hold, Tx
from gateway.states import CampaignState

log = structlog.get_logger(__name__)

ACTOR = "feedback"  # who holds, in the timeline
SENDING = (CampaignState.OPEN, CampaignState.RELEASED)


def trip(tx: Tx, campaign_id: str, now: float, judge: Judge) -> tuple[Verdict | None, int | None]:
    """Judge a sending campaign's feedback; hold it if the verdict holds.

    Return the verdict (None for a campaign gone, held or rejected) and the recipients the hold
    quarantined (None when it did not hold).
    """
    campaign = tx.campaign(campaign_id)
    if campaign is None or campaign.state not in SENDING:
        # Held: nothing of it goes out anyway (a canary's watcher judges its own);
        # rejected: nothing ever will.
        return None, None
    verdict = judge(campaign, tx.feedback(campaign, now))
    if verdict.findings:
        tx.merge_findings(campaign, verdict.findings)
    if not verdict.hold:
        return verdict, None
    rules = tuple(sorted({f.rule for f in verdict.findings if f.mode == "enforce"}))
    return verdict, tx.hold(campaign, Hold(now, ACTOR, rules))


class Breaker:
    """Judges the campaigns a feedback batch counted for, one transaction each."""

    def __init__(
        self,
        spool: Spool,
        judge: Callable[[], Judge],
        metrics: Metrics,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._spool = spool
        self._judge = judge
        self._metrics = metrics
        self._clock = clock

    async def judge(self, campaign_ids: Iterable[str]) -> None:
        """Judge each campaign; a spool failure is logged (the next batch judges again)."""
        judge = self._judge()  # the policies in force now
        for campaign_id in dict.fromkeys(campaign_ids):
            try:
                verdict, held = await self._spool.transact(
                    functools.partial(trip, campaign_id=campaign_id, now=self._clock(), judge=judge)
                )
            except SpoolError as exc:
                log.warning("feedback_judge_failed", campaign=campaign_id, error=str(exc))
                continue
            if verdict is None:
                continue
            for finding in verdict.findings:
                self._metrics.policy_findings.labels(rule=finding.rule, mode=finding.mode).inc()
                log.info(
                    "policy_finding",
                    campaign=campaign_id,
                    rule=finding.rule,
                    kind=finding.kind,
                    mode=finding.mode,
                    finding=finding.message,
                )
            if held is not None:
                self._held(campaign_id, verdict, held)

    def _held(self, campaign_id: str, verdict: Verdict, recipients: int) -> None:
        rules = sorted({f.rule for f in verdict.findings if f.mode == "enforce"})
        for rule in rules:
            self._metrics.campaign_holds.labels(rule=rule).inc()
        log.warning(
            "campaign_held", campaign=campaign_id, rules=rules, actor=ACTOR, recipients=recipients
        )
