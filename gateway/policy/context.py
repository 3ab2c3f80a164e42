"""What a policy check sees and what it returns: the shapes shared by every check family."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from gateway.content import RuleScan
from gateway.model import Campaign, Facts, Submission

SAMPLE = 10  # evidence lists at most this many addresses


@dataclass(frozen=True)
class Context:
    """One message of one campaign, with the facts the spool looked up for it."""

    campaign: Campaign
    submission: Submission
    facts: Facts
    internal_domains: frozenset[str] = frozenset()
    now: float = 0.0  # the engine's clock: seasonal windows are read from it

    def sample(self, indexes: Sequence[int] | frozenset[int]) -> list[str]:
        """Return up to SAMPLE recipient addresses, in message order."""
        return [self.submission.rcpt_tos[i] for i in sorted(indexes)[:SAMPLE]]

    def scan(self, rule_id: str) -> RuleScan:
        """Return what the content analysis found for `rule_id` in this message (or nothing)."""
        return self.submission.report.scans.get(rule_id, RuleScan())


@dataclass(frozen=True)
class Observation:
    """What a check saw: one kind of problem, its sentence and its evidence."""

    kind: str
    message: str
    evidence: dict[str, Any] = field(default_factory=dict)
    recipients: frozenset[int] = frozenset()  # indexes into rcpt_tos that `suppress` drops
    # False: a release does not clear it (only a sign-off does); it holds whenever raised.
    acknowledgeable: bool = True
    tallies: Mapping[str, int] = field(default_factory=dict)  # campaign tallies to add to


Check = Callable[[Any, Context], Sequence[Observation]]
