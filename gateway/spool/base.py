"""The Spool protocol: the one durable place every stage hands work through.

Backends (SQLite embedded, PostgreSQL for several replicas) implement this protocol; the
stages depend only on it. Every method that changes state is one transaction, and
`accept` returns only after that transaction is durable.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from importlib import resources
from typing import Protocol, TypeVar

from gateway.model import (
    AuditEntry,
    Campaign,
    CampaignEvent,
    Delivery,
    Feedback,
    FeedbackEvent,
    FeedbackOutcome,
    FeedbackSample,
    Finding,
    Forward,
    ForwardState,
    Manifest,
    RecipientRecord,
    ReleaseScope,
    Segment,
    Settlement,
    SmtpUser,
    StoredMessage,
    Throttler,
    Token,
)
from gateway.spool.port import Tx
from gateway.states import CampaignState, RecipientState

T = TypeVar("T")

# How many held campaigns a gauge snapshot names: enough for any real incident, and a
# bound on the label values /metrics can carry.
HELD_NAMED_LIMIT = 50


@dataclass(frozen=True, slots=True)
class HeldCampaign:
    """A campaign waiting in quarantine, as the gauge snapshot names it."""

    id: str
    key: str
    client: str
    held_at: float


@dataclass(frozen=True, slots=True)
class SpoolGauges:
    """What the spool holds at one instant: the state /metrics exposes at scrape time.

    Read in one snapshot, so the numbers agree with each other and, being read from the
    spool rather than kept in memory, with the numbers before a restart.
    """

    campaigns_held: int
    oldest_held_at: float | None  # when the longest-waiting held campaign was held
    recipients: Mapping[RecipientState, int]  # every state, zero included
    relay_paused: bool
    held: tuple[HeldCampaign, ...]  # the longest-waiting first, at most the limit asked
    # Recipients waiting only because of a throttle, by the rule they wait for.
    throttled: Mapping[str, int] = field(default_factory=dict)
    # This process reports the spool-wide numbers. Replicas sharing one database each read
    # the same numbers; only the leader reports them, so an alert fires once, not per replica.
    leader: bool = True
    # The webhook outbox: batches waiting to be forwarded, dead letters, the oldest waiting.
    forwards_pending: int = 0
    forwards_dead: int = 0
    oldest_forward_queued_at: float | None = None

    def as_follower(self) -> SpoolGauges:
        """Return the same snapshot, marked as one another replica reports."""
        return replace(self, leader=False)

    @property
    def recipients_held(self) -> int:
        """Recipients waiting in quarantine."""
        return self.recipients.get(RecipientState.HELD, 0)


class Storage(Protocol):
    """The storage itself: its lifecycle and transactions of the port's primitives."""

    async def open(self) -> None:
        """Create or migrate the schema and recover work left by a crash."""

    async def attach(self) -> None:
        """Open the storage beside a gateway that may be running (the CLI's tools).

        Never migrates a schema or reclaims leases a running gateway owns; writes take
        the same locks the gateway's do.
        """

    async def close(self) -> None:
        """Finish pending commits and release the storage."""

    async def ping(self) -> None:
        """Raise `SpoolError` when the storage cannot answer."""

    async def transact(self, work: Callable[[Tx], T]) -> T:
        """Run `work` inside one durable transaction and return its result after the commit.

        `work` is a plain function of the transaction port (`gateway.spool.port.Tx`): the
        admission steps of one message, or a sign-off. When it raises, nothing it wrote
        is kept and the exception reaches the caller; `SpoolError` when the commit fails.
        """

    async def read(self, work: Callable[[Tx], T]) -> T:
        """Run the look-ups of `work` on a consistent read snapshot, beside the writer."""

    async def rehearse(self, work: Callable[[Tx], T]) -> T:
        """Run `work` as `transact` would, then roll it back: its result, nothing stored.

        A preflight runs a message's real admission this way, with the campaign's real
        counters and look-ups, and leaves the spool as it was.
        """


class Queue(Protocol):
    """What the relay needs: claims under leases, settlements, what is due."""

    async def claim(
        self,
        owner: str,
        now: float,
        limit: int,
        lease: float,
        *,
        throttler: Throttler | None = None,
    ) -> list[Delivery]:
        """Lease up to `limit` due messages (with their due recipients) to `owner`.

        Recipients whose lease ran out by `now` are given back first, so any worker takes
        over the work of one that died without its process restarting. With a
        `throttler`, a throttled campaign gives only what its buckets allow now; the rest
        waits until they allow it (`sql_throttle`), and `throttler.waited` hears of it
        once the claim has committed.
        """

    async def throttle_tats(self, buckets: Sequence[str]) -> dict[str, float]:
        """Return the stored TAT of each of these throttle buckets that has one."""

    async def throttle_waiting(self, campaign_id: str) -> dict[str, int]:
        """Return how many of a campaign's recipients wait now only for a throttle, by rule."""

    async def settle(self, owner: str, settlements: Sequence[Settlement], now: float) -> int:
        """Record outcomes of leased recipients (compare-and-set on the lease); return rows changed."""

    async def release_leases(self, owner: str, now: float) -> int:
        """Give back every recipient `owner` still leases, unchanged, for another try."""

    async def renew_leases(self, owner: str, recipient_ids: Sequence[int], until: float) -> int:
        """Extend `owner`'s leases on these recipients to `until`; return how many it holds."""

    async def next_due(self) -> float | None:
        """Return when the earliest claimable recipient becomes due, or None."""

    async def count_by_state(self) -> dict[RecipientState, int]:
        """Return how many recipients sit in each state."""

    async def gauges(self, limit: int = HELD_NAMED_LIMIT) -> SpoolGauges:
        """Return held campaigns, recipients by state and the pause flag in one snapshot."""


class Review(Protocol):
    """Campaigns, their messages and recipients as people review them, and their actions."""

    async def campaign(self, campaign_id: str) -> Campaign | None:
        """Return one campaign by ID."""

    async def find_campaign(self, client: str, key: str) -> Campaign | None:
        """Return the newest campaign with this client and key."""

    async def campaigns(
        self,
        *,
        state: CampaignState | None = None,
        limit: int = 50,
        before: str | None = None,
        key: str | None = None,
    ) -> list[Campaign]:
        """Return campaigns newest first; `before` is the last ID of the previous page.

        `key` keeps the campaigns whose key contains it, ignoring case (the console's search).
        """

    async def events(self, campaign_id: str) -> list[CampaignEvent]:
        """Return a campaign's timeline, oldest first."""

    async def recipients(
        self,
        *,
        campaign_id: str | None = None,
        message_id: str | None = None,
        state: RecipientState | None = None,
        limit: int = 1000,
        after: int = 0,
    ) -> list[RecipientRecord]:
        """Return recipient rows by ID order, filtered, starting after row `after`."""

    async def message(self, message_id: str) -> StoredMessage | None:
        """Return one spooled message."""

    async def retained(
        self, since: float, after: str = "", limit: int = 500
    ) -> list[tuple[StoredMessage, tuple[str, ...]]]:
        """Return messages received since `since` whose bodies are kept, oldest first.

        Paged by ID: `after` is the last ID of the previous page. Each comes with its
        recipients' addresses, in the order they were sent (`policies replay`).
        """

    # Each change below takes the operator's `audit` entry, if any, and appends it in the
    # change's own transaction: a decision is never made without its record, nor recorded
    # without being made.

    async def active_canaries(self) -> list[str]:
        """Return the campaigns whose canary is still sending or observing, oldest first."""

    async def hold(
        self, campaign_id: str, finding: Finding, now: float, *, audit: AuditEntry | None = None
    ) -> Campaign | None:
        """Hold a campaign by hand with `finding`; holding a held campaign changes nothing."""

    async def release(
        self,
        campaign_id: str,
        actor: str,
        now: float,
        scope: ReleaseScope | None = None,
        *,
        audit: AuditEntry | None = None,
    ) -> Campaign | None:
        """Queue held recipients again (compare-and-set, so never twice); see sql_review."""

    async def reject(
        self, campaign_id: str, actor: str, now: float, *, audit: AuditEntry | None = None
    ) -> Campaign | None:
        """Discard what has not gone out; later mail for the campaign is refused."""

    async def approve_release(
        self,
        campaign_id: str,
        actor: str,
        now: float,
        *,
        audit: Callable[[list[str]], AuditEntry | None] | None = None,
        details: Mapping[str, object] | None = None,
    ) -> list[str]:
        """Record an approval of a pending release; raise `Conflict` for a repeat approver.

        `details` (the approver's reason, the recipients asked for) go on the approval's
        timeline step, where the next operator reads who asked and why.
        """

    async def put_manifest(self, manifest: Manifest, *, audit: AuditEntry | None = None) -> None:
        """Register a declaration that wins over headers."""

    async def set_relay_paused(
        self, paused: bool, actor: str, reason: str, now: float, *, audit: AuditEntry | None = None
    ) -> None:
        """Pause or resume relaying for every worker sharing this spool."""

    async def relay_paused(self) -> bool:
        """Tell whether the relay is paused."""


class Segments(Protocol):
    """Audience segments: versioned loads published at once, and frequency-cap history."""

    async def segment_begin(self, name: str, now: float) -> int:
        """Start loading a new version of a segment; return its version number."""

    async def segment_add(self, version: int, hashes: Sequence[int]) -> int:
        """Add members to a loading version; return how many were new."""

    async def segment_publish(self, segment: Segment) -> int | None:
        """Make a loaded version live in one transaction; return the version it replaced."""

    async def segment_abandon(self, version: int) -> None:
        """Drop a load that failed."""

    async def segments(self) -> list[Segment]:
        """Return every live segment."""

    async def segment(self, name: str) -> Segment | None:
        """Return one live segment."""

    async def segment_page(self, version: int, after: int | None, limit: int = 10_000) -> list[int]:
        """Return up to `limit` member hashes of a segment version in order, after `after`."""

    async def purge_segments(self) -> int:
        """Delete a bounded chunk of retired segment versions; return rows removed (0: done)."""

    async def prune_frequency(self, before: float) -> int:
        """Forget frequency-cap sends older than `before`."""

    async def retire_bodies(self, before: float, now: float, limit: int = 500) -> int:
        """Empty the bodies of up to `limit` done messages received before `before`.

        A message is done when none of its recipients may still go out (queued, sending,
        deferred or held): held mail is never retired. Returns how many were retired.
        """


class Access(Protocol):
    """Who may act (API tokens and SMTP users, as hashes) and what they did (the audit log)."""

    async def append_audit(self, entry: AuditEntry) -> int:
        """Append to the audit log (durably) and return the entry's ID."""

    async def audit_log(self, limit: int = 50, before: int | None = None) -> list[AuditEntry]:
        """Return audit entries newest first; `before` is the last ID of the previous page."""

    async def token_by_hash(self, sha256: str) -> Token | None:
        """Return the live API token with this SHA-256, if any."""

    async def add_token(self, token: Token) -> None:
        """Store a token's hash; raise `Conflict` when its name is taken (even revoked)."""

    async def tokens(self) -> list[Token]:
        """Return every stored token, revoked ones included, by name."""

    async def revoke_token(self, name: str, now: float) -> bool:
        """Revoke a token by name; False when there is no live token of that name."""

    async def add_user(self, user: SmtpUser) -> None:
        """Store an SMTP user; raise `Conflict` when its name is taken."""

    async def smtp_user(self, name: str) -> SmtpUser | None:
        """Return the SMTP user of this name, if any."""

    async def smtp_users(self) -> list[SmtpUser]:
        """Return every SMTP user, by name."""

    async def remove_user(self, name: str) -> bool:
        """Remove an SMTP user; False when there is none of that name."""


class Feedbacks(Protocol):
    """Provider feedback: events counted per campaign once each, and the forward outbox."""

    async def record_feedback(
        self, source: str, events: Sequence[FeedbackEvent], now: float, *, body: bytes | None
    ) -> FeedbackOutcome:
        """Count a batch's new events per campaign and queue them to forward, in one commit.

        Events whose ID (per `source`) was recorded before are skipped. `body` is the
        batch as received, forwarded as it is when every event is new; otherwise the new
        events alone are forwarded, as a JSON array in their order. None: nothing is
        forwarded (DSNs).
        """

    async def feedback(
        self, campaign_id: str, since: float | None = None, until: float | None = None
    ) -> Feedback:
        """Return a campaign's feedback, of events that happened in [since, until) if given.

        Counted in minute buckets by the event's own time: a window is exact to the minute.
        """

    async def feedback_samples(self, campaign_id: str) -> list[FeedbackSample]:
        """Return the few events kept as evidence of a campaign's feedback, by kind."""

    async def unattributed_feedback(self) -> dict[str, int]:
        """Return the counts by kind of events that matched no recipient."""

    async def claim_forwards(
        self, owner: str, now: float, limit: int, lease: float
    ) -> list[Forward]:
        """Lease up to `limit` due batches (with bodies) to `owner`, oldest first."""

    async def settle_forward(
        self,
        owner: str,
        forward_id: int,
        state: ForwardState,
        now: float,
        *,
        next_attempt_at: float = 0.0,
        error: str = "",
    ) -> bool:
        """Record an attempt of a leased batch (compare-and-set on the lease)."""

    async def forwards(
        self, *, state: ForwardState | None = None, limit: int = 50, before: int | None = None
    ) -> list[Forward]:
        """Return batches newest first; `before` is the last ID of the previous page."""

    async def forward(self, forward_id: int) -> Forward | None:
        """Return one batch, without its body."""

    async def retry_forward(
        self, forward_id: int, now: float, *, audit: AuditEntry | None = None
    ) -> Forward | None:
        """Queue a dead batch again now (its maximum age from now); None when it is not dead."""

    async def next_forward_due(self) -> float | None:
        """Return when the earliest pending batch is due, or None."""

    async def prune_feedback(self, before: float) -> int:
        """Forget event IDs seen and batches delivered before `before`."""


class Spool(Storage, Queue, Review, Segments, Access, Feedbacks, Protocol):
    """Durable storage of campaigns, messages and recipients: every part in one.

    Stages depend on the part they use (the relay on `Queue`, the segment loader on
    `Segments`, authentication on `Access`); the service hands them the whole spool.
    """


def migrations(backend: str) -> list[tuple[int, str]]:
    """Return a backend's forward-only schema migrations as (version, SQL), in order."""
    folder = resources.files("gateway.spool") / "migrations" / backend
    return sorted(
        (int(entry.name.split("_", 1)[0]), entry.read_text(encoding="utf-8"))
        for entry in folder.iterdir()
        if entry.name.endswith(".sql")
    )
