"""Segmentation rules: who a campaign reaches, measured against named audience segments.

Owns the parameters and checks of `segment_exclude`, `segment_only`, `segment_mix`,
`segment_coverage` and `frequency_cap`. Checks are pure functions of (rule, context). The
spool looked up, inside the admitting transaction, which recipients of this message are
members of each segment a rule names (the rule's `needs`), how many members the campaign
reached before this message (tallies), and per-recipient send counts for frequency caps.
A rule naming a segment that was never loaded fails closed.
"""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import AfterValidator, Field, model_validator

from gateway.model import Needs
from gateway.policy.rules.base import (
    Context,
    Observation,
    Rule,
    Shared,
    Strict,
)
from gateway.settings import Duration

_PERCENT = re.compile(r"^\d+(\.\d+)?%$")


def _count_or_percent(value: int | str) -> int | str:
    if isinstance(value, str) and not _PERCENT.match(value.strip()):
        raise ValueError("expected a whole number or a percentage such as '5%'")
    if isinstance(value, int) and value < 0:
        raise ValueError("must not be negative")
    return value.strip() if isinstance(value, str) else value


CountOrPercent = Annotated[int | str, AfterValidator(_count_or_percent)]


def exceeds(found: int, received: int, allowed: int | str) -> bool:
    """Tell whether `found` of `received` recipients is more than `allowed` (count or %)."""
    if isinstance(allowed, str):
        return found / received * 100 > float(allowed.rstrip("%"))
    return found > allowed


def tally(segment: str) -> str:
    """Name of a campaign's running count of members of `segment`."""
    return f"segment:{segment}"


def counted(segment: str) -> Needs:
    """Say what a rule measuring one segment looks up: its members here, its tally so far."""
    return Needs(segments=frozenset({segment}), tallies=frozenset({tally(segment)}))


class SegmentExclude(Rule):
    """Campaigns this rule selects must not reach segment `segment` (the win-back day)."""

    kind: Literal["segment_exclude"]
    segment: str
    max_overlap: CountOrPercent = 0  # members allowed, as a count or a share of recipients

    def needs(self, shared: Shared) -> Needs:  # noqa: D102, ARG002
        return counted(self.segment)


class SegmentOnly(Rule):
    """Recipients must be in `segment`, in `domains`, or (with `internal`) internal."""

    kind: Literal["segment_only"]
    segment: str | None = None
    domains: list[str] = Field(default_factory=list)
    internal: bool = False

    @model_validator(mode="after")
    def _something_allowed(self) -> SegmentOnly:
        if self.segment is None and not self.domains and not self.internal:
            raise ValueError("give a segment, domains, or internal: true")
        return self

    def needs(self, shared: Shared) -> Needs:  # noqa: D102, ARG002
        return Needs(segments=frozenset({self.segment} if self.segment else ()))


class SegmentMix(Rule):
    """One campaign must not reach members of two of these segments."""

    kind: Literal["segment_mix"]
    segments: list[str] = Field(min_length=2)

    def needs(self, shared: Shared) -> Needs:  # noqa: D102, ARG002
        return Needs(
            segments=frozenset(self.segments), tallies=frozenset(map(tally, self.segments))
        )


class Allow(Strict):
    """Campaigns a coverage rule lets through."""

    category: list[str] = Field(default_factory=list)


class SegmentCoverage(Rule):
    """Hold a campaign reaching more than `max_percent` of a segment (the whole-database day)."""

    kind: Literal["segment_coverage"]
    segment: str
    max_percent: float = Field(ge=0, le=100)
    allow: Allow = Field(default_factory=Allow)

    def needs(self, shared: Shared) -> Needs:  # noqa: D102, ARG002
        return counted(self.segment)


class FrequencyCap(Rule):
    """No recipient gets more than `max_per_recipient` selected campaigns' mail per window."""

    kind: Literal["frequency_cap"]
    max_per_recipient: int = Field(ge=1)
    window: Duration

    def needs(self, shared: Shared) -> Needs:  # noqa: D102, ARG002
        return Needs(frequency=((self.id, self.window),))


def reached(ctx: Context, segment: str) -> int:
    """Members of `segment` the campaign reached, this message included."""
    return ctx.facts.tallies.get(tally(segment), 0) + len(ctx.facts.members.get(segment, ()))


def segment_exclude(rule: SegmentExclude, ctx: Context) -> list[Observation]:
    """Hold when a campaign reaches more members of the segment than allowed."""
    if missing := ctx.missing_segments(rule.id, [rule.segment]):
        return missing
    members = ctx.facts.members[rule.segment]
    if not members:
        return []
    overlap = reached(ctx, rule.segment)
    received = ctx.campaign.counters.received
    allowed = rule.max_overlap
    if not exceeds(overlap, received, allowed):
        return []
    return [
        Observation(
            kind="segment_overlap",
            message=(
                f"{overlap} of this campaign's {received} recipients are in segment "
                f"{rule.segment} (allowed: {allowed})"
            ),
            evidence={
                "segment": rule.segment,
                "overlap": overlap,
                "received": received,
                "allowed": allowed,
                "in_this_message": len(members),
                "sample": ctx.sample(members),
            },
            recipients=members,
        )
    ]


def segment_only(rule: SegmentOnly, ctx: Context) -> list[Observation]:
    """Hold when recipients fall outside the segment and domains the rule allows."""
    if rule.segment and (missing := ctx.missing_segments(rule.id, [rule.segment])):
        return missing
    domains = {d.lower() for d in rule.domains}
    if rule.internal:
        domains |= ctx.internal_domains
    found = ctx.outside(rule.segment, domains)
    if not found:
        return []
    allowed = [f"segment {rule.segment}"] if rule.segment else []
    allowed += [f"domains {', '.join(sorted(domains))}"] if domains else []
    if rule.internal and not ctx.internal_domains:
        allowed.append("internal_domains (none are configured)")
    return [
        Observation(
            kind="outside_allowed_recipients",
            message=f"{len(found)} recipients of this message are outside {' or '.join(allowed)}",
            evidence={
                "outside": len(found),
                "segment": rule.segment,
                "domains": sorted(domains),
                "sample": ctx.sample(found),
            },
            recipients=found,
        )
    ]


def segment_mix(rule: SegmentMix, ctx: Context) -> list[Observation]:
    """Hold a campaign that reaches members of two or more of the segments."""
    if missing := ctx.missing_segments(rule.id, rule.segments):
        return missing
    counts = {name: reached(ctx, name) for name in rule.segments}
    present = [name for name in rule.segments if counts[name]]
    if len(present) < 2 or not any(ctx.facts.members[name] for name in present):
        return []
    parts = ", ".join(f"{counts[name]} of {name}" for name in present)
    return [
        Observation(
            kind="segments_mixed",
            message=f"one campaign reaches members of {len(present)} segments that must not mix: {parts}",
            evidence={"reached": counts},
        )
    ]


def segment_coverage(rule: SegmentCoverage, ctx: Context) -> list[Observation]:
    """Hold a campaign covering more than `max_percent` of a segment, unless allowed."""
    if missing := ctx.missing_segments(rule.id, [rule.segment]):
        return missing
    category = ctx.campaign.declared.category
    if category is not None and category in {c.lower() for c in rule.allow.category}:
        return []
    size = ctx.facts.segment_sizes[rule.segment] or 0
    count = reached(ctx, rule.segment)
    if not size or not ctx.facts.members[rule.segment] or count / size * 100 <= rule.max_percent:
        return []
    share = round(count / size * 100, 2)
    return [
        Observation(
            kind="segment_coverage",
            message=(
                f"campaign reaches {count} of the {size} addresses of segment {rule.segment} "
                f"({share:g} %, allowed {rule.max_percent:g} %)"
            ),
            evidence={
                "segment": rule.segment,
                "reached": count,
                "size": size,
                "percent": share,
                "max_percent": rule.max_percent,
                "category": category,
            },
        )
    ]


def frequency_cap(rule: FrequencyCap, ctx: Context) -> list[Observation]:
    """Drop or hold recipients who already got the allowed number of mails in the window."""
    counts = ctx.facts.frequency.get(rule.id, ())
    over = frozenset(i for i, count in enumerate(counts) if count >= rule.max_per_recipient)
    if not over:
        return []
    return [
        Observation(
            kind="frequency_cap",
            message=(
                f"{len(over)} recipients already got {rule.max_per_recipient} mails of campaigns "
                f"this rule counts in the last {rule.window:g} s"
            ),
            evidence={
                "over": len(over),
                "max_per_recipient": rule.max_per_recipient,
                "window_seconds": rule.window,
                "sample": ctx.sample(over),
            },
            recipients=over,
        )
    ]
