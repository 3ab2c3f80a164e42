"""Statements of the message queue: hold, claim, renew, settle, give leases back.

Plain functions on a connection (`gateway.spool.dialect.Conn`), run by the spool's writers
inside their group transaction. Campaign counters change in the same statement batch as the recipient rows,
so they can never disagree with them.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict
from typing import Any

from gateway.model import (
    Campaign,
    Counters,
    Declaration,
    Delivery,
    Finding,
    RecipientRecord,
    Settlement,
    Throttler,
    ThrottleWait,
    new_id,
)
from gateway.spool import sql_throttle
from gateway.spool import transitions as t
from gateway.spool.dialect import Conn
from gateway.spool.port import Hold
from gateway.states import CLAIMABLE, WAITING, CampaignState, RecipientState

CAMPAIGN_COLUMNS = (
    "id, key, client, implicit, state, sender, subject, declared_size, declared_category,"
    " declared_locale, received, queued, held, relayed, deferred, failed, discarded,"
    " suppressed, escaped, findings, created_at, updated_at, acknowledged, duplicates,"
    " sample_message_id, held_at"
)
RECIPIENT_COLUMNS = (
    "id, message_id, campaign_id, address, state, attempts, next_attempt_at, last_reply, updated_at"
)
CLAIMABLE_STATES = tuple(str(state) for state in CLAIMABLE)
_CHUNK = 500  # ids per statement
# Where claims run in several processes at once, messages a claim looks at per message
# it may take: those another claim has locked are passed over.
_CANDIDATES_PER_MESSAGE = 4


def campaign_by_id(conn: Conn, campaign_id: str) -> Campaign | None:
    """Read one campaign."""
    row = conn.execute(
        f"SELECT {CAMPAIGN_COLUMNS} FROM campaigns WHERE id = ?", (campaign_id,)
    ).fetchone()
    return None if row is None else campaign_from_row(row)


def add_event(
    conn: Conn, campaign_id: str, now: float, event: str, actor: str, **details: Any
) -> None:
    """Append a step to a campaign's timeline."""
    conn.execute(
        "INSERT INTO campaign_events (campaign_id, at, event, actor, details) VALUES (?, ?, ?, ?, ?)",
        (campaign_id, now, event, actor, json.dumps(details)),
    )


def hold(conn: Conn, campaign: Campaign, hold: Hold) -> int | None:
    """Quarantine a campaign: nothing of it that is still waiting may be relayed.

    A compare-and-set from the state `campaign` was read in. Return how many recipients
    the hold quarantined (`hold.incoming` included), or None when the campaign moved on.
    """
    # What went out before the first review escaped it; after a release it was approved.
    escaped = "relayed" if campaign.state is CampaignState.OPEN else "escaped"
    move = t.move_campaign(
        conn,
        campaign.id,
        (campaign.state,),
        CampaignState.HELD,
        assign=f"escaped = {escaped}, held_at = ?, updated_at = ?,"
        " sample_message_id = COALESCE(?, sample_message_id)",
        params=(hold.now, hold.now, hold.sample_message_id),
    )
    if not move.moved:
        return None
    moved = {
        source: t.move_recipients(
            conn,
            source,
            RecipientState.HELD,
            t.Rows("campaign_id = ?", (campaign.id,), "updated_at = ?", (hold.now,)),
        )
        for source in CLAIMABLE
    }
    queued, deferred = moved[RecipientState.QUEUED], moved[RecipientState.DEFERRED]
    conn.execute(
        "UPDATE campaigns SET held = held + ?, queued = queued - ?, deferred = deferred - ?"
        " WHERE id = ?",
        (queued + deferred, queued, deferred, campaign.id),
    )
    held = queued + deferred + hold.incoming
    add_event(
        conn, campaign.id, hold.now, "held", hold.actor, rules=list(hold.rules), recipients=held
    )
    return held


def add_findings(conn: Conn, campaign: Campaign, findings: Sequence[Finding]) -> None:
    """Merge findings by (rule, kind): a repeat raises its count and refreshes its evidence."""
    merged = {f.signature: asdict(f) for f in campaign.findings}
    for finding in findings:
        earlier = merged.get(finding.signature)
        count = finding.count + (earlier["count"] if earlier else 0)
        merged[finding.signature] = {**asdict(finding), "count": count}
    conn.execute(
        "UPDATE campaigns SET findings = ? WHERE id = ?",
        (json.dumps(list(merged.values())), campaign.id),
    )


def claim(conn: Conn, owner: str, now: float, limit: int, lease: float) -> list[Delivery]:
    """Lease due recipients of up to `limit` messages, unless the relay is paused.

    Leases that ran out first go back to waiting (a worker died without its process
    restarting), so any worker, this one included, can take them over.
    """
    return claim_throttled(conn, owner, now, limit, lease, None)[0]


def claim_throttled(  # noqa: PLR0917 - claim's arguments and the throttler
    conn: Conn, owner: str, now: float, limit: int, lease: float, throttler: Throttler | None
) -> tuple[list[Delivery], list[ThrottleWait]]:
    """Claim as `claim` does, taking of throttled campaigns only what their buckets allow.

    Return the deliveries and what the throttles left waiting (`sql_throttle`).
    """
    if _any_expired(conn, now):
        give_back(conn, now=now, expired_at=now)
    if relay_paused(conn):
        return [], []
    message_ids, which = _due(conn, now, limit)
    if not message_ids:
        return [], []
    waits = [] if throttler is None else _throttle(conn, throttler, message_ids, now)
    return _lease(conn, owner, now, lease, message_ids, which), waits


def _lease(  # noqa: PLR0917 - the claim's arguments and what it picked
    conn: Conn, owner: str, now: float, lease: float, message_ids: list[str], which: t.Rows
) -> list[Delivery]:
    """Lease the rows `which` of the messages `message_ids`; return them as deliveries."""
    marks = ",".join("?" * len(message_ids))
    by_message: dict[str, list[tuple[int, str, int, float]]] = {}
    moved_from_deferred: Counter[str] = Counter()
    for source in CLAIMABLE:
        for (
            rid,
            message_id,
            campaign_id,
            address,
            attempts,
            queued_at,
        ) in t.move_recipients_returning(
            conn,
            source,
            RecipientState.SENDING,
            t.Rows(
                which.where,
                which.params,
                "lease_owner = ?, lease_until = ?, updated_at = ?, throttled = NULL,"
                " throttle_paid = 0",
                (owner, now + lease, now),
            ),
            "id, message_id, campaign_id, address, attempts, queued_at",
        ):
            by_message.setdefault(message_id, []).append((rid, address, attempts, queued_at))
            if source == RecipientState.DEFERRED:
                moved_from_deferred[campaign_id] += 1
    # Campaign counters treat a leased recipient as queued: it is not delivered yet.
    for campaign_id, moved in sorted(moved_from_deferred.items()):
        conn.execute(
            "UPDATE campaigns SET deferred = deferred - ?, queued = queued + ? WHERE id = ?",
            (moved, moved, campaign_id),
        )
    deliveries = []
    for mid, campaign_id, mail_from, content in conn.execute(
        f"SELECT id, campaign_id, mail_from, content FROM messages WHERE id IN ({marks})",
        message_ids,
    ):
        rows = sorted(by_message.get(mid, []))
        if rows:
            deliveries.append(
                Delivery(
                    message_id=mid,
                    campaign_id=campaign_id,
                    mail_from=mail_from,
                    content=bytes(content),
                    recipients=tuple((rid, address) for rid, address, _, _ in rows),
                    attempts=max(row[2] for row in rows),
                    queued_at=min(row[3] for row in rows),
                )
            )
    return deliveries


def _throttle(
    conn: Conn, throttler: Throttler, message_ids: Sequence[str], now: float
) -> list[ThrottleWait]:
    """Hold back what the throttles in force for these messages' campaigns do not allow now."""
    marks = ",".join("?" * len(message_ids))
    throttled = []
    for (campaign_id,) in conn.execute(
        f"SELECT DISTINCT campaign_id FROM messages WHERE id IN ({marks})", message_ids
    ).fetchall():
        campaign = campaign_by_id(conn, campaign_id)
        throttles = () if campaign is None else tuple(throttler.throttles(campaign))
        if throttles:
            throttled.append((campaign_id, throttles))
    waits = sql_throttle.plan(conn, throttled, now)
    by_rule = {t.rule: t for _, throttles in throttled for t in throttles}
    for wait in waits:
        if wait.first:
            throttle = by_rule[wait.rule]
            add_event(
                conn,
                wait.campaign_id,
                now,
                "throttled",
                "relay",
                rule=wait.rule,
                per_second=throttle.per_second,
                scope=throttle.scope,
                until=wait.until,
            )
    return waits


def _any_expired(conn: Conn, now: float) -> bool:
    """Tell whether a lease has run out (one seek of the index of leased rows)."""
    return (
        conn.execute(
            f"SELECT 1 FROM recipients {conn.dialect.leased_index}"
            " WHERE state = 'sending' AND lease_until <= ? LIMIT 1",
            (now,),
        ).fetchone()
        is not None
    )


def renew(conn: Conn, owner: str, recipient_ids: Sequence[int], until: float) -> int:
    """Extend `owner`'s leases on these recipients; return how many it still held."""
    renewed = 0
    for start in range(0, len(recipient_ids), _CHUNK):  # within SQLite's variable limit
        chunk = recipient_ids[start : start + _CHUNK]
        marks = ",".join("?" * len(chunk))
        renewed += conn.execute(
            f"UPDATE recipients SET lease_until = ? WHERE id IN ({marks})"
            " AND state = 'sending' AND lease_owner = ?",
            (until, *chunk, owner),
        ).rowcount
    return renewed


def _due(conn: Conn, now: float, limit: int) -> tuple[list[str], t.Rows]:
    """Return up to `limit` messages with due recipients, and the rows the claim takes.

    The longest waiting come first, and the claim takes every due row of each message.

    Walks the (state, next_attempt_at) index per state and stops after a few rows per
    message wanted, so a claim costs the same however long the backlog is. Where several
    processes claim at once, the claim locks the messages it takes (FOR UPDATE SKIP
    LOCKED) and passes over those another claim has locked, so two replicas never wait
    for each other; the state compare-and-set below would keep them apart regardless.
    """
    shared = conn.dialect.shared
    wanted = limit * _CANDIDATES_PER_MESSAGE if shared else limit
    due: dict[str, float] = {}
    for source in CLAIMABLE_STATES:
        for message_id, at in conn.execute(
            "SELECT message_id, next_attempt_at FROM recipients WHERE state = ?"
            " AND next_attempt_at <= ? ORDER BY next_attempt_at LIMIT ?",
            (source, now, wanted),
        ):
            due[message_id] = min(at, due.get(message_id, at))
    candidates = sorted(due, key=due.__getitem__)[:wanted]
    if shared and candidates:
        marks = ",".join("?" * len(candidates))
        free = {
            mid
            for (mid,) in conn.execute(
                f"SELECT id FROM messages WHERE id IN ({marks}) FOR NO KEY UPDATE SKIP LOCKED",
                candidates,
            )
        }
        candidates = [mid for mid in candidates if mid in free]
    message_ids = candidates[:limit]
    marks = ",".join("?" * len(message_ids))
    return message_ids, t.Rows(
        f"message_id IN ({marks}) AND next_attempt_at <= ?", (*message_ids, now)
    )


def retire_bodies(conn: Conn, before: float, now: float, limit: int) -> int:
    """Empty the bodies of up to `limit` done messages received before `before`.

    Done: no recipient is queued, sending, deferred or held. Returns how many.
    """
    waiting = [str(s) for s in WAITING]
    marks = ",".join("?" * len(waiting))
    boundary = new_id(before)[:10] + "0" * 16  # IDs sort by time: only older ones are read
    return conn.execute(
        "UPDATE messages SET content = ?, body_retired_at = ? WHERE id IN ("
        " SELECT m.id FROM messages m WHERE m.body_retired_at IS NULL AND m.id < ?"
        " AND m.received_at < ? AND NOT EXISTS (SELECT 1 FROM recipients r"
        f" WHERE r.message_id = m.id AND r.state IN ({marks})) ORDER BY m.id LIMIT ?)",
        (b"", now, boundary, before, *waiting, limit),
    ).rowcount


def relay_paused(conn: Conn) -> bool:
    """Tell whether an operator paused the relay (a durable, gateway-wide switch)."""
    row = conn.execute("SELECT value FROM flags WHERE name = 'relay_paused'").fetchone()
    return row is not None and bool(json.loads(row[0]).get("paused"))


_SETTLED_COUNTER = {
    RecipientState.RELAYED: "relayed",
    RecipientState.DEFERRED: "deferred",
    RecipientState.FAILED: "failed",
    RecipientState.HELD: "held",
    RecipientState.DISCARDED: "discarded",
}


def settle(conn: Conn, owner: str, settlements: Sequence[Settlement], now: float) -> int:
    """Record outcomes; a row whose lease was lost is left to its new owner."""
    changes: Counter[tuple[str, str]] = Counter()
    deferred = [s.recipient_id for s in settlements if s.state is RecipientState.DEFERRED]
    retries = _retry_states(conn, deferred)
    for item in settlements:
        target = retries.get(item.recipient_id, item.state)
        for (campaign_id,) in t.move_recipients_returning(
            conn,
            RecipientState.SENDING,
            target,
            t.Rows(
                "id = ? AND lease_owner = ?",
                (item.recipient_id, owner),
                "attempts = attempts + 1, last_reply = ?, next_attempt_at = ?,"
                " lease_owner = NULL, lease_until = NULL, updated_at = ?",
                (item.reply, item.next_attempt_at or now, now),
            ),
            "campaign_id",
        ):
            changes[(campaign_id, _SETTLED_COUNTER[target])] += 1
            changes[(campaign_id, "queued")] -= 1
    # Campaign rows in one order for every writer, so two settles never deadlock.
    for (campaign_id, column), delta in sorted(changes.items()):
        if delta:
            conn.execute(
                f"UPDATE campaigns SET {column} = {column} + ?, updated_at = ? WHERE id = ?",
                (delta, now, campaign_id),
            )
        if column == "relayed":
            # Mail that was in flight when its campaign was held escaped the hold too.
            conn.execute(
                "UPDATE campaigns SET escaped = escaped + ? WHERE id = ? AND state = 'held'",
                (delta, campaign_id),
            )
    return sum(delta for (_, column), delta in changes.items() if column != "queued")


# Where a recipient whose lease is given back waits, by its campaign's state now.
_RETURN_TO = (
    (RecipientState.QUEUED, (CampaignState.OPEN, CampaignState.RELEASED), None),
    (RecipientState.HELD, (CampaignState.HELD,), "held"),
    (RecipientState.DISCARDED, (CampaignState.REJECTED,), "discarded"),
)
# Where a recipient the upstream deferred waits, by its campaign's state now: a campaign
# held or rejected while the delivery was in flight must not send it on the next try.
_RETRY_AS = {
    CampaignState.HELD: RecipientState.HELD,
    CampaignState.REJECTED: RecipientState.DISCARDED,
}


def _retry_states(conn: Conn, recipient_ids: Sequence[int]) -> dict[int, RecipientState]:
    """Return, for deferred recipients whose campaign stopped, where they wait instead."""
    if not recipient_ids:
        return {}
    marks = ",".join("?" * len(recipient_ids))
    rows = conn.execute(
        f"SELECT r.id, c.state FROM recipients r JOIN campaigns c ON c.id = r.campaign_id"
        f" WHERE r.id IN ({marks})",
        recipient_ids,
    )
    return {rid: _RETRY_AS[state] for rid, state in rows if state in _RETRY_AS}


def give_back(
    conn: Conn,
    *,
    now: float,
    owner: str | None = None,
    expired_at: float | None = None,
) -> int:
    """Return leased recipients (of one owner, expired ones, or all) to where they wait.

    A recipient leased before its campaign was held or rejected waits held, or is
    discarded, instead of going out when it is claimed again.
    """
    where, params = "1 = 1", list[Any]()
    if owner is not None:
        where, params = "lease_owner = ?", [owner]
    if expired_at is not None:
        where, params = f"{where} AND lease_until <= ?", [*params, expired_at]
    total = 0
    for target, states, column in _RETURN_TO:
        marks = ",".join("?" * len(states))
        rows = t.move_recipients_returning(
            conn,
            RecipientState.SENDING,
            target,
            t.Rows(
                f"{where} AND campaign_id IN (SELECT id FROM campaigns WHERE state IN ({marks}))",
                (*params, *map(str, states)),
                "lease_owner = NULL, lease_until = NULL, updated_at = ?",
                (now,),
            ),
            "campaign_id",
        )
        total += len(rows)
        if column is None:  # a leased recipient is counted as queued already
            continue
        for campaign_id, moved in Counter(campaign_id for (campaign_id,) in rows).items():
            conn.execute(
                f"UPDATE campaigns SET queued = queued - ?, {column} = {column} + ? WHERE id = ?",
                (moved, moved, campaign_id),
            )
    return total


def next_due(conn: Conn) -> float | None:
    """Return when the earliest claimable recipient becomes due, or None."""
    # A lease running out makes work due too: its recipients are taken over then.
    row = conn.execute(
        "SELECT MIN(at) FROM (SELECT MIN(next_attempt_at) AS at FROM recipients"
        " WHERE state IN (?, ?) UNION ALL SELECT MIN(lease_until) FROM recipients"
        " WHERE state = 'sending') AS due",
        CLAIMABLE_STATES,
    ).fetchone()
    return None if row[0] is None else float(row[0])


def count_by_state(conn: Conn) -> dict[RecipientState, int]:
    """Return how many recipients sit in each state, zero included."""
    rows = conn.execute("SELECT state, COUNT(*) FROM recipients GROUP BY state").fetchall()
    counts = dict.fromkeys(RecipientState, 0)
    counts.update({RecipientState(state): count for state, count in rows})
    return counts


def recipients(  # noqa: PLR0917 - the Review method's filters, passed on in order
    conn: Conn,
    campaign_id: str | None,
    message_id: str | None,
    state: RecipientState | None,
    limit: int,
    after: int,
) -> list[RecipientRecord]:
    """Recipient rows by ID order, filtered, starting after row `after`."""
    clauses, params = ["id > ?"], list[Any]([after])
    for column, value in (
        ("campaign_id", campaign_id),
        ("message_id", message_id),
        ("state", state),
    ):
        if value is not None:
            clauses.append(f"{column} = ?")
            params.append(str(value))
    rows = conn.execute(
        f"SELECT {RECIPIENT_COLUMNS} FROM recipients WHERE {' AND '.join(clauses)}"
        " ORDER BY id LIMIT ?",
        (*params, limit),
    ).fetchall()
    return [recipient_from_row(row) for row in rows]


def campaign_from_row(row: Sequence[Any]) -> Campaign:
    """Build a Campaign from a row of CAMPAIGN_COLUMNS."""
    (cid, key, client, implicit, state, sender, subject, size, category, locale, *rest) = row
    counts, rest = rest[:9], rest[9:]
    findings, created_at, updated_at, acknowledged, duplicates, sample, held_at = rest
    return Campaign(
        id=cid,
        key=key,
        client=client,
        implicit=bool(implicit),
        state=CampaignState(state),
        sender=sender,
        subject=subject,
        declared=Declaration(size=size, category=category, locale=locale),
        counters=Counters(*counts),
        created_at=created_at,
        updated_at=updated_at,
        findings=tuple(Finding(**f) for f in json.loads(findings)),
        acknowledged=frozenset(tuple(pair) for pair in json.loads(acknowledged)),
        duplicates=duplicates,
        sample_message_id=sample,
        held_at=held_at,
    )


def recipient_from_row(row: Sequence[Any]) -> RecipientRecord:
    """Build a RecipientRecord from a row of RECIPIENT_COLUMNS."""
    rid, message_id, campaign_id, address, state, attempts, next_at, reply, updated_at = row
    return RecipientRecord(
        id=rid,
        message_id=message_id,
        campaign_id=campaign_id,
        address=address,
        state=RecipientState(state),
        attempts=attempts,
        next_attempt_at=next_at,
        last_reply=reply,
        updated_at=updated_at,
    )
