"""The transaction port: the storage primitives one admitting (or reviewing) transaction offers.

The stages hand `Spool.transact` a plain function of a `Tx`; the backend runs it inside
one durable transaction (SQLite: a unit of the writer's group commit; PostgreSQL: one
transaction holding the campaign's row lock) and answers only after the commit. The
primitives store and look up; what they mean (which campaign mail joins, what a
declaration conflict is, when a sign-off releases) is decided by the caller
(`gateway.admission.steps`, `gateway.review.signoffs`), so a second backend implements
this protocol and nothing of campaign semantics.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from gateway.model import (
    AuditEntry,
    Campaign,
    CampaignRef,
    Canary,
    Declaration,
    FeedbackStats,
    Finding,
    ReleaseScope,
    Signoff,
    Submission,
)
from gateway.states import CampaignState, RecipientState


@dataclass(frozen=True, slots=True)
class Hold:
    """What a hold records: when, by whom, for which rules, and the message that tripped it."""

    now: float
    actor: str
    rules: tuple[str, ...]
    sample_message_id: str | None = None
    incoming: int = 0  # recipients of the tripping message, stored right after the hold


@dataclass(frozen=True, slots=True)
class Joined:
    """What admission needs of the campaign new mail joins: which, its state, its declaration."""

    id: str
    state: CampaignState
    declared: Declaration


class Tx(Protocol):
    """Storage primitives inside one transaction; every call sees the earlier calls' writes."""

    # -- campaigns ------------------------------------------------------------------------

    def current_campaign(self, client: str, key: str, not_before: float | None) -> Joined | None:
        """Return the newest campaign with this key (created since `not_before`), locked."""
        ...

    def campaign(self, campaign_id: str) -> Campaign | None:
        """Return one campaign as this transaction sees it."""
        ...

    def manifest(self, client: str, key: str) -> Declaration | None:
        """Return the registered declaration for a key (the client's own first, then '*')."""
        ...

    def create_campaign(
        self, ref: CampaignRef, declared: Declaration, *, received: int, now: float, sample: str
    ) -> str:
        """Create an open campaign that has received `received` recipients; return its ID."""
        ...

    def count_in(self, campaign_id: str, received: int, declared: Declaration, now: float) -> None:
        """Add to a campaign's received count; fill declaration fields it has not set yet."""
        ...

    def add_duplicates(self, campaign_id: str, count: int) -> None:
        """Count recipients the campaign received more than once."""
        ...

    def merge_findings(self, campaign: Campaign, findings: Sequence[Finding]) -> None:
        """Store findings, merged with the campaign's by (rule, kind) with a count."""
        ...

    def hold(self, campaign: Campaign, hold: Hold) -> int | None:
        """Quarantine a campaign (compare-and-set); return recipients held, None if lost."""
        ...

    def release(
        self, campaign_id: str, actor: str, now: float, scope: ReleaseScope | None = None
    ) -> Campaign | None:
        """Queue held recipients again (all, or `scope`'s); all marks the campaign released."""
        ...

    def canary(self, campaign_id: str) -> Canary | None:
        """Return the campaign's latest canary release."""
        ...

    def lock_canary(self, campaign_id: str) -> Canary | None:
        """Return the campaign's latest canary release, locked until the commit."""
        ...

    def put_canary(self, canary: Canary) -> None:
        """Store a campaign's new canary in place of the one it had."""
        ...

    def update_canary(self, canary: Canary) -> None:
        """Record a canary's new state and times."""
        ...

    def audit(self, entry: AuditEntry) -> None:
        """Append an entry to the audit log, in this transaction."""
        ...

    def feedback(self, campaign: Campaign, now: float) -> FeedbackStats:
        """Return what providers reported about the campaign's recipients, as of `now`."""
        ...

    def event(self, campaign_id: str, now: float, event: str, actor: str, **details: Any) -> None:
        """Append a step to a campaign's timeline."""
        ...

    # -- look-ups for the rules -----------------------------------------------------------

    def resent(self, resend_key: bytes, since: float | None = None) -> tuple[str, str] | None:
        """Return (message ID, campaign ID) of the stored message with this resend key.

        `since`: only a message received since then (None: any still stored).
        """
        ...

    def seen(self, campaign_id: str, mailboxes: Iterable[str]) -> set[str]:
        """Return which of these mailboxes the campaign has already received."""
        ...

    def segment_members(self, name: str, hashes: Sequence[int]) -> tuple[int, set[int]] | None:
        """Return (size, members among `hashes`) of a live segment, or None if never loaded."""
        ...

    def tallies(self, campaign_id: str, names: Iterable[str] | None = None) -> dict[str, int]:
        """Return a campaign's running counts by name (all of them when `names` is None)."""
        ...

    def sends_since(self, rule: str, since: float, hashes: Sequence[int]) -> dict[int, int]:
        """Return, per recipient hash, how often a frequency rule counted it since `since`."""
        ...

    def signed(self, campaign_id: str) -> frozenset[str]:
        """Return the identities that signed off a campaign."""
        ...

    def signoffs(self, campaign_id: str) -> list[Signoff]:
        """Return every sign-off of a campaign, oldest first."""
        ...

    # -- writes of an admission -----------------------------------------------------------

    def add_tallies(self, campaign_id: str, deltas: Mapping[str, int]) -> None:
        """Add to a campaign's running counts."""
        ...

    def count_sends(self, rule: str, hashes: Sequence[int], at: float) -> None:
        """Remember that a frequency rule counted these recipients at `at`."""
        ...

    def store(
        self,
        sub: Submission,
        campaign_id: str,
        waiting: RecipientState,
        suppress: Mapping[int, str],
    ) -> None:
        """Store the message and a row per recipient (waiting, or suppressed by a rule)."""
        ...

    def add_signoff(self, signoff: Signoff) -> None:
        """Register (or replace) an identity's sign-off of a campaign."""
        ...
