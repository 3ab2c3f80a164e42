"""Relay throttle rule: how fast the relay may hand a campaign's recipients to the upstream.

Owns the `throttle` kind. It never holds or suppresses at admission (its check finds
nothing); it names, for each campaign its `when` selects, the GCRA bucket the relay's
claims draw on (`model.Throttle`) and that bucket's rate. The relay asks the engine in
force at each claim (`Engine.throttles`), so a policy reload applies to mail already
queued; the spool keeps the buckets, so replicas share one budget (docs/architecture.md,
"Relay throttles").

`per_second` counts recipients handed to the upstream: one message to one recipient, the
marketing case, is one; a message to five recipients is five, as providers count them.
`scope` says whose mail shares a bucket: each campaign its own, each client (SMTP user or
API token) one for all its campaigns, or one for the whole gateway.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from gateway.model import Campaign, Throttle
from gateway.policy.rules.base import Context, Observation, Rule

Scope = Literal["campaign", "client", "global"]


class ThrottleRule(Rule):
    """Limit the relay rate of the campaigns the rule selects."""

    kind: Literal["throttle"]
    per_second: float = Field(
        gt=0, le=100_000, description="Recipients per second the relay may hand over."
    )
    burst: int = Field(
        1, ge=1, le=100_000, description="Recipients that may go at once after a quiet spell."
    )
    scope: Scope = Field(
        "campaign", description="Who shares the budget: campaign, client or global."
    )

    @model_validator(mode="after")
    def _never_acts(self) -> ThrottleRule:
        if self.action is not None:
            raise ValueError("a throttle never holds or suppresses: remove `action`")
        return self

    def bucket(self, campaign: Campaign) -> str:
        """Name the bucket `campaign`'s recipients draw on under this rule."""
        if self.scope == "campaign":
            return f"{self.id}:campaign:{campaign.id}"
        if self.scope == "client":
            return f"{self.id}:client:{campaign.client}"
        return f"{self.id}:global"


def check(rule: ThrottleRule, ctx: Context) -> list[Observation]:  # noqa: ARG001 - finds nothing
    """Find nothing: a throttle slows the relay, it never holds at admission."""
    return []


def throttle(rule: ThrottleRule, campaign: Campaign) -> Throttle:
    """Return the throttle this rule puts on `campaign` (which its `when` selects)."""
    return Throttle(
        rule=rule.id,
        bucket=rule.bucket(campaign),
        per_second=rule.per_second,
        burst=rule.burst,
        scope=rule.scope,
    )
