"""Policy tests kept beside the policy files, like `promtool test rules` for alerts.

A fixture file (`<policy dir>/tests/*.yaml`) lists cases: a message (an `.eml` file next
to it, or one written inline), the campaign it belongs to at that moment (declaration,
recipients received so far, this message's recipients, segment members, sign-offs, the
date, what providers reported about it: `feedback`), and the findings expected as
(rule, kind) pairs, or `none`. Running a case is what the gateway does for one message
(analyse, then decide; with `feedback`, judge the feedback rules too) without a spool:
the facts the spool would look up come from the fixture. Errors in fixture files name file, line, key.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime
from email.message import EmailMessage
from email.policy import SMTP
from pathlib import Path
from typing import Literal

from pydantic import Field, ValidationError

from gateway.audience.lists import ListReader
from gateway.mail.addresses import address_hash, normalise_address
from gateway.mail.headers import HeaderBlock
from gateway.model import (
    Campaign,
    CampaignRef,
    Counters,
    Declaration,
    Facts,
    Feedback,
    FeedbackStats,
    Finding,
    Submission,
)
from gateway.policy.engine import Engine
from gateway.policy.loader import PolicySet
from gateway.policy.registry import Registry
from gateway.policy.rules.base import Strict
from gateway.states import CampaignState
from gateway.yamlfile import read_yaml

Day = date  # the field called `date` below would shadow the type in annotations
DEFAULT_DATE = datetime(2027, 3, 10, 12, tzinfo=UTC)  # a day no shipped seasonal phrase owns


class MessageSpec(Strict):
    """A message written inline: headers, a text part, an HTML part; or raw bytes."""

    sender: str = Field("Shop <news@shop.test>", alias="from")
    to: str = "reader@example.org"
    subject: str = "A message"
    text: str | None = None
    html: str | None = None
    headers: dict[str, str] = Field(default_factory=dict)
    raw: str | None = Field(None, description="The whole message as written (broken MIME).")

    def content(self) -> bytes:
        """Build the message bytes."""
        if self.raw is not None:
            return self.raw.replace("\r\n", "\n").replace("\n", "\r\n").encode("utf-8")
        message = EmailMessage()
        message["From"] = self.sender
        message["To"] = self.to
        message["Subject"] = self.subject
        for name, value in self.headers.items():
            message[name] = value
        message.set_content(self.text or "", cte="quoted-printable")
        if self.html is not None:
            message.add_alternative(self.html, subtype="html", cte="base64")
        return message.as_bytes(policy=SMTP)


class FeedbackCounts(Strict):
    """Provider events counted for a campaign (webhooks, DSNs)."""

    delivered: int = Field(0, ge=0)
    bounced: int = Field(0, ge=0)
    dropped: int = Field(0, ge=0)
    complained: int = Field(0, ge=0)
    unsubscribed: int = Field(0, ge=0)


class FeedbackSpec(FeedbackCounts):
    """What providers reported about the campaign's recipients so far (`feedback` rules)."""

    sent: int = Field(ge=0, description="Recipients relayed to the provider.")
    last_hour: FeedbackCounts = Field(
        default_factory=FeedbackCounts, description="Those of the events in the last hour."
    )

    def stats(self) -> FeedbackStats:
        """Return the feedback as the breaker reads it."""
        counts = self.model_dump(exclude={"sent", "last_hour"})
        return FeedbackStats(
            sent=self.sent,
            totals=Feedback(**counts),
            last_hour=Feedback(**self.last_hour.model_dump()),
        )


class CampaignSpec(Strict):
    """The campaign a fixture message belongs to, as the spool would know it."""

    key: str = "fixture"
    sender: str = "news@shop.test"
    category: str | None = None
    locale: str | None = None
    size: int | None = Field(None, ge=0, description="Declared size.")
    received: int | None = Field(None, ge=0, description="Recipients so far, this message's too.")
    recipients: list[str] = Field(default_factory=lambda: ["reader@example.org"])
    repeated: list[str] = Field(default_factory=list, description="Recipients it reached before.")
    sent_before: list[str] = Field(
        default_factory=list,
        description="Recipients who got this same content under another campaign lately.",
    )
    duplicates: int | None = Field(None, ge=0, description="Duplicate recipients so far.")
    segments: dict[str, list[str]] = Field(default_factory=dict, description="Loaded segments.")
    signoffs: list[str] = Field(default_factory=list, description="Identities that signed off.")
    date: datetime | Day = DEFAULT_DATE
    state: Literal["open", "held", "released"] = "open"
    feedback: FeedbackSpec | None = Field(
        None, description="Judge the feedback rules too, on what providers reported."
    )


class Expected(Strict):
    """A finding a case expects."""

    rule: str
    kind: str


class Case(Strict):
    """One policy test."""

    name: str = Field(min_length=1)
    message: Path | MessageSpec = Field(description="An .eml file (beside this one) or inline.")
    campaign: CampaignSpec = Field(default_factory=CampaignSpec)
    expect: list[Expected] | Literal["none"]


class FixtureFile(Strict):
    """One file of policy tests."""

    tests: list[Case] = Field(min_length=1)


@dataclass(frozen=True)
class Outcome:
    """What a case expected and what the policies said."""

    name: str
    where: str  # file:line
    expected: frozenset[tuple[str, str]]
    findings: tuple[Finding, ...]

    @property
    def got(self) -> frozenset[tuple[str, str]]:
        """The (rule, kind) pairs found."""
        return frozenset(f.signature for f in self.findings)

    @property
    def passed(self) -> bool:
        """Tell whether the policies said exactly what the case expected."""
        return self.got == self.expected


def load_cases(path: Path) -> Iterator[tuple[Case, str]]:
    """Read one fixture file; yield (case, file:line); raise ConfigError naming the key."""
    doc = read_yaml(path)
    try:
        parsed = FixtureFile.model_validate(doc.data)
    except ValidationError as exc:
        error = exc.errors()[0]
        raise doc.error([str(part) for part in error["loc"]], str(error["msg"])) from None
    for index, case in enumerate(parsed.tests):
        yield case, f"{path}:{doc.line_of(('tests', str(index)))}"


def fixture_files(directory: Path) -> list[Path]:
    """Return the fixture files of a policy directory: `tests/*.yaml` beside the policies."""
    return sorted((directory / "tests").glob("*.yaml"))


def run_case(
    policies: PolicySet, case: Case, where: str, folder: Path, *, registry: Registry
) -> Outcome:
    """Run one case through a fresh engine, as the gateway would for one message."""
    if isinstance(case.message, Path):
        content = (folder / case.message).read_bytes()
    else:
        content = case.message.content()
    findings = evaluate(policies, content, case.campaign, registry=registry)
    expected = (
        frozenset() if case.expect == "none" else frozenset((e.rule, e.kind) for e in case.expect)
    )
    return Outcome(case.name, where, expected, findings)


def timestamp(when: datetime | date) -> float:
    """Epoch seconds of a fixture date (a bare date is noon UTC)."""
    if not isinstance(when, datetime):
        when = datetime(when.year, when.month, when.day, 12, tzinfo=UTC)
    return (when if when.tzinfo else when.replace(tzinfo=UTC)).timestamp()


def evaluate(
    policies: PolicySet, content: bytes, spec: CampaignSpec, *, registry: Registry
) -> tuple[Finding, ...]:
    """Analyse and decide one message of the campaign `spec` describes."""
    engine = Engine(
        policies,
        registry=registry,
        clock=lambda: timestamp(spec.date),
        budget=1.0,
        scan_budget=5.0,
    )
    submission = submission_for(content, spec)
    submission = replace(submission, report=engine.analyse(submission))
    campaign = campaign_for(submission, spec)
    findings = engine.decide(campaign, submission, facts_for(engine, campaign, submission, spec))
    if spec.feedback is None:
        return findings.findings
    judged = engine.judge_feedback(campaign, spec.feedback.stats())
    return findings.findings + judged.findings


def submission_for(content: bytes, spec: CampaignSpec) -> Submission:
    """Build the submission a message of the campaign would be."""
    headers = HeaderBlock.parse(content)
    boxes = tuple(normalise_address(r) or r.lower() for r in spec.recipients)
    ref = CampaignRef(
        client="fixture",
        key=spec.key,
        implicit=False,
        sender=spec.sender,
        subject=headers.get("Subject") or "",
        declaration=declared(headers, spec),
    )
    return Submission(
        message_id="fixture",
        client="fixture",
        mail_from=spec.sender,
        rcpt_tos=tuple(spec.recipients),
        content=content,
        campaign=ref,
        received_at=timestamp(spec.date),
        mailboxes=boxes,
        hashes=tuple(address_hash(box) for box in boxes),
        header_fields=headers.fields,
    )


def declared(headers: HeaderBlock, spec: CampaignSpec) -> Declaration:
    """Return the declaration: the fixture's, else the message's declaration headers."""
    size = (headers.get("X-Declared-Size") or "").strip()
    return Declaration(
        size=spec.size if spec.size is not None else (int(size) if size.isdigit() else None),
        category=spec.category
        or (headers.get("X-Campaign-Category") or "").strip().lower()
        or None,
        locale=spec.locale or (headers.get("X-Campaign-Locale") or "").strip() or None,
    )


def campaign_for(submission: Submission, spec: CampaignSpec) -> Campaign:
    """Build the campaign as the spool would read it, this message counted in."""
    at = timestamp(spec.date)
    received = spec.received if spec.received is not None else len(spec.recipients)
    repeated = len([r for r in spec.recipients if r in spec.repeated])
    return Campaign(
        id="fixture",
        key=spec.key,
        client="fixture",
        implicit=False,
        state=CampaignState(spec.state),
        sender=spec.sender,
        subject=submission.campaign.subject,
        declared=submission.campaign.declaration,
        counters=Counters(received=received),
        created_at=at,
        updated_at=at,
        duplicates=spec.duplicates if spec.duplicates is not None else repeated,
    )


def facts_for(engine: Engine, campaign: Campaign, sub: Submission, spec: CampaignSpec) -> Facts:
    """Build what the spool would look up for this message from the fixture.

    Segments come from the fixture's `segments`, else from the files the policy set loads
    (as the gateway does at start); a segment in neither is missing.
    """
    needs = engine.needs(campaign)
    wanted = needs.segments | needs.sender_segments
    lists = {name: _segment(engine.policies, spec, name) for name in wanted}
    members = {
        name: frozenset(i for i, h in enumerate(sub.hashes) if h in found)
        for name in needs.segments
        if (found := lists[name]) is not None
    }
    senders = {
        name: frozenset(i for i, h in enumerate(sub.report.sender_hashes) if h in found)
        for name in needs.sender_segments
        if (found := lists[name]) is not None
    }
    return Facts(
        duplicates=tuple(i for i, r in enumerate(spec.recipients) if r in spec.repeated),
        members=members,
        segment_sizes={n: None if found is None else len(found) for n, found in lists.items()},
        tallies=dict.fromkeys(needs.tallies, 0),
        frequency={rule: (0,) * len(sub.rcpt_tos) for rule, _ in needs.frequency},
        content_sends={
            rule: tuple(int(r in spec.sent_before) for r in spec.recipients)
            for rule, _ in needs.content_sends
        },
        signoffs=frozenset(spec.signoffs),
        sender_members=senders,
    )


def _segment(policies: PolicySet, spec: CampaignSpec, name: str) -> set[int] | None:
    """Hashes of a segment's members: the fixture's list, the policy's file, or None."""
    if name in spec.segments:
        return {address_hash(normalise_address(a) or a.lower()) for a in spec.segments[name]}
    source = next((s for s in policies.segment_files if s.name == name), None)
    if source is None or not source.path.is_file():
        return None
    csv_format = source.column is not None or source.path.suffix.lower() == ".csv"
    reader = ListReader(csv_format=csv_format, column=source.column)
    return set(reader.feed(source.path.read_bytes()) + reader.finish())
