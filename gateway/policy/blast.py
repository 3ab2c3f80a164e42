"""Blast-radius checks: how far a campaign may grow past what its sender declared.

Each check is a small pure function of (rule, campaign, submission, facts) returning
observations with evidence. The campaign's counters already include the message being
decided, so "received" is the size the campaign would have if this message went out.
"""

from __future__ import annotations

import math

from gateway.policy.context import Check, Context, Observation
from gateway.policy.rules import (
    AbsoluteCeiling,
    DeclaredSize,
    DuplicateRecipients,
    Rule,
    UndeclaredLimit,
)


def declared_size(rule: DeclaredSize, ctx: Context) -> list[Observation]:
    """Hold when recipients > declared × ratio and > declared + slack."""
    campaign = ctx.campaign
    declared = campaign.declared.size
    if declared is None:
        return []
    received = campaign.counters.received
    # received > declared × ratio  <=>  received > floor(declared × ratio), received being whole.
    limit = max(math.floor(declared * rule.ratio), declared + rule.slack)
    if received <= limit:
        return []
    return [
        Observation(
            kind="over_declared_size",
            message=(
                f"campaign reached {received} recipients but declared {declared}; the limit is "
                f"{limit} (× {rule.ratio:g}, + {rule.slack})"
            ),
            evidence={
                "received": received,
                "declared": declared,
                "ratio": rule.ratio,
                "slack": rule.slack,
                "limit": limit,
            },
        )
    ]


def undeclared_limit(rule: UndeclaredLimit, ctx: Context) -> list[Observation]:
    """Hold a campaign that declared no size once it grows past a limit."""
    campaign = ctx.campaign
    received = campaign.counters.received
    if campaign.declared.size is not None or received <= rule.max_recipients:
        return []
    return [
        Observation(
            kind="undeclared_over_limit",
            message=(
                f"campaign declared no size and reached {received} recipients; undeclared "
                f"campaigns may reach {rule.max_recipients}"
            ),
            evidence={"received": received, "limit": rule.max_recipients},
        )
    ]


def absolute_ceiling(rule: AbsoluteCeiling, ctx: Context) -> list[Observation]:
    """Hold any campaign past the ceiling, whatever it declared."""
    campaign = ctx.campaign
    received = campaign.counters.received
    if received <= rule.max_recipients:
        return []
    return [
        Observation(
            kind="over_ceiling",
            message=f"campaign reached {received} recipients; no campaign may pass {rule.max_recipients}",
            evidence={
                "received": received,
                "limit": rule.max_recipients,
                "declared": campaign.declared.size,
            },
        )
    ]


def duplicate_recipients(rule: DuplicateRecipients, ctx: Context) -> list[Observation]:
    """Catch the same mailbox reached twice in one campaign: the "sent twice" day."""
    campaign, facts = ctx.campaign, ctx.facts
    if campaign.duplicates <= rule.max_duplicates or not facts.duplicates:
        return []
    sample = ctx.sample(facts.duplicates)
    return [
        Observation(
            kind="duplicate_recipients",
            message=(
                f"{campaign.duplicates} of this campaign's recipients received it more than once "
                f"(allowed: {rule.max_duplicates})"
            ),
            evidence={
                "duplicates": campaign.duplicates,
                "allowed": rule.max_duplicates,
                "sample": sample,
            },
            recipients=frozenset(facts.duplicates),
        )
    ]


CHECKS: dict[type[Rule], Check] = {
    DeclaredSize: declared_size,
    UndeclaredLimit: undeclared_limit,
    AbsoluteCeiling: absolute_ceiling,
    DuplicateRecipients: duplicate_recipients,
}
