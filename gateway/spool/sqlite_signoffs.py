"""SQLite statements of sign-offs: a protected identity approving a campaign.

Registering a sign-off and, when it was all a held campaign waited for, releasing it
happen in one transaction (the release is the usual compare-and-set, so it never queues a
recipient twice). Which identities a campaign needs is read from the tallies the
signature rule keeps (`gateway.review.signoffs`), so it covers every message, not only the last.
"""

from __future__ import annotations

import sqlite3

from gateway.errors import Conflict
from gateway.model import Campaign, CampaignState, Signoff
from gateway.review.signoffs import cleared, identity_of_tally
from gateway.spool.sqlite_queue import add_event, campaign_by_id
from gateway.spool.sqlite_review import release


def signed(conn: sqlite3.Connection, campaign_id: str) -> frozenset[str]:
    """Identities that signed off the campaign."""
    return frozenset(
        identity
        for (identity,) in conn.execute(
            "SELECT identity FROM signoffs WHERE campaign_id = ?", (campaign_id,)
        )
    )


def required(conn: sqlite3.Connection, campaign_id: str) -> frozenset[str]:
    """Identities whose missing sign-off the signature rule found in the campaign's mail."""
    rows = conn.execute(
        "SELECT name FROM campaign_tallies WHERE campaign_id = ? AND name LIKE 'signoff:%'"
        " AND value > 0",
        (campaign_id,),
    )
    return frozenset(i for (name,) in rows if (i := identity_of_tally(name)) is not None)


def signoffs(conn: sqlite3.Connection, campaign_id: str) -> list[Signoff]:
    """Every sign-off of a campaign, oldest first."""
    return [
        Signoff(campaign_id, identity, actor, reason, at, bool(on_behalf))
        for identity, actor, reason, on_behalf, at in conn.execute(
            "SELECT identity, actor, reason, on_behalf, at FROM signoffs WHERE campaign_id = ?"
            " ORDER BY at, identity",
            (campaign_id,),
        )
    ]


def add_signoff(conn: sqlite3.Connection, signoff: Signoff) -> Campaign | None:
    """Register a sign-off; release the campaign when it was the last thing holding it."""
    campaign = campaign_by_id(conn, signoff.campaign_id)
    if campaign is None:
        return None
    if campaign.state is CampaignState.REJECTED:
        raise Conflict(f"campaign {campaign.id} is rejected; a sign-off cannot bring it back")
    conn.execute(
        "INSERT INTO signoffs (campaign_id, identity, actor, reason, on_behalf, at)"
        " VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (campaign_id, identity) DO UPDATE SET"
        " actor = excluded.actor, reason = excluded.reason, on_behalf = excluded.on_behalf,"
        " at = excluded.at",
        (
            campaign.id,
            signoff.identity,
            signoff.actor,
            signoff.reason,
            int(signoff.on_behalf),
            signoff.at,
        ),
    )
    add_event(
        conn,
        campaign.id,
        signoff.at,
        "signed_off",
        signoff.actor,
        identity=signoff.identity,
        on_behalf=signoff.on_behalf,
        reason=signoff.reason,
    )
    if campaign.state is CampaignState.HELD and cleared(
        campaign, signed(conn, campaign.id), required(conn, campaign.id)
    ):
        return release(conn, campaign.id, f"signoff:{signoff.identity}", signoff.at)
    return campaign_by_id(conn, campaign.id)
