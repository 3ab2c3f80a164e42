"""Feedback circuit breaker: hold a sending campaign whose recipients complain or bounce.

Owns the `feedback` kind. It never looks at a message being admitted; it reads what the
provider reported about the recipients already sent (`model.FeedbackStats`: webhook events
and DSNs, docs/feedback.md) and is judged each time new feedback for the campaign is
recorded, and when a canary release's observation ends. Rates count events per recipient
sent and are only trusted past `min_sent` recipients; `max_per_hour` is an absolute count
over the last hour, for the campaign too small or too new for a rate to mean anything.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from gateway.model import FeedbackStats
from gateway.policy.rules.base import Context, Observation, Rule

Event = Literal["bounced", "dropped", "complained", "unsubscribed"]
# The finding kinds a breaker raises, by event: a rate, or a count per hour.
_RATE_KIND = {
    "bounced": "bounce_rate",
    "dropped": "drop_rate",
    "complained": "complaint_rate",
    "unsubscribed": "unsubscribe_rate",
}
SAMPLE_EVENTS = 5  # provider events quoted as evidence


class FeedbackBreaker(Rule):
    """Thresholds on what providers report about a campaign's recipients."""

    kind: Literal["feedback"]
    min_sent: int = Field(
        100, ge=1, description="Recipients sent before a rate is compared with max_rate."
    )
    max_rate: dict[Event, float] = Field(
        default_factory=dict,
        description="Highest share of sent recipients per event, e.g. {complained: 0.003}.",
    )
    max_per_hour: dict[Event, int] = Field(
        default_factory=dict,
        description="Most events of a kind in the last hour, whatever was sent.",
    )

    @model_validator(mode="after")
    def _thresholds(self) -> FeedbackBreaker:
        if not self.max_rate and not self.max_per_hour:
            raise ValueError("give max_rate or max_per_hour (or both)")
        for event, rate in self.max_rate.items():
            if not 0 < rate <= 1:
                raise ValueError(f"max_rate.{event} must be a share above 0 and at most 1")
        for event, count in self.max_per_hour.items():
            if count < 1:
                raise ValueError(f"max_per_hour.{event} must be at least 1")
        return self


def check(rule: FeedbackBreaker, ctx: Context) -> list[Observation]:  # noqa: ARG001 - as every kind
    """Nothing at admission: a message being admitted has no feedback yet."""
    return []


def judge(rule: FeedbackBreaker, feedback: FeedbackStats) -> list[Observation]:
    """Say which of the rule's thresholds the campaign's feedback is past."""
    found = []
    if feedback.sent >= rule.min_sent:
        for event, limit in rule.max_rate.items():
            rate = feedback.rate(event)
            if rate > limit:
                count = getattr(feedback.totals, event)
                message = (
                    f"{count} of {feedback.sent} recipients sent {_said(event)}"
                    f" ({rate:.2%}, above {rule.id}'s {limit:.2%}); held before more go out"
                )
                evidence = {
                    "count": count,
                    "rate": round(rate, 6),
                    "max_rate": limit,
                    "window": "campaign",
                }
                found.append(_observed(_RATE_KIND[event], message, event, feedback, evidence))
    for event, limit in rule.max_per_hour.items():
        count = getattr(feedback.last_hour, event)
        if count > limit:
            message = (
                f"{count} recipients {_said(event)} in the last hour"
                f" (above {rule.id}'s {limit} per hour); held before more go out"
            )
            evidence = {"count": count, "max_per_hour": limit, "window": "1h"}
            found.append(_observed(f"{event}_per_hour", message, event, feedback, evidence))
    return found


def _said(event: str) -> str:
    return {
        "bounced": "bounced",
        "dropped": "were dropped by the provider",
        "complained": "reported it as spam",
        "unsubscribed": "unsubscribed",
    }[event]


def _observed(
    kind: str, message: str, event: str, feedback: FeedbackStats, evidence: dict[str, object]
) -> Observation:
    samples = [dict(s) for s in feedback.samples.get(event, ())[:SAMPLE_EVENTS]]
    return Observation(
        kind=kind,
        message=message,
        evidence={"event": event, "sent": feedback.sent, **evidence, "samples": samples},
    )
