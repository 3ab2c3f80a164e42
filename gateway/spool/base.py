"""The Spool protocol: the one durable place every stage hands work through.

Backends (SQLite now, PostgreSQL for several replicas) implement this protocol; the
stages depend only on it. Every method that changes state is one transaction, and
`accept` returns only after that transaction is durable.
"""

from __future__ import annotations

from collections.abc import Sequence
from importlib import resources
from typing import Protocol

from gateway.model import (
    Admission,
    Campaign,
    Decide,
    Delivery,
    RecipientRecord,
    RecipientState,
    Settlement,
    Submission,
)


class Spool(Protocol):
    """Durable storage of campaigns, messages and recipients."""

    async def open(self) -> None:
        """Create or migrate the schema and recover work left by a crash."""

    async def close(self) -> None:
        """Finish pending commits and release the storage."""

    async def ping(self) -> None:
        """Raise `SpoolError` when the storage cannot answer."""

    async def accept(
        self, submission: Submission, decide: Decide, implicit_window: float
    ) -> Admission:
        """Store a message, its recipients and campaign counters in one durable commit.

        `decide` runs inside the transaction with the counters already updated, so the
        decision is exact under concurrent sessions. Raises `CampaignRejected` for mail
        of a rejected campaign and `SpoolError` when the commit fails.
        """

    async def claim(self, owner: str, now: float, limit: int, lease: float) -> list[Delivery]:
        """Lease up to `limit` due messages (with their due recipients) to `owner`."""

    async def settle(self, owner: str, settlements: Sequence[Settlement], now: float) -> int:
        """Record outcomes of leased recipients (compare-and-set on the lease); return rows changed."""

    async def release_leases(self, owner: str) -> int:
        """Give back every recipient `owner` still leases, unchanged, for another try."""

    async def next_due(self) -> float | None:
        """Return when the earliest claimable recipient becomes due, or None."""

    async def campaign(self, campaign_id: str) -> Campaign | None:
        """Return one campaign by ID."""

    async def find_campaign(self, client: str, key: str) -> Campaign | None:
        """Return the newest campaign with this client and key."""

    async def recipients(
        self,
        *,
        campaign_id: str | None = None,
        message_id: str | None = None,
        state: RecipientState | None = None,
        limit: int = 1000,
    ) -> list[RecipientRecord]:
        """Return recipient rows filtered by campaign, message or state."""

    async def count_by_state(self) -> dict[RecipientState, int]:
        """Return how many recipients sit in each state."""


def migrations() -> list[tuple[int, str]]:
    """Return the forward-only schema migrations as (version, SQL), in order."""
    folder = resources.files("gateway.spool") / "migrations"
    return sorted(
        (int(entry.name.split("_", 1)[0]), entry.read_text(encoding="utf-8"))
        for entry in folder.iterdir()
        if entry.name.endswith(".sql")
    )
