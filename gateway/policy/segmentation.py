"""Segmentation checks: who a campaign reaches, measured against named audience segments.

Pure functions of (rule, context). The spool looked up, inside the admitting transaction,
which recipients of this message are members of each segment a rule names, how many
members the campaign reached before this message (tallies), and per-recipient send counts
for frequency caps. A rule naming a segment that was never loaded fails closed.
"""

from __future__ import annotations

from collections.abc import Iterable

from gateway.policy.context import Check, Context, Observation
from gateway.policy.rules import (
    FrequencyCap,
    Rule,
    SegmentCoverage,
    SegmentExclude,
    SegmentMix,
    SegmentOnly,
    tally,
)
from gateway.segments import domain_of


def missing_segments(rule_id: str, names: Iterable[str], ctx: Context) -> list[Observation]:
    """Fail closed: a segment the rule needs has not been loaded yet."""
    missing = sorted(n for n in names if ctx.facts.segment_sizes.get(n) is None)
    if not missing:
        return []
    return [
        Observation(
            kind="segment_missing",
            message=(
                f"segment {', '.join(missing)} has not been loaded; rule {rule_id} holds the "
                "campaigns it selects until it is uploaded"
            ),
            evidence={"segments": missing},
        )
    ]


def reached(ctx: Context, segment: str) -> int:
    """Members of `segment` the campaign reached, this message included."""
    return ctx.facts.tallies.get(tally(segment), 0) + len(ctx.facts.members.get(segment, ()))


def segment_exclude(rule: SegmentExclude, ctx: Context) -> list[Observation]:
    """Hold when a campaign reaches more members of the segment than allowed."""
    if missing := missing_segments(rule.id, [rule.segment], ctx):
        return missing
    members = ctx.facts.members[rule.segment]
    if not members:
        return []
    overlap = reached(ctx, rule.segment)
    received = ctx.campaign.counters.received
    allowed = rule.max_overlap
    if isinstance(allowed, str):
        over = overlap / received * 100 > float(allowed.rstrip("%"))
    else:
        over = overlap > allowed
    if not over:
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
    if rule.segment and (missing := missing_segments(rule.id, [rule.segment], ctx)):
        return missing
    domains = {d.lower() for d in rule.domains}
    if rule.internal:
        domains |= ctx.internal_domains
    members = ctx.facts.members.get(rule.segment, frozenset()) if rule.segment else frozenset()
    outside = frozenset(
        i
        for i, box in enumerate(ctx.submission.mailboxes)
        if i not in members and not _in_domains(domain_of(box), domains)
    )
    if not outside:
        return []
    allowed = [f"segment {rule.segment}"] if rule.segment else []
    allowed += [f"domains {', '.join(sorted(domains))}"] if domains else []
    if rule.internal and not ctx.internal_domains:
        allowed.append("internal_domains (none are configured)")
    return [
        Observation(
            kind="outside_allowed_recipients",
            message=f"{len(outside)} recipients of this message are outside {' or '.join(allowed)}",
            evidence={
                "outside": len(outside),
                "segment": rule.segment,
                "domains": sorted(domains),
                "sample": ctx.sample(outside),
            },
            recipients=outside,
        )
    ]


def _in_domains(domain: str, domains: set[str]) -> bool:
    return any(domain == d or domain.endswith("." + d) for d in domains)


def segment_mix(rule: SegmentMix, ctx: Context) -> list[Observation]:
    """Hold a campaign that reaches members of two or more of the segments."""
    if missing := missing_segments(rule.id, rule.segments, ctx):
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
    if missing := missing_segments(rule.id, [rule.segment], ctx):
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


CHECKS: dict[type[Rule], Check] = {
    SegmentExclude: segment_exclude,
    SegmentOnly: segment_only,
    SegmentMix: segment_mix,
    SegmentCoverage: segment_coverage,
    FrequencyCap: frequency_cap,
}
