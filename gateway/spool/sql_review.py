"""Statements of human review: hold, release, reject, manifests, the relay switch.

Every transition is a compare-and-set on the campaign's state and on the recipients'
states, so releasing twice, or two operators releasing at once, never queues a recipient
twice. Plain functions on a connection, like `sql_queue`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from gateway.errors import Conflict
from gateway.model import Campaign, CampaignEvent, Finding, Manifest, ReleaseScope, StoredMessage
from gateway.spool import sql_feedback, sql_segments, sql_throttle
from gateway.spool import transitions as t
from gateway.spool.base import HeldCampaign, SpoolGauges
from gateway.spool.dialect import Conn
from gateway.spool.port import Hold
from gateway.spool.sql_queue import (
    CAMPAIGN_COLUMNS,
    add_event,
    add_findings,
    campaign_by_id,
    campaign_from_row,
    count_by_state,
    hold,
    relay_paused,
)
from gateway.states import CampaignState, RecipientState


def manual_hold(conn: Conn, campaign_id: str, finding: Finding, now: float) -> Campaign | None:
    """Hold a campaign by hand (a kill switch); holding a held campaign changes nothing."""
    campaign = campaign_by_id(conn, campaign_id)
    if campaign is None or campaign.state is CampaignState.HELD:
        return campaign
    if campaign.state is CampaignState.REJECTED:
        raise Conflict(f"campaign {campaign_id} is rejected; there is nothing left to hold")
    actor = str(finding.evidence.get("actor", "operator"))
    if hold(conn, campaign, Hold(now, actor, (finding.rule,))) is None:
        raise Conflict(f"campaign {campaign_id} changed while it was being held; try again")
    add_findings(conn, campaign, [finding])
    return campaign_by_id(conn, campaign_id)


def release(
    conn: Conn,
    campaign_id: str,
    actor: str,
    now: float,
    scope: ReleaseScope | None = None,
) -> Campaign | None:
    """Queue held recipients again: all, the oldest `max_recipients`, those in a segment.

    A full release acknowledges the findings the operator was shown; a partial one leaves
    the campaign held with the rest. Releasing a campaign that is not held does nothing.
    """
    campaign = campaign_by_id(conn, campaign_id)
    if campaign is None or campaign.state is not CampaignState.HELD:
        return campaign
    scope = scope or ReleaseScope()
    max_recipients, only_segment = scope.max_recipients, scope.only_segment
    which = "campaign_id = ?"
    params: list[Any] = [campaign_id]
    if only_segment is not None:
        live = sql_segments.version_of(conn, only_segment)
        if live is None:
            raise Conflict(f"no segment named {only_segment!r} has been loaded")
        which += " AND mailbox_hash IN (SELECT hash FROM segment_members WHERE version = ?)"
        params.append(live[0])
    if max_recipients is not None:
        which = f"id IN (SELECT id FROM recipients WHERE {which} AND state = 'held' ORDER BY id LIMIT ?)"
        params.append(max_recipients)
    moved = t.move_recipients(
        conn,
        RecipientState.HELD,
        RecipientState.QUEUED,
        t.Rows(which, params, "updated_at = ?, queued_at = ?", (now, now)),
    )
    remaining = campaign.counters.held - moved
    conn.execute(
        "UPDATE campaigns SET held = held - ?, queued = queued + ?, updated_at = ? WHERE id = ?",
        (moved, moved, now, campaign_id),
    )
    if remaining == 0:
        acknowledged = sorted(campaign.acknowledged | {f.signature for f in campaign.findings})
        move = t.move_campaign(
            conn,
            campaign_id,
            (CampaignState.HELD,),
            CampaignState.RELEASED,
            assign="acknowledged = ?, held_at = NULL",
            params=(json.dumps(acknowledged),),
        )
        if not move.moved:  # the savepoint of this unit undoes the recipients moved above
            raise Conflict(f"campaign {campaign_id} became {move.state} during the release")
        conn.execute("DELETE FROM release_approvals WHERE campaign_id = ?", (campaign_id,))
    event = "released" if remaining == 0 else "partially_released"
    details = {"only_segment": only_segment} if only_segment else {}
    add_event(
        conn, campaign_id, now, event, actor, recipients=moved, still_held=remaining, **details
    )
    return campaign_by_id(conn, campaign_id)


def reject(conn: Conn, campaign_id: str, actor: str, now: float) -> Campaign | None:
    """Discard everything of a campaign that has not gone out; later mail is refused."""
    campaign = campaign_by_id(conn, campaign_id)
    if campaign is None or campaign.state is CampaignState.REJECTED:
        return campaign
    move = t.move_campaign(
        conn,
        campaign_id,
        (CampaignState.OPEN, CampaignState.HELD, CampaignState.RELEASED),
        CampaignState.REJECTED,
        assign="held_at = NULL, updated_at = ?",
        params=(now,),
    )
    if not move.moved:
        return campaign_by_id(conn, campaign_id)
    # What is leased (in delivery now) settles as the upstream answers; a lease that is
    # given back later discards its recipient (sql_queue.give_back).
    discarded = {
        state: t.move_recipients(
            conn,
            state,
            RecipientState.DISCARDED,
            t.Rows("campaign_id = ?", (campaign_id,), "updated_at = ?", (now,)),
        )
        for state in (RecipientState.HELD, RecipientState.QUEUED, RecipientState.DEFERRED)
    }
    conn.execute(
        "UPDATE campaigns SET held = held - ?, queued = queued - ?,"
        " deferred = deferred - ?, discarded = discarded + ? WHERE id = ?",
        (
            discarded[RecipientState.HELD],
            discarded[RecipientState.QUEUED],
            discarded[RecipientState.DEFERRED],
            sum(discarded.values()),
            campaign_id,
        ),
    )
    conn.execute("DELETE FROM release_approvals WHERE campaign_id = ?", (campaign_id,))
    add_event(conn, campaign_id, now, "rejected", actor, recipients=sum(discarded.values()))
    return campaign_by_id(conn, campaign_id)


def approve_release(
    conn: Conn, campaign_id: str, actor: str, now: float, details: Mapping[str, object]
) -> list[str]:
    """Record one operator's approval of a pending release; return every approver so far."""
    added = conn.execute(
        "INSERT INTO release_approvals (campaign_id, actor, at) VALUES (?, ?, ?)"
        " ON CONFLICT DO NOTHING RETURNING actor",
        (campaign_id, actor, now),
    ).fetchone()
    if added is None:
        raise Conflict(f"{actor} already approved the release of {campaign_id}")
    add_event(conn, campaign_id, now, "release_approved", actor, **details)
    return [
        name
        for (name,) in conn.execute(
            "SELECT actor FROM release_approvals WHERE campaign_id = ? ORDER BY at", (campaign_id,)
        )
    ]


def put_manifest(conn: Conn, manifest: Manifest) -> None:
    """Register a declaration; campaigns that already exist with that key take it at once."""
    d = manifest.declaration
    conn.execute(
        "INSERT INTO manifests (client, key, size, category, locale, created_by, updated_at)"
        " VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (client, key) DO UPDATE SET size = excluded.size,"
        " category = excluded.category, locale = excluded.locale,"
        " created_by = excluded.created_by, updated_at = excluded.updated_at",
        (
            manifest.client,
            manifest.key,
            d.size,
            d.category,
            d.locale,
            manifest.created_by,
            manifest.updated_at,
        ),
    )
    scope = "" if manifest.client == "*" else " AND client = ?"
    params: tuple[Any, ...] = (
        (manifest.key,) if manifest.client == "*" else (manifest.key, manifest.client)
    )
    conn.execute(
        "UPDATE campaigns SET declared_size = COALESCE(?, declared_size),"
        " declared_category = COALESCE(?, declared_category),"
        f" declared_locale = COALESCE(?, declared_locale) WHERE key = ?{scope}",
        (d.size, d.category, d.locale, *params),
    )


def set_relay_paused(conn: Conn, paused: bool, actor: str, reason: str, now: float) -> None:
    """Pause or resume relaying for the whole gateway (ingest keeps accepting)."""
    value = json.dumps({"paused": paused, "by": actor, "reason": reason, "at": now})
    conn.execute(
        "INSERT INTO flags (name, value) VALUES ('relay_paused', ?)"
        " ON CONFLICT (name) DO UPDATE SET value = excluded.value",
        (value,),
    )


def find_campaign(conn: Conn, client: str, key: str) -> Campaign | None:
    """Return the newest campaign with this client and key."""
    row = conn.execute(
        f"SELECT {CAMPAIGN_COLUMNS} FROM campaigns WHERE client = ? AND key = ?"
        " ORDER BY created_at DESC LIMIT 1",
        (client, key),
    ).fetchone()
    return None if row is None else campaign_from_row(row)


def list_campaigns(
    conn: Conn, state: CampaignState | None, limit: int, before: str | None, key: str | None = None
) -> list[Campaign]:
    """Newest first; `before` is the last ID of the previous page; `key` a part of the key."""
    clauses, params = [], []
    if key:
        # LIKE's wildcards and its escape character in the text stand for themselves.
        escaped = key.lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        clauses.append("LOWER(key) LIKE ? ESCAPE '\\'")
        params.append(f"%{escaped}%")
    if state is not None:
        clauses.append("state = ?")
        params.append(str(state))
    if before is not None:
        clauses.append("id < ?")
        params.append(before)
    where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
    rows = conn.execute(
        f"SELECT {CAMPAIGN_COLUMNS} FROM campaigns {where} ORDER BY id DESC LIMIT ?",
        (*params, limit),
    ).fetchall()
    return [campaign_from_row(row) for row in rows]


def gauges(conn: Conn, limit: int) -> SpoolGauges:
    """Read what /metrics shows of the spool; the caller runs it on one snapshot."""
    count, oldest = conn.execute(
        "SELECT COUNT(*), MIN(held_at) FROM campaigns WHERE state = 'held'"
    ).fetchone()
    held = tuple(
        HeldCampaign(id=cid, key=key, client=client, held_at=at)
        for cid, key, client, at in conn.execute(
            "SELECT id, key, client, held_at FROM campaigns WHERE state = 'held'"
            " ORDER BY held_at, id LIMIT ?",
            (limit,),
        )
    )
    # A scan of the (state, next_attempt_at) covering index, not of the table: about
    # 0.1 s per million recipient rows on SQLite's reader thread, once per scrape.
    paused = relay_paused(conn)
    pending, dead, oldest_forward = sql_feedback.backlog(conn)
    return SpoolGauges(
        campaigns_held=count,
        oldest_held_at=oldest,
        recipients=count_by_state(conn),
        relay_paused=paused,
        held=held,
        forwards_pending=pending,
        forwards_dead=dead,
        oldest_forward_queued_at=oldest_forward,
        throttled=sql_throttle.waiting_by_rule(conn),
    )


def events(conn: Conn, campaign_id: str) -> list[CampaignEvent]:
    """Return a campaign's timeline, oldest first."""
    return [
        CampaignEvent(at=at, event=event, actor=actor, details=json.loads(details))
        for at, event, actor, details in conn.execute(
            "SELECT at, event, actor, details FROM campaign_events WHERE campaign_id = ? ORDER BY id",
            (campaign_id,),
        )
    ]


def retained(
    conn: Conn, since: float, after: str, limit: int
) -> list[tuple[StoredMessage, tuple[str, ...]]]:
    """Messages received since `since` whose bodies are kept, oldest first.

    Starts after ID `after`; each comes with its recipients' addresses in sending order.
    """
    rows = conn.execute(
        "SELECT id, campaign_id, client, mail_from, content, ingress, received_at FROM messages"
        " WHERE body_retired_at IS NULL AND received_at >= ? AND id > ? ORDER BY id LIMIT ?",
        (since, after, limit),
    ).fetchall()
    if not rows:
        return []
    ids = [row[0] for row in rows]
    marks = ",".join("?" * len(ids))
    rcpts: dict[str, list[str]] = {mid: [] for mid in ids}
    for mid, address in conn.execute(
        f"SELECT message_id, address FROM recipients WHERE message_id IN ({marks}) ORDER BY id",
        ids,
    ):
        rcpts[mid].append(address)
    return [
        (StoredMessage(m, c, cl, mf, bytes(body), ing, at), tuple(rcpts[m]))
        for m, c, cl, mf, body, ing, at in rows
    ]


def message(conn: Conn, message_id: str) -> StoredMessage | None:
    """One spooled message."""
    row = conn.execute(
        "SELECT id, campaign_id, client, mail_from, content, ingress, received_at,"
        " body_retired_at FROM messages WHERE id = ?",
        (message_id,),
    ).fetchone()
    if row is None:
        return None
    mid, campaign_id, client, mail_from, content, ingress, received_at, retired = row
    return StoredMessage(
        mid, campaign_id, client, mail_from, bytes(content), ingress, received_at, retired
    )
