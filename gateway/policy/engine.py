"""The policy engine: run every selected rule's check, in declared order, fail closed.

`decide` runs inside the spool transaction that admits a message, so it is pure and
quick: counters in, verdict out. A check that raises, or takes longer than its budget,
produces a finding that holds the campaign (in enforce mode) instead of passing it.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import structlog

from gateway.model import Campaign, Facts, Finding, Needs, Submission, Verdict
from gateway.policy import blast, segmentation
from gateway.policy.context import Check, Context, Observation
from gateway.policy.loader import ActiveRule, PolicySet
from gateway.policy.rules import FrequencyCap, Rule

log = structlog.get_logger(__name__)

CHECK_BUDGET = 0.05  # seconds; campaign-level checks are counter and index lookups
CHECKS: dict[type[Rule], Check] = {**blast.CHECKS, **segmentation.CHECKS}
DECLARATION_RULE = "declaration"  # the built-in rule of conflicting declarations


class Engine:
    """Decides for each incoming message of a campaign, with one immutable policy set."""

    def __init__(
        self,
        policies: PolicySet,
        *,
        clock: Callable[[], float] = time.time,
        budget: float = CHECK_BUDGET,
    ) -> None:
        self.policies = policies
        self._clock = clock
        self._budget = budget

    def rule_modes(self) -> list[tuple[str, str]]:
        """Every rule id this engine can report findings for, with its mode."""
        return [(DECLARATION_RULE, "enforce"), *((r.id, r.mode) for r in self.policies.rules)]

    def _selecting(self, campaign: Campaign) -> list[ActiveRule]:
        return [a for a in self.policies.rules if a.rule.when.selects(campaign)]

    def needs(self, campaign: Campaign) -> Needs:
        """Say what the rules that select `campaign` need looked up."""
        wanted = [active.rule.needs() for active in self._selecting(campaign)]
        return Needs(
            segments=frozenset().union(*(n.segments for n in wanted)),
            tallies=frozenset().union(*(n.tallies for n in wanted)),
            frequency=tuple(dict.fromkeys(f for n in wanted for f in n.frequency)),
        )

    def decide(self, campaign: Campaign, submission: Submission, facts: Facts) -> Verdict:
        """Evaluate every rule that selects `campaign`; hold on any unacknowledged finding."""
        findings: list[Finding] = []
        hold = False
        suppress: dict[int, str] = {}
        now = self._clock()
        if facts.conflicts:  # DESIGN.md §2: conflicting declarations are a finding
            finding = conflicting_declaration(facts, self.policies.version, now)
            findings.append(finding)
            hold = finding.signature not in campaign.acknowledged
        selecting = self._selecting(campaign)
        ctx = Context(campaign, submission, facts, self.policies.internal_domains)
        for active in selecting:
            for observation in self._run(active, ctx):
                finding = Finding(
                    rule=active.id,
                    kind=observation.kind,
                    mode=active.mode,
                    message=observation.message,
                    evidence=observation.evidence,
                    policy_version=self.policies.version,
                    at=now,
                )
                findings.append(finding)
                if active.mode != "enforce":
                    continue
                if active.action == "suppress" and observation.recipients:
                    for index in sorted(observation.recipients):
                        suppress.setdefault(index, active.id)
                elif finding.signature not in campaign.acknowledged:
                    hold = True
        return Verdict(
            hold=hold,
            findings=tuple(findings),
            suppress=suppress,
            # Segment tallies count members reached, whatever the verdict.
            tallies={f"segment:{name}": len(found) for name, found in facts.members.items()},
            frequency=tuple(a.id for a in selecting if isinstance(a.rule, FrequencyCap)),
        )

    def _run(self, active: ActiveRule, ctx: Context) -> list[Observation]:
        started = time.perf_counter()
        try:
            observations = list(CHECKS[type(active.rule)](active.rule, ctx))
        except Exception as exc:  # fail closed: a broken check holds
            log.exception("policy_check_crashed", rule=active.id, campaign=ctx.campaign.id)
            error = f"{type(exc).__name__}: {exc}"
            message = f"rule {active.id} could not be evaluated ({error}); held to be safe"
            return [Observation(kind="check_failed", message=message, evidence={"error": error})]
        elapsed = time.perf_counter() - started
        if elapsed > self._budget:
            took, budget = round(elapsed * 1000, 1), self._budget * 1000
            message = (
                f"rule {active.id} took {took:g} ms, over its {budget:g} ms budget; held to be safe"
            )
            evidence = {"elapsed_ms": took, "budget_ms": budget}
            observations.append(Observation("check_over_budget", message, evidence))
        return observations


def conflicting_declaration(facts: Facts, version: str, now: float) -> Finding:
    """Describe declaration headers that disagree with what the campaign declared before."""
    parts = [f"{field} {sent!r} (campaign: {kept!r})" for field, kept, sent in facts.conflicts]
    return Finding(
        rule=DECLARATION_RULE,
        kind="conflicting_declaration",
        mode="enforce",
        message="this message declares " + ", ".join(parts) + "; the first declaration is kept",
        evidence={field: {"kept": kept, "sent": sent} for field, kept, sent in facts.conflicts},
        policy_version=version,
        at=now,
    )
