"""Statements of canary releases: a campaign's latest canary, and those still under way.

Plain functions on a connection, like `sql_review`. What a canary's steps mean is
`gateway.review.canary`'s; where several replicas watch canaries, reading one for a
change locks its row until the transaction commits, so one replica takes each step.
"""

from __future__ import annotations

from gateway.model import Canary
from gateway.spool.dialect import Conn
from gateway.states import CANARY_ACTIVE, CanaryState

_COLUMNS = "campaign_id, recipients, observe, actor, reason, state, started_at, sent_at, decided_at"


def canary(conn: Conn, campaign_id: str, *, lock: bool = False) -> Canary | None:
    """Return the campaign's latest canary (locked for a change where replicas share it)."""
    row = conn.execute(
        f"SELECT {_COLUMNS} FROM canaries WHERE campaign_id = ?"
        + (" FOR UPDATE" if lock and conn.dialect.shared else ""),
        (campaign_id,),
    ).fetchone()
    if row is None:
        return None
    cid, recipients, observe, actor, reason, state, started_at, sent_at, decided_at = row
    return Canary(
        campaign_id=cid,
        recipients=int(recipients),
        observe=float(observe),
        actor=actor,
        reason=reason,
        started_at=float(started_at),
        state=CanaryState(state),
        sent_at=sent_at,
        decided_at=decided_at,
    )


def put(conn: Conn, c: Canary) -> None:
    """Store a campaign's canary, in place of the one it had before."""
    conn.execute("DELETE FROM canaries WHERE campaign_id = ?", (c.campaign_id,))
    conn.execute(
        f"INSERT INTO canaries ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (
            c.campaign_id,
            c.recipients,
            c.observe,
            c.actor,
            c.reason,
            str(c.state),
            c.started_at,
            c.sent_at,
            c.decided_at,
        ),
    )


def update(conn: Conn, c: Canary) -> None:
    """Record a canary's new state and times."""
    conn.execute(
        "UPDATE canaries SET state = ?, sent_at = ?, decided_at = ? WHERE campaign_id = ?",
        (str(c.state), c.sent_at, c.decided_at, c.campaign_id),
    )


def active(conn: Conn, limit: int = 500) -> list[str]:
    """Return the campaigns whose canary is still sending or observing, oldest first."""
    # The states as literals, as the partial index names them, so the index serves it.
    states = ", ".join(f"'{s}'" for s in CANARY_ACTIVE)
    rows = conn.execute(
        f"SELECT campaign_id FROM canaries WHERE state IN ({states}) ORDER BY started_at LIMIT ?",
        (limit,),
    )
    return [cid for (cid,) in rows]
