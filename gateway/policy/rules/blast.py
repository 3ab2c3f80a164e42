"""Blast-radius rules: how far a campaign may grow past what its sender declared.

Owns the parameters and checks of `declared_size`, `undeclared_limit`, `absolute_ceiling`
and `duplicate_recipients`. Each check is a small pure function of (rule, context)
returning observations with evidence; none reads content. The campaign's counters already
include the message being decided, so "received" is the size the campaign would have if
this message went out.
"""

from __future__ import annotations

import math
from typing import Literal

from pydantic import Field

from gateway.policy.rules.base import Context, Observation, Rule


class DeclaredSize(Rule):
    """Hold when recipients > declared × ratio and > declared + slack."""

    kind: Literal["declared_size"]
    ratio: float = Field(1.5, ge=1.0, description="Growth allowed over the declared size.")
    slack: int = Field(50, ge=0, description="Recipients allowed over it in any case.")


class UndeclaredLimit(Rule):
    """Hold a campaign without a declared size once it passes a limit."""

    kind: Literal["undeclared_limit"]
    max_recipients: int = Field(5000, ge=0, description="Recipients an undeclared one may reach.")


class AbsoluteCeiling(Rule):
    """Hold any campaign past a ceiling, whatever it declared."""

    kind: Literal["absolute_ceiling"]
    max_recipients: int = Field(1_000_000, ge=0, description="Recipients no campaign may pass.")


class DuplicateRecipients(Rule):
    """Hold (or suppress the repeats) when a campaign reaches a recipient twice."""

    kind: Literal["duplicate_recipients"]
    max_duplicates: int = Field(0, ge=0, description="Repeated recipients a campaign may have.")


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
