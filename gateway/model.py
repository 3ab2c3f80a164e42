"""Domain vocabulary shared by every layer: IDs and the records stages exchange.

Pure data only. Nothing here does I/O, reads settings or knows about SMTP sockets; the
stages pass these records (and IDs) to each other through the spool, never live objects.
"""

from __future__ import annotations

import base64
import enum
import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from gateway.states import CampaignState, CanaryState, RecipientState

_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
# Names the provider-side template of a message sent through the HTTP send API (SendGrid's
# `template_id`): the ingress writes it, the `provider_template` rule reads it.
TEMPLATE_HEADER = "X-Sendbrake-Template-Id"
TEMPLATE_DATA_HEADER = "X-Sendbrake-Template-Data"  # its dynamic_template_data, as JSON
# How relayed mail names its message and campaign, so that what the provider reports later
# (a DSN quoting the headers, a webhook event) can be attributed: headers on SMTP and
# capture, custom args on the SendGrid upstream (which its events echo with `email`).
MESSAGE_HEADER, CAMPAIGN_HEADER = "X-Sendbrake-Message", "X-Sendbrake-Campaign"
MESSAGE_ARG, CAMPAIGN_ARG = "sendbrake_message", "sendbrake_campaign"


def new_id(now: float | None = None) -> str:
    """Return a 26-character, time-sortable, URL-safe ID (ULID layout)."""
    millis = int((time.time() if now is None else now) * 1000)
    value = ((millis & _MILLIS) << 80) | int.from_bytes(os.urandom(10), "big")
    # 20 bytes are 32 base-32 digits; the first 6 are the zeros above the ULID's 130 bits.
    return base64.b32encode(value.to_bytes(20, "big")).decode("ascii")[6:].translate(_TO_CROCKFORD)


_MILLIS = (1 << 50) - 1  # what 26 digits hold of the time above the 80 random bits
_TO_CROCKFORD = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ234567", _CROCKFORD)


@dataclass(frozen=True, slots=True)
class ContentHit:
    """One thing a content detector found: what, where (subject, html, link, ...), the text."""

    what: str
    where: str
    fragment: str
    detail: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class RuleScan:
    """What one content rule's detector found in one message, or why it could not look."""

    hits: tuple[ContentHit, ...] = ()
    elapsed: float = 0.0  # CPU seconds of the scanning thread (waiting for a CPU is not counted)
    error: str | None = None


@dataclass(frozen=True, slots=True)
class ContentReport:
    """Per-message content findings, made before the spool transaction.

    `analysed` is False when nothing looked at the content (no content rules, or the
    analysis never ran); `error` says why the analysis as a whole failed (a crash or a
    timeout), which holds the campaign.
    """

    analysed: bool = False
    error: str | None = None
    scans: Mapping[str, RuleScan] = field(default_factory=dict)  # by rule id
    senders: tuple[str, ...] = ()  # normalised From, Sender and Reply-To addresses
    sender_hashes: tuple[int, ...] = ()  # their 64-bit hashes, for segment look-ups
    fingerprint: str = ""  # the normalised subject and body's digest (`Document.fingerprint`)
    elapsed: float = 0.0  # seconds, decoding and every detector


@dataclass(frozen=True, slots=True)
class Declaration:
    """What the sender says the send is: headers or a registered manifest."""

    size: int | None = None
    category: str | None = None
    locale: str | None = None


@dataclass(frozen=True, slots=True)
class CampaignRef:
    """Which campaign a message belongs to, before the spool gives it an ID."""

    client: str
    key: str
    implicit: bool
    sender: str
    subject: str
    declaration: Declaration


@dataclass(frozen=True, slots=True)
class Inbound:
    """A message as an ingress received it, before campaign resolution."""

    ingress: str  # "smtp" or "http"
    client: str  # authenticated user, or the allowed network the peer is in
    mail_from: str
    rcpt_tos: tuple[str, ...]
    content: bytes
    trace: str = ""  # a Received: line for the ingress to add, or empty
    # The subject an implicit campaign is keyed by, when the ingress knows it better than
    # the Subject header: the HTTP send API's, before substitutions made it per recipient.
    subject: str | None = None
    # How the ingress itself tells a client's retry (the HTTP send API: a digest of the
    # request), and for how long after the first one a retry is one; None: the admitter's
    # own key (client, envelope and bytes with a Message-ID) for as long as mail is kept.
    resend_key: bytes | None = None
    resend_window: float | None = None


@dataclass(frozen=True, slots=True)
class Submission:
    """One accepted SMTP transaction (or API send), ready for the spool."""

    message_id: str
    client: str
    mail_from: str
    rcpt_tos: tuple[str, ...]
    content: bytes  # as it will be relayed: declaration headers stripped, Date etc. added
    campaign: CampaignRef
    received_at: float
    ingress: str = "smtp"
    # Per recipient, in rcpt_tos order: the normalised address and its 64-bit hash, which
    # is how duplicates and segment membership are looked up.
    mailboxes: tuple[str, ...] = ()
    hashes: tuple[int, ...] = ()
    # What the content rules found, analysed off the event loop before the spool commit.
    report: ContentReport = field(default_factory=ContentReport)
    # The header block of `content` as the admitter parsed it, once: (lower-cased name, raw
    # field with its line end); and the digest of what content decoding reads. Empty when
    # a submission is built without them (tests): readers then parse `content` themselves.
    header_fields: tuple[tuple[str, bytes], ...] = ()
    content_key: bytes = b""
    # Digest of the transaction as received (client, envelope, bytes) when the message has
    # its own Message-ID: a platform's retry after a lost 250 has the same (`Tx.resent`).
    resend_key: bytes | None = None
    resend_since: float | None = None  # a retry counts only of a message received since


@dataclass(frozen=True, slots=True)
class Finding:
    """One policy observation with its evidence (DESIGN.md §3)."""

    rule: str
    kind: str
    mode: str
    message: str
    evidence: Mapping[str, Any] = field(default_factory=dict)
    policy_version: str = ""
    at: float = 0.0
    count: int = 1  # how many messages raised it; findings merge by (rule, kind)

    @property
    def signature(self) -> tuple[str, str]:
        """What a release acknowledges: the rule and the kind of problem."""
        return (self.rule, self.kind)


@dataclass(frozen=True, slots=True)
class Counters:
    """Per-campaign recipient counters (DESIGN.md §10)."""

    received: int = 0
    queued: int = 0
    held: int = 0
    relayed: int = 0
    deferred: int = 0
    failed: int = 0
    discarded: int = 0
    suppressed: int = 0
    escaped: int = 0


# What a provider reports back about recipients, as counted (webhook events, DSNs).
FEEDBACK_KINDS = ("delivered", "bounced", "dropped", "complained", "unsubscribed")


@dataclass(frozen=True, slots=True)
class Feedback:
    """What the provider reported about a campaign's recipients: events counted once each."""

    delivered: int = 0
    bounced: int = 0
    dropped: int = 0
    complained: int = 0
    unsubscribed: int = 0

    @classmethod
    def of(cls, counts: Mapping[str, int]) -> Feedback:
        """Build from counts by kind (kinds not in FEEDBACK_KINDS are ignored)."""
        return cls(**{kind: int(counts.get(kind, 0)) for kind in FEEDBACK_KINDS})


@dataclass(frozen=True, slots=True)
class Campaign:
    """A campaign as stored: identity, declaration, state and counters."""

    id: str
    key: str
    client: str
    implicit: bool
    state: CampaignState
    sender: str
    subject: str
    declared: Declaration
    counters: Counters
    created_at: float
    updated_at: float
    findings: tuple[Finding, ...] = ()
    acknowledged: frozenset[tuple[str, str]] = frozenset()  # (rule, kind) a release accepted
    duplicates: int = 0  # recipients received more than once in this campaign
    sample_message_id: str | None = None
    held_at: float | None = None
    # What the provider reported back (webhook events, DSNs); read beside the campaign.
    feedback: Feedback = field(default_factory=Feedback)


@dataclass(frozen=True, slots=True)
class Needs:
    """What the rules that select a campaign need the spool to look up before deciding."""

    segments: frozenset[str] = frozenset()  # membership of this message's recipients
    tallies: frozenset[str] = frozenset()  # per-campaign running counts, read before this message
    frequency: tuple[tuple[str, float], ...] = ()  # (rule id, window seconds) of frequency caps
    # (rule id, window seconds) of rules counting sends of this content to each recipient.
    content_sends: tuple[tuple[str, float], ...] = ()
    signoffs: bool = False  # the identities that signed off this campaign
    sender_segments: frozenset[str] = frozenset()  # membership of this message's senders


@dataclass(frozen=True, slots=True)
class Facts:
    """What the spool knows about a submission inside the admitting transaction."""

    # Indexes into rcpt_tos of recipients already in the campaign or repeated within it.
    duplicates: tuple[int, ...] = ()
    # (field, campaign's value, this message's value) where its declaration headers disagree.
    conflicts: tuple[tuple[str, Any, Any], ...] = ()
    # Segment name -> indexes into rcpt_tos of its members; absent for a missing segment.
    members: Mapping[str, frozenset[int]] = field(default_factory=dict)
    # Segment name -> number of addresses, or None when no such segment has been loaded.
    segment_sizes: Mapping[str, int | None] = field(default_factory=dict)
    # Tally name -> its value before this message.
    tallies: Mapping[str, int] = field(default_factory=dict)
    # Frequency rule id -> per recipient, how often it was sent to within the window.
    frequency: Mapping[str, tuple[int, ...]] = field(default_factory=dict)
    # Content-send rule id -> per recipient, how often this content reached it in the window.
    content_sends: Mapping[str, tuple[int, ...]] = field(default_factory=dict)
    # Protected identities whose sign-off is registered for the campaign.
    signoffs: frozenset[str] = frozenset()
    # Segment name -> indexes into report.senders of its members; absent when missing.
    sender_members: Mapping[str, frozenset[int]] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Verdict:
    """What campaign-level checks decided for one incoming message."""

    hold: bool = False
    findings: tuple[Finding, ...] = ()
    suppress: Mapping[int, str] = field(default_factory=dict)  # rcpt index -> rule dropping it
    tallies: Mapping[str, int] = field(default_factory=dict)  # increments to store
    frequency: tuple[str, ...] = ()  # frequency rules that count this message's recipients
    content_sends: tuple[str, ...] = ()  # rules that count its content's sends per recipient


class Decider(Protocol):
    """Campaign-level decisions, run inside the spool transaction that admits a message.

    The spool asks what to look up (`needs`), looks it up, updates the campaign's
    counters, and then asks for the verdict, all in one transaction: the counter update
    and the decision are one atomic step.
    """

    def analyse(self, submission: Submission) -> ContentReport:
        """Read one message's content; pure and CPU-bound, so callers run it off the loop."""
        ...

    def recall(self, submission: Submission) -> ContentReport | None:
        """Return the content report when it needs no reading (quick, on the loop), else None."""
        ...

    def needs(self, campaign: Campaign) -> Needs:
        """Say what `decide` will need for mail of this campaign."""
        ...

    def decide(self, campaign: Campaign, submission: Submission, facts: Facts) -> Verdict:
        """Decide about one message."""
        ...


class Analysers(Protocol):
    """Runs a decider's content analysis off the event loop: threads, or child processes."""

    async def open(self) -> None:
        """Start what analyses (a no-op where nothing needs starting)."""

    async def analyse(self, decider: Decider, submission: Submission) -> ContentReport:
        """Return the report, or raise `Unanalysed` (a timeout) or the analysis's exception."""
        ...

    async def close(self) -> None:
        """Stop; a stuck analysis is abandoned."""


@dataclass(frozen=True, slots=True)
class Admission:
    """The spool's answer once a submission is durable."""

    message_id: str
    campaign_id: str
    held: bool  # this message waits in quarantine
    tripped: bool = False  # this message put its campaign on hold
    findings: tuple[Finding, ...] = ()  # what the rules said about this message
    held_recipients: int = 0  # when tripped: recipients the hold quarantined, this one's included
    resent: bool = False  # a retry of a transaction stored before: nothing new was stored


class Outcome(enum.StrEnum):
    """How the upstream answered for one recipient, classified where it happened."""

    DELIVERED = "delivered"
    TRANSIENT = "transient"
    PERMANENT = "permanent"


@dataclass(frozen=True, slots=True)
class RecipientResult:
    """The upstream's answer for one recipient of one transaction."""

    address: str
    outcome: Outcome
    reply: str
    # Seconds from the answer before a retry may be tried, when the provider said so
    # (HTTP `Retry-After`); the relay defers a transient result at least that long.
    retry_after: float | None = None


@dataclass(frozen=True, slots=True)
class DeliveryIds:
    """Which message and campaign a delivery is of, for the upstream to tag what it sends."""

    message_id: str
    campaign_id: str


@dataclass(frozen=True, slots=True)
class Delivery:
    """A message claimed for relay with the recipients this worker leased."""

    message_id: str
    campaign_id: str
    mail_from: str
    content: bytes
    recipients: tuple[tuple[int, str], ...]  # (recipient row id, address)
    attempts: int
    queued_at: float  # when these recipients entered the queue; relay.max_age counts from here

    @property
    def ids(self) -> DeliveryIds:
        """The message's and campaign's ids, as the upstream is given them."""
        return DeliveryIds(self.message_id, self.campaign_id)


@dataclass(frozen=True, slots=True)
class Throttle:
    """A relay throttle in force for a campaign: one GCRA bucket and its rate.

    `bucket` names the budget it draws on; campaigns a rule's scope puts together (one
    client's, or all of them) share it, across replicas, through the spool. It counts
    recipients handed to the upstream: a message to one recipient is one.
    """

    rule: str
    bucket: str
    per_second: float
    burst: int
    scope: str  # campaign | client | global


@dataclass(frozen=True, slots=True)
class ThrottleWait:
    """Recipients of one campaign a claim left waiting because of a throttle."""

    campaign_id: str
    rule: str  # the rule whose bucket made them wait longest
    recipients: int  # newly waiting (a recipient already waiting is not counted again)
    until: float  # when the first of them may go
    first: bool  # the campaign had nothing waiting on a throttle before this claim


class Throttler(Protocol):
    """What the relay tells a claim about throttles: which apply, and what waited.

    `throttles` runs inside the claim's transaction (pure and quick); `waited` runs once the
    claim has committed, with what it left waiting.
    """

    def throttles(self, campaign: Campaign) -> Sequence[Throttle]:
        """Return the throttles in force for `campaign` (none: it is not throttled)."""
        ...

    def waited(self, waits: Sequence[ThrottleWait]) -> None:
        """Report recipients a committed claim left waiting."""
        ...


@dataclass(frozen=True, slots=True)
class Settlement:
    """The relay stage's decision for one leased recipient."""

    recipient_id: int
    state: RecipientState
    reply: str
    next_attempt_at: float = 0.0


@dataclass(frozen=True, slots=True)
class RecipientRecord:
    """One recipient row as the spool holds it (API and tests read these)."""

    id: int
    message_id: str
    campaign_id: str
    address: str
    state: RecipientState
    attempts: int
    next_attempt_at: float
    last_reply: str
    updated_at: float


@dataclass(frozen=True, slots=True)
class StoredMessage:
    """A spooled message with its envelope, for inspection."""

    id: str
    campaign_id: str
    client: str
    mail_from: str
    content: bytes  # empty once retired
    ingress: str
    received_at: float
    retired_at: float | None = None  # when spool.retention emptied its body


@dataclass(frozen=True, slots=True)
class Signoff:
    """One identity's approval of one campaign, as registered over the API."""

    campaign_id: str
    identity: str
    actor: str  # the token that registered it
    reason: str
    at: float
    on_behalf: bool = False  # an admin recorded it for the identity


@dataclass(frozen=True, slots=True)
class ReleaseScope:
    """Which held recipients a release queues again: all, the oldest N, a segment's."""

    max_recipients: int | None = None
    only_segment: str | None = None


@dataclass(frozen=True, slots=True)
class FeedbackStats:
    """A campaign's provider feedback as the circuit breaker reads it.

    `sent` is the denominator of every rate: recipients handed to the provider (the
    campaign's `relayed`), which providers that never report deliveries still have.
    `samples` are a few events per kind (FEEDBACK_KINDS), as evidence.
    """

    sent: int
    totals: Feedback = field(default_factory=Feedback)
    last_hour: Feedback = field(default_factory=Feedback)
    samples: Mapping[str, tuple[Mapping[str, Any], ...]] = field(default_factory=dict)

    def rate(self, kind: str) -> float:
        """Return events of this kind per recipient sent (0 before anything was sent)."""
        return getattr(self.totals, kind) / self.sent if self.sent else 0.0


@dataclass(frozen=True, slots=True)
class Canary:
    """A release in two steps: a slice of the held recipients first, then the rest.

    The rest follows once the slice's feedback stayed quiet for `observe` seconds after
    the slice went out.
    """

    campaign_id: str
    recipients: int  # the slice
    observe: float
    actor: str
    reason: str
    started_at: float
    state: CanaryState = CanaryState.SENDING
    sent_at: float | None = None  # when the last recipient of the slice settled
    decided_at: float | None = None

    @property
    def decide_at(self) -> float | None:
        """When the rest is released if nothing goes wrong (None while the slice sends)."""
        return None if self.sent_at is None else self.sent_at + self.observe


@dataclass(frozen=True, slots=True)
class Manifest:
    """A declaration registered before sending; it wins over declaration headers."""

    client: str  # "*" applies to every client
    key: str
    declaration: Declaration
    created_by: str
    updated_at: float


@dataclass(frozen=True, slots=True)
class CampaignEvent:
    """One step of a campaign's timeline."""

    at: float
    event: str
    actor: str
    details: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class AuditEntry:
    """One mutating API call, allowed or refused."""

    at: float
    actor: str
    action: str
    target: str
    reason: str
    outcome: str  # "ok", "refused", "pending"
    details: Mapping[str, Any] = field(default_factory=dict)
    id: int = 0


class Role(enum.StrEnum):
    """What an API token may do."""

    VIEWER = "viewer"
    OPERATOR = "operator"
    ADMIN = "admin"
    SUBMITTER = "submitter"


@dataclass(frozen=True, slots=True)
class Token:
    """An API token's identity; the secret itself is never stored."""

    name: str
    sha256: str
    roles: frozenset[Role]
    identity: str | None = None
    created_at: float = 0.0
    revoked_at: float | None = None


@dataclass(frozen=True, slots=True)
class SmtpUser:
    """An SMTP AUTH login: the tenant its mail belongs to. Only a salted hash is stored."""

    name: str
    password_hash: str  # argon2id, in its own self-describing format
    sender_domains: tuple[str, ...] = ()  # domains MAIL FROM may use; empty: any
    created_at: float = 0.0


@dataclass(frozen=True, slots=True)
class Segment:
    """A named audience segment as stored: its live version and how it was loaded."""

    name: str
    version: int
    size: int  # distinct addresses
    lines: int
    invalid: int
    source: str  # "file:/path" or "upload"
    digest: str | None
    loaded_by: str
    loaded_at: float


# -- provider feedback (webhook events, DSNs) ------------------------------------------------


@dataclass(frozen=True, slots=True)
class FeedbackEvent:
    """One provider event or report, parsed, before attribution.

    `event_id` is unique per source (SendGrid's `sg_event_id`, a digest of a DSN's
    recipient part): a provider retrying a batch is counted once. `kind` is one of
    FEEDBACK_KINDS, or None for events that are forwarded but not counted (open, click).
    """

    event_id: str
    event: str  # the provider's own name: delivered, bounce, spamreport, failed, ...
    kind: str | None
    recipient: str  # the comparable (normalised) address
    message_id: str  # the gateway's message ID the provider echoed, or ""
    at: float  # when it happened, by the provider's clock
    evidence: Mapping[str, Any] = field(default_factory=dict)  # a few fields kept as a sample
    raw: bytes = b""  # the event as received (JSON), to forward


@dataclass(frozen=True, slots=True)
class FeedbackOutcome:
    """What recording a batch of events did."""

    received: int  # events in the batch
    new: int  # not seen before (the rest are a provider's retry)
    counted: Mapping[str, int]  # new attributed events by kind
    unattributed: int  # new events of a counted kind that match no recipient
    uncounted: int  # new events of kinds forwarded but not counted (open, click, delayed)
    forward_id: int | None  # the outbox row that will forward the new events, if any
    campaigns: tuple[str, ...] = ()  # campaigns new events were counted for, to judge


@dataclass(frozen=True, slots=True)
class FeedbackSample:
    """One event kept as evidence of a campaign's feedback (a few per kind)."""

    kind: str
    at: float
    recipient: str
    message_id: str
    evidence: Mapping[str, Any]


class ForwardState(enum.StrEnum):
    """Where a forwarded webhook batch is: pending -> delivered | dead (dead -> pending by hand)."""

    PENDING = "pending"
    DELIVERED = "delivered"
    DEAD = "dead"


@dataclass(frozen=True, slots=True)
class Forward:
    """One batch of provider events on its way to the platform's webhook URL."""

    id: int
    source: str  # "sendgrid"
    state: ForwardState
    events: int
    attempts: int
    received_at: float
    queued_at: float  # the maximum age counts from here (receipt, or a retry by hand)
    next_attempt_at: float
    last_error: str
    updated_at: float
    body: bytes = b""  # only when claimed for sending
