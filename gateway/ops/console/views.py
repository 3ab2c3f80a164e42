"""What the console's pages show of records: ages, sizes, rules that fired, approvals.

Pure functions of records and the clock, used by the templates; they describe, and
decide nothing (the decisions are `gateway.ops.api`'s).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from gateway.model import Campaign, CampaignEvent
from gateway.ops.views import timestamp

# A pending approval lasts until the release or rejection that clears it (sql_review).
_CLEARS_APPROVALS = frozenset({"released", "rejected"})
_UNITS = ((86400, "d"), (3600, "h"), (60, "min"), (1, "s"))


def age(seconds: float) -> str:
    """Render a duration the way a reader skims it: `3 d 4 h`, `12 min`, `5 s`."""
    seconds = max(0, int(seconds))
    parts: list[str] = []
    for size, unit in _UNITS:
        if seconds >= size or (size == 1 and not parts):
            parts.append(f"{seconds // size} {unit}")
            seconds %= size
        if len(parts) == 2:
            break
    return " ".join(parts)


def since(campaign: Campaign) -> float:
    """When the campaign started waiting: held at, or created at when it is not held."""
    return campaign.held_at if campaign.held_at is not None else campaign.created_at


def size_ratio(campaign: Campaign) -> str | None:
    """Received over declared, as `12×`, or None when nothing was declared."""
    declared = campaign.declared.size
    if not declared:
        return None
    ratio = campaign.counters.received / declared
    return f"{ratio:.1f}×" if ratio < 10 else f"{ratio:.0f}×"


def fired(campaign: Campaign) -> list[tuple[str, str]]:
    """Return the (rule, mode) of each finding, enforcing ones first, each rule once."""
    seen: dict[str, str] = {}
    for finding in campaign.findings:
        if seen.get(finding.rule) != "enforce":
            seen[finding.rule] = finding.mode
    return sorted(seen.items(), key=lambda item: (item[1] != "enforce", item[0]))


@dataclass(frozen=True)
class Approval:
    """An operator's approval of a release that waits for another operator."""

    actor: str
    reason: str
    recipients: int | None
    only_segment: str | None
    at: str | None


def pending_approvals(events: Sequence[CampaignEvent]) -> list[Approval]:
    """Return the approvals since the last release or rejection, oldest first."""
    pending: list[Approval] = []
    for event in events:
        if event.event in _CLEARS_APPROVALS:
            pending = []
        elif event.event == "release_approved":
            details = event.details
            pending.append(
                Approval(
                    event.actor,
                    str(details.get("reason", "")),
                    details.get("recipients"),
                    details.get("only_segment"),
                    timestamp(event.at),
                )
            )
    return pending


def segment_breakdown(tallies: Mapping[str, int]) -> list[tuple[str, int]]:
    """Recipients of the campaign in each segment a rule counts, by segment name."""
    prefix = "segment:"  # the tally names of `gateway.policy.rules.segmentation`
    return sorted((n[len(prefix) :], v) for n, v in tallies.items() if n.startswith(prefix))


def shown_value(value: Any) -> str:
    """Render an evidence or detail value as text: numbers and words as they are."""
    if isinstance(value, str):
        return value
    if isinstance(value, list | tuple) and all(isinstance(v, str | int | float) for v in value):
        return ", ".join(str(v) for v in value)
    return json.dumps(value, ensure_ascii=False, sort_keys=True)


def pairs(details: Mapping[str, Any], leave_out: Iterable[str] = ()) -> list[tuple[str, str]]:
    """Render a mapping's items as (name, text), in their order, some left out."""
    skip = set(leave_out)
    return [(k, shown_value(v)) for k, v in details.items() if k not in skip]
