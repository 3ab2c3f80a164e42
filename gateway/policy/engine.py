"""The policy engine: run every selected rule's check, in declared order, fail closed.

It knows no rule kind: each rule's unit (from the registry it is given) says whether the
rule reads content, and how to scan and check it; each rule's `needs` says what the spool
must look up for it.

Two phases. `analyse` reads one message's content (decoding, then each content rule's
scanner) and is CPU work the admitter runs off the event loop, before the spool
transaction. `decide` runs inside that transaction, so it is pure and quick: counters,
facts and the content report in, verdict out. A check or scanner that raises, or takes
more CPU time than its budget (its own thread's: a busy machine is not a broken check),
produces a finding that holds the campaign (in enforce mode) instead of passing it; so
does content that was never analysed. A content analysis that hangs is held by the
admitter's wall-clock `policies.content_timeout`.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import structlog

from gateway.mail.addresses import address_hash, normalise_address
from gateway.mail.content import Document, content_key, decode
from gateway.mail.headers import HeaderBlock
from gateway.model import (
    Campaign,
    ContentReport,
    Facts,
    FeedbackStats,
    Finding,
    Needs,
    RuleScan,
    Submission,
    Throttle,
    Verdict,
)
from gateway.policy.loader import ActiveRule, PolicySet
from gateway.policy.registry import Registry
from gateway.policy.rules.base import Context, Observation, Scanner
from gateway.settings import CHECK_BUDGET, SCAN_BUDGET

log = structlog.get_logger(__name__)

CONTENT_MEMORY = 1024  # contents whose reading is remembered (a digest and small hits each)
SELECTION_MEMORY = 1024  # campaigns' (category, key, sender, client) whose rules are remembered
DECLARATION_RULE = "declaration"  # the built-in rule of conflicting declarations
CONTENT_RULE = "content"  # the built-in rule of content that could not be analysed


@dataclass(frozen=True, slots=True)
class _Read:
    """What the content rules read in one message, as remembered for the same content."""

    scans: Mapping[str, RuleScan]
    senders: tuple[str, ...]
    sender_hashes: tuple[int, ...]
    fingerprint: str

    def report(self, elapsed: float) -> ContentReport:
        """Return the report of a message with this content, read in `elapsed` seconds."""
        return ContentReport(
            analysed=True,
            scans=self.scans,
            senders=self.senders,
            sender_hashes=self.sender_hashes,
            fingerprint=self.fingerprint,
            elapsed=elapsed,
        )


@dataclass(frozen=True, slots=True)
class Blueprint:
    """An engine's policy set and budgets: picklable, for an analysis process."""

    policies: PolicySet
    budget: float
    scan_budget: float

    @property
    def version(self) -> str:
        """The policy set's version."""
        return self.policies.version


class Engine:
    """Decides for each incoming message of a campaign, with one immutable policy set."""

    def __init__(
        self,
        policies: PolicySet,
        *,
        registry: Registry,
        clock: Callable[[], float] = time.time,
        budget: float = CHECK_BUDGET,
        scan_budget: float = SCAN_BUDGET,
    ) -> None:
        """Use `registry`'s units for `policies`' rules; LookupError for a kind it lacks."""
        self.policies = policies
        self._clock = clock
        self._budget = budget
        self._scan_budget = scan_budget
        self._shared = policies.shared
        self._units = {a.id: registry.unit(a.rule) for a in policies.rules}
        self._needs = {a.id: a.rule.needs(self._shared) for a in policies.rules}
        self._content = [  # the rules that read content, with their scanners
            (a, scan) for a in policies.rules if (scan := self._units[a.id].scan) is not None
        ]
        self._throttling = [  # enforce-mode rules that slow the relay
            a for a in policies.rules if self._units[a.id].throttle and a.mode == "enforce"
        ]
        self._reads: OrderedDict[bytes, _Read] = OrderedDict()  # by content key, oldest first
        # What `when` selects depends on four fields of the campaign, and the writer asks
        # for every message, inside the admission transaction: remembered per four.
        self._selections: dict[tuple[str | None, str, str, str], list[ActiveRule]] = {}
        self._reads_lock = threading.Lock()  # analyse runs in several threads

    def rule_modes(self) -> list[tuple[str, str]]:
        """Every rule id this engine can report findings for, with its mode."""
        built_in = [(DECLARATION_RULE, "enforce"), (CONTENT_RULE, "enforce")]
        return [*built_in, *((r.id, r.mode) for r in self.policies.rules)]

    def analyse(self, submission: Submission) -> ContentReport:
        """Decode the message and run every content rule's scanner on it (CPU work, no I/O).

        Scanners run whatever the rules' `when` says: a manifest may change the campaign's
        category after the message was read, and `decide` applies `when` to the campaign.
        """
        key = submission.content_key or content_key(submission.content)
        return self.read(submission.content, submission.header_fields, key)

    def read(
        self, content: bytes, header_fields: tuple[tuple[str, bytes], ...], key: bytes
    ) -> ContentReport:
        """Analyse content with its parsed header block (may be empty) and content key.

        What `analyse` does, from just what the reading needs: an analysis process gets
        these, not the envelope.
        """
        if not self._content:
            return ContentReport()
        started = time.perf_counter()
        read = self._recall(key)
        if read is None:
            headers = None
            if header_fields:  # parsed once by the admitter: no second parse
                size = sum(len(raw) for _, raw in header_fields)
                headers = HeaderBlock(header_fields, content[size:])
            document = decode(content, headers)
            scans = {a.id: self._scan(a, scan, document) for a, scan in self._content}
            boxes = tuple(dict.fromkeys(normalise_address(a) or a for _, a in document.senders))
            hashes = tuple(address_hash(box) for box in boxes)
            read = _Read(scans, boxes, hashes, document.fingerprint())
            if self._clean(scans):
                self._remember(key, read)
        return read.report(time.perf_counter() - started)

    def learn(self, key: bytes, report: ContentReport) -> None:
        """Remember a report of content with this key, read here or in an analysis process.

        Only a clean reading is remembered: scans that failed or ran over budget run
        again, and hold again.
        """
        if report.analysed and not report.error and self._clean(report.scans):
            read = _Read(report.scans, report.senders, report.sender_hashes, report.fingerprint)
            self._remember(key, read)

    def _clean(self, scans: Mapping[str, RuleScan]) -> bool:
        return all(s.error is None and s.elapsed <= self._scan_budget for s in scans.values())

    def blueprint(self) -> Blueprint:
        """Return what builds this engine again elsewhere (an analysis process), registry aside."""
        return Blueprint(self.policies, self._budget, self._scan_budget)

    def recall(self, submission: Submission) -> ContentReport | None:
        """Return the report of content read before (or of no content rules), else None.

        Quick enough for the event loop: a digest and a look-up, no decoding.
        """
        if not self._content:
            return ContentReport()
        started = time.perf_counter()
        read = self._recall(submission.content_key or content_key(submission.content))
        return None if read is None else read.report(time.perf_counter() - started)

    def _recall(self, key: bytes) -> _Read | None:
        """Return what an earlier message with the same content key read, if remembered.

        A campaign whose body is not personalised sends one content many times over, so
        it is read once, not once per message.
        """
        with self._reads_lock:
            read = self._reads.get(key)
            if read is not None:
                self._reads.move_to_end(key)
            return read

    def _remember(self, key: bytes, read: _Read) -> None:
        with self._reads_lock:
            self._reads[key] = read
            if len(self._reads) > CONTENT_MEMORY:
                self._reads.popitem(last=False)

    def _scan(self, active: ActiveRule, scan: Scanner, document: Document) -> RuleScan:
        # One retry before an overrun counts: a cold cache or a garbage collection may have
        # landed in the first reading. The first reading is timed by the wall clock (cheap:
        # no system call), which is never less than the thread's CPU time, so a reading
        # within budget by the wall clock is within it by CPU time too; only past it is the
        # scan run again and timed by its own thread's CPU time, which then counts.
        for clock in (time.perf_counter, time.thread_time):
            started = clock()
            try:
                hits = tuple(scan(active.rule, document, self._shared))
            except Exception as exc:  # fail closed: decide turns the error into a holding finding
                log.exception("content_scan_crashed", rule=active.id)
                return RuleScan(error=f"{type(exc).__name__}: {exc}")
            used = clock() - started
            if used <= self._scan_budget:
                break
        return RuleScan(hits=hits, elapsed=used)

    def _selecting(self, campaign: Campaign) -> list[ActiveRule]:
        """Return the rules whose `when` selects `campaign`, in declared order."""
        key = (campaign.declared.category, campaign.key, campaign.sender, campaign.client)
        found = self._selections.get(key)
        if found is None:
            found = [a for a in self.policies.rules if a.rule.when.selects(campaign)]
            if len(self._selections) >= SELECTION_MEMORY:
                self._selections.clear()
            self._selections[key] = found  # a dict's item assignment is atomic under the GIL
        return found

    def needs(self, campaign: Campaign) -> Needs:
        """Say what the rules that select `campaign` need looked up."""
        wanted = [self._needs[active.id] for active in self._selecting(campaign)]
        return Needs(
            segments=frozenset().union(*(n.segments for n in wanted)),
            tallies=frozenset().union(*(n.tallies for n in wanted)),
            frequency=tuple(dict.fromkeys(f for n in wanted for f in n.frequency)),
            content_sends=tuple(dict.fromkeys(f for n in wanted for f in n.content_sends)),
            signoffs=any(n.signoffs for n in wanted),
            sender_segments=frozenset().union(*(n.sender_segments for n in wanted)),
        )

    def decide(self, campaign: Campaign, submission: Submission, facts: Facts) -> Verdict:
        """Evaluate every rule that selects `campaign`; hold on any unacknowledged finding."""
        now = self._clock()
        selecting = self._selecting(campaign)
        findings = self._built_in(facts, submission, selecting, now)
        hold = any(f.signature not in campaign.acknowledged for f in findings)
        suppress: dict[int, str] = {}
        ctx = Context(campaign, submission, facts, self.policies.internal_domains, now)
        tallies = self._counts(ctx, selecting)
        for active in selecting:
            for observation in self._run(active, ctx):
                if active.mode == "enforce":  # shadow rules record, they never need anything
                    for name, delta in observation.tallies.items():
                        tallies[name] = tallies.get(name, 0) + delta
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
                elif (
                    finding.signature not in campaign.acknowledged
                    or not observation.acknowledgeable
                ):
                    hold = True
        return Verdict(
            hold=hold,
            findings=tuple(findings),
            suppress=suppress,
            tallies=tallies,
            frequency=tuple(
                dict.fromkeys(rule for a in selecting for rule, _ in self._needs[a.id].frequency)
            ),
            content_sends=tuple(
                dict.fromkeys(
                    rule for a in selecting for rule, _ in self._needs[a.id].content_sends
                )
            ),
        )

    def _counts(self, ctx: Context, selecting: list[ActiveRule]) -> dict[str, int]:
        """Return the tallies to add whatever the rules find, in either mode.

        Segment members reached, and what rules keep count of (`Unit.count`).
        """
        members = ctx.facts.members.items()
        tallies = {f"segment:{name}": len(found) for name, found in members}
        for active in selecting:
            count = self._units[active.id].count
            for name, delta in (count(active.rule, ctx) if count else {}).items():
                tallies[name] = tallies.get(name, 0) + delta
        return tallies

    def _built_in(
        self, facts: Facts, submission: Submission, selecting: list[ActiveRule], now: float
    ) -> list[Finding]:
        """Return the findings no rule file asks for: conflicting declarations, unchecked content."""
        found = []
        if facts.conflicts:  # DESIGN.md §2: conflicting declarations are a finding
            found.append(conflicting_declaration(facts, self.policies.version, now))
        report = submission.report
        content_selected = any(self._units[a.id].reads_content for a in selecting)
        if report.error or (content_selected and not report.analysed):
            found.append(content_unchecked(report, self.policies.version, now))
        return found

    def _run(self, active: ActiveRule, ctx: Context) -> list[Observation]:
        scan = ctx.submission.report.scans.get(active.id)
        if scan is not None and scan.error:
            message = f"rule {active.id} could not read the content ({scan.error}); held to be safe"
            return [Observation("check_failed", message, {"error": scan.error})]
        # The check's own CPU time: a busy machine is not a slow check. A pure check is run
        # once more before an overrun counts: a garbage collection may have landed in it.
        # The first run is timed by the wall clock (no system call; never less than the
        # thread's CPU time), the second, only past the budget, by the thread's CPU time.
        for clock in (time.perf_counter, time.thread_time):
            started = clock()
            try:
                observations = list(self._units[active.id].check(active.rule, ctx))
            except Exception as exc:  # fail closed: a broken check holds
                log.exception("policy_check_crashed", rule=active.id, campaign=ctx.campaign.id)
                error = f"{type(exc).__name__}: {exc}"
                message = f"rule {active.id} could not be evaluated ({error}); held to be safe"
                return [
                    Observation(kind="check_failed", message=message, evidence={"error": error})
                ]
            elapsed = clock() - started
            if elapsed <= self._budget:
                break
        if elapsed > self._budget:
            observations.append(over_budget(f"rule {active.id} took", elapsed, self._budget))
        if scan is not None and scan.elapsed > self._scan_budget:
            said = f"rule {active.id} read the content in"
            observations.append(over_budget(said, scan.elapsed, self._scan_budget))
        return observations

    def judges_feedback(self, campaign: Campaign) -> bool:
        """Tell whether any rule selecting `campaign` reads its provider feedback."""
        return any(self._units[a.id].judge is not None for a in self._selecting(campaign))

    def judge_feedback(self, campaign: Campaign, feedback: FeedbackStats) -> Verdict:
        """Run the feedback rules selecting `campaign` on what providers reported about it.

        Holds on an enforced finding the campaign's last release did not acknowledge; a
        judge that raises holds too (fail closed).
        """
        now = self._clock()
        findings, hold = [], False
        for active in self._selecting(campaign):
            judge = self._units[active.id].judge
            if judge is None:
                continue
            try:
                observations = list(judge(active.rule, feedback))
            except Exception as exc:  # fail closed: a broken breaker holds
                log.exception("feedback_judge_crashed", rule=active.id, campaign=campaign.id)
                error = f"{type(exc).__name__}: {exc}"
                message = f"rule {active.id} could not be evaluated ({error}); held to be safe"
                observations = [Observation("check_failed", message, {"error": error})]
            for observation in observations:
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
                if active.mode == "enforce" and finding.signature not in campaign.acknowledged:
                    hold = True
        return Verdict(hold=hold, findings=tuple(findings))

    def throttle_rules(self) -> list[str]:
        """Return the ids of the throttle rules in force (enforce mode)."""
        return [active.id for active in self._throttling]

    def throttles(self, campaign: Campaign) -> tuple[Throttle, ...]:
        """Return the relay throttles in force for `campaign`: enforce-mode rules selecting it.

        Pure and quick: the relay's claim calls it inside its transaction. A shadow-mode
        throttle slows nothing.
        """
        return tuple(
            throttle(active.rule, campaign)
            for active in self._throttling
            if (throttle := self._units[active.id].throttle) is not None
            and active.rule.when.selects(campaign)
        )

    def frequency_windows(self) -> tuple[float, ...]:
        """Return the windows of every rule counting sends per recipient (to prune by)."""
        return tuple(
            window for n in self._needs.values() for _, window in (*n.frequency, *n.content_sends)
        )


def over_budget(said: str, elapsed: float, budget: float) -> Observation:
    """Describe a check or a scan that ran past its time budget: it holds."""
    took, limit = round(elapsed * 1000, 1), budget * 1000
    message = f"{said} {took:g} ms, over its {limit:g} ms budget; held to be safe"
    return Observation("check_over_budget", message, {"elapsed_ms": took, "budget_ms": limit})


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


def content_unchecked(report: ContentReport, version: str, now: float) -> Finding:
    """Describe a message whose content the rules could not look at: it never passes."""
    reason = report.error or "the content was not analysed"
    return Finding(
        rule=CONTENT_RULE,
        kind="content_unchecked",
        mode="enforce",
        message=f"content could not be checked ({reason}); held to be safe",
        evidence={"error": reason},
        policy_version=version,
        at=now,
    )
