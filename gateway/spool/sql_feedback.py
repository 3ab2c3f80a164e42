"""Statements of provider feedback: counts per campaign, seen events, samples, the outbox.

`record` stores one batch of parsed events in the caller's transaction: events seen
before are skipped (a provider's retry counts once), each new one is attributed to the
recipient row of (message ID, comparable address) and counted in its campaign's minute
bucket, a few are kept as samples, and the new events are queued in the outbox to be
forwarded. The outbox is claimed under leases by compare-and-set, so replicas sharing a
database never send one batch at once. Plain functions on a connection; they know
event kinds only as strings.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from gateway.model import (
    FEEDBACK_KINDS,
    Feedback,
    FeedbackEvent,
    FeedbackOutcome,
    FeedbackSample,
    Forward,
    ForwardState,
)
from gateway.spool.dialect import Conn

BUCKET = 60.0  # seconds per count bucket: windows of a minute or more read exactly
SAMPLES_PER_KIND = 5  # evidence kept per campaign and kind
UNATTRIBUTED = ""  # the campaign of events that match no recipient
MAX_ERROR = 500  # characters of a forward's last error kept
_FORWARD_COLUMNS = (
    "id, source, state, events, attempts, received_at, queued_at, next_attempt_at,"
    " last_error, updated_at"
)


def record(
    conn: Conn,
    source: str,
    events: Sequence[FeedbackEvent],
    now: float,
    *,
    body: bytes | None,
) -> FeedbackOutcome:
    """Record a batch; queue `body` (or, when some events were seen, the new ones) to forward.

    `body=None` records without forwarding (DSNs). Event times in the future count at `now`.
    """
    fresh = [e for e in events if _first_time(conn, f"{source}:{e.event_id}", now)]
    counted: Counter[str] = Counter()
    unattributed = 0
    buckets: Counter[tuple[str, str, float]] = Counter()
    for event in fresh:
        if event.kind not in FEEDBACK_KINDS:
            continue
        campaign_id = _attribute(conn, event)
        if campaign_id is None:
            unattributed += 1
            campaign_id = UNATTRIBUTED
        else:
            counted[event.kind] += 1
            _sample(conn, campaign_id, event)
        at = min(event.at, now)
        buckets[(campaign_id, event.kind, at - at % BUCKET)] += 1
    for (campaign_id, kind, bucket), count in sorted(buckets.items()):
        conn.execute(
            "INSERT INTO feedback_counts (campaign_id, kind, bucket, count) VALUES (?, ?, ?, ?)"
            " ON CONFLICT (campaign_id, kind, bucket) DO UPDATE"
            " SET count = feedback_counts.count + excluded.count",
            (campaign_id, kind, bucket, count),
        )
    forward_id = None
    if body is not None and fresh:
        if len(fresh) < len(events):  # forward only what the platform has not had
            body = b"[" + b",".join(e.raw for e in fresh) + b"]"
        forward_id = enqueue(conn, source, body, len(fresh), now)
    uncounted = sum(1 for e in fresh if e.kind not in FEEDBACK_KINDS)
    touched = tuple(sorted({cid for cid, _, _ in buckets if cid != UNATTRIBUTED}))
    return FeedbackOutcome(
        len(events), len(fresh), dict(counted), unattributed, uncounted, forward_id, touched
    )


def _first_time(conn: Conn, key: str, now: float) -> bool:
    row = conn.execute(
        "INSERT INTO feedback_seen (event_id, at) VALUES (?, ?)"
        " ON CONFLICT (event_id) DO NOTHING RETURNING event_id",
        (key, now),
    ).fetchone()
    return row is not None


def _attribute(conn: Conn, event: FeedbackEvent) -> str | None:
    """Return the campaign of the recipient the event is about, or None."""
    if not event.message_id or not event.recipient:
        return None
    row = conn.execute(
        "SELECT campaign_id FROM recipients WHERE message_id = ? AND mailbox = ? LIMIT 1",
        (event.message_id, event.recipient),
    ).fetchone()
    return None if row is None else str(row[0])


def _sample(conn: Conn, campaign_id: str, event: FeedbackEvent) -> None:
    conn.execute(
        "INSERT INTO feedback_samples (campaign_id, kind, at, recipient, message_id, evidence)"
        " SELECT ?, ?, ?, ?, ?, ? WHERE (SELECT COUNT(*) FROM feedback_samples"
        " WHERE campaign_id = ? AND kind = ?) < ?",
        (
            campaign_id,
            event.kind or "",
            event.at,
            event.recipient,
            event.message_id,
            json.dumps(dict(event.evidence)),
            campaign_id,
            event.kind or "",
            SAMPLES_PER_KIND,
        ),
    )


def totals(conn: Conn, campaign_ids: Iterable[str]) -> dict[str, Feedback]:
    """Return each campaign's feedback since its first event (campaigns without any left out)."""
    ids = list(dict.fromkeys(campaign_ids))
    found: dict[str, dict[str, int]] = {}
    for start in range(0, len(ids), 500):
        chunk = ids[start : start + 500]
        marks = ", ".join("?" * len(chunk))
        for campaign_id, kind, count in conn.execute(
            "SELECT campaign_id, kind, SUM(count) FROM feedback_counts"
            f" WHERE campaign_id IN ({marks}) GROUP BY campaign_id, kind",
            chunk,
        ):
            found.setdefault(campaign_id, {})[kind] = int(count)
    return {cid: Feedback.of(counts) for cid, counts in found.items()}


def window(conn: Conn, campaign_id: str, since: float, until: float) -> Feedback:
    """Return a campaign's feedback of events that happened in [since, until).

    Exact to the bucket: a bound inside a minute counts that whole minute when `since`
    falls inside it, and leaves out the minute `until` falls inside.
    """
    rows = conn.execute(
        "SELECT kind, SUM(count) FROM feedback_counts"
        " WHERE campaign_id = ? AND bucket >= ? AND bucket < ? GROUP BY kind",
        (campaign_id, since - since % BUCKET, until),
    ).fetchall()
    return Feedback.of({kind: int(count) for kind, count in rows})


def unattributed(conn: Conn) -> dict[str, int]:
    """Return the counts by kind of events that matched no recipient."""
    rows = conn.execute(
        "SELECT kind, SUM(count) FROM feedback_counts WHERE campaign_id = ? GROUP BY kind",
        (UNATTRIBUTED,),
    ).fetchall()
    return {kind: int(count) for kind, count in rows}


def samples(conn: Conn, campaign_id: str) -> list[FeedbackSample]:
    """Return a campaign's sample events by kind, oldest first."""
    return [
        FeedbackSample(kind, at, recipient, message_id, json.loads(evidence))
        for kind, at, recipient, message_id, evidence in conn.execute(
            "SELECT kind, at, recipient, message_id, evidence FROM feedback_samples"
            " WHERE campaign_id = ? ORDER BY kind, id",
            (campaign_id,),
        )
    ]


def prune(conn: Conn, before: float) -> int:
    """Forget event IDs seen, and drop batches delivered, before `before`; return rows removed.

    A provider retries a batch for hours, not days: an ID that old is not a retry.
    """
    seen = conn.execute("DELETE FROM feedback_seen WHERE at < ?", (before,)).rowcount
    done = conn.execute(
        "DELETE FROM webhook_outbox WHERE state = 'delivered' AND updated_at < ?", (before,)
    ).rowcount
    return seen + done


# -- the outbox -----------------------------------------------------------------------------


def enqueue(conn: Conn, source: str, body: bytes, events: int, now: float) -> int:
    """Queue one batch to forward now; return its ID."""
    row = conn.execute(
        "INSERT INTO webhook_outbox (source, body, events, state, received_at, queued_at,"
        " next_attempt_at, updated_at) VALUES (?, ?, ?, 'pending', ?, ?, ?, ?) RETURNING id",
        (source, body, events, now, now, now, now),
    ).fetchone()
    return int(row[0])


def claim(conn: Conn, owner: str, now: float, limit: int, lease: float) -> list[Forward]:
    """Lease up to `limit` due batches to `owner`, oldest first, with their bodies.

    Each lease is a compare-and-set on the row (pending, and not leased or its lease run
    out), so of two replicas claiming at once only one gets a batch.
    """
    candidates = conn.execute(
        "SELECT id FROM webhook_outbox WHERE state = 'pending' AND next_attempt_at <= ?"
        " AND (lease_until IS NULL OR lease_until <= ?) ORDER BY id LIMIT ?",
        (now, now, limit),
    ).fetchall()
    claimed = []
    for (forward_id,) in candidates:
        row = conn.execute(
            "UPDATE webhook_outbox SET lease_owner = ?, lease_until = ?"
            " WHERE id = ? AND state = 'pending' AND (lease_until IS NULL OR lease_until <= ?)"
            f" RETURNING {_FORWARD_COLUMNS}, body",
            (owner, now + lease, forward_id, now),
        ).fetchone()
        if row is not None:
            claimed.append(_forward(row[:-1], bytes(row[-1])))
    return claimed


def settle(
    conn: Conn,
    owner: str,
    forward_id: int,
    state: ForwardState,
    now: float,
    *,
    next_attempt_at: float = 0.0,
    error: str = "",
) -> bool:
    """Record one attempt of a batch `owner` leases: delivered, again later, or dead."""
    return (
        conn.execute(
            "UPDATE webhook_outbox SET state = ?, attempts = attempts + 1, next_attempt_at = ?,"
            " last_error = ?, lease_owner = NULL, lease_until = NULL, updated_at = ?"
            " WHERE id = ? AND lease_owner = ? AND state = 'pending'",
            (str(state), next_attempt_at or now, error[:MAX_ERROR], now, forward_id, owner),
        ).rowcount
        == 1
    )


def forwards(
    conn: Conn, state: ForwardState | None, limit: int, before: int | None
) -> list[Forward]:
    """Return batches newest first, optionally of one state; `before` is the last ID seen."""
    last = before if before is not None else 2**62
    params: tuple[object, ...] = (last, limit)
    where = "id < ?"
    if state is not None:
        where, params = "id < ? AND state = ?", (last, str(state), limit)
    rows = conn.execute(
        f"SELECT {_FORWARD_COLUMNS} FROM webhook_outbox WHERE {where} ORDER BY id DESC LIMIT ?",
        params,
    ).fetchall()
    return [_forward(row) for row in rows]


def forward(conn: Conn, forward_id: int) -> Forward | None:
    """Return one batch (without its body)."""
    row = conn.execute(
        f"SELECT {_FORWARD_COLUMNS} FROM webhook_outbox WHERE id = ?", (forward_id,)
    ).fetchone()
    return None if row is None else _forward(row)


def retry(conn: Conn, forward_id: int, now: float) -> Forward | None:
    """Queue a dead batch again at once, its maximum age counted from now; None if not dead."""
    row = conn.execute(
        "UPDATE webhook_outbox SET state = 'pending', queued_at = ?, next_attempt_at = ?,"
        f" updated_at = ? WHERE id = ? AND state = 'dead' RETURNING {_FORWARD_COLUMNS}",
        (now, now, now, forward_id),
    ).fetchone()
    return None if row is None else _forward(row)


def next_due(conn: Conn) -> float | None:
    """Return when the earliest pending batch is due (its lease's end if leased), or None."""
    row = conn.execute(
        "SELECT MIN(CASE WHEN lease_until IS NOT NULL AND lease_until > next_attempt_at"
        " THEN lease_until ELSE next_attempt_at END) FROM webhook_outbox WHERE state = 'pending'"
    ).fetchone()
    return None if row is None or row[0] is None else float(row[0])


def backlog(conn: Conn) -> tuple[int, int, float | None]:
    """Return (pending batches, dead batches, when the oldest pending one was queued)."""
    counts: Mapping[str, Any] = {
        state: (count, oldest)
        for state, count, oldest in conn.execute(
            "SELECT state, COUNT(*), MIN(queued_at) FROM webhook_outbox"
            " WHERE state IN ('pending', 'dead') GROUP BY state"
        )
    }
    pending, oldest = counts.get("pending", (0, None))
    dead, _ = counts.get("dead", (0, None))
    return int(pending), int(dead), oldest


def _forward(row: Sequence[Any], body: bytes = b"") -> Forward:
    fid, source, state, events, attempts, received, queued, due, error, updated = row
    return Forward(
        id=int(fid),
        source=source,
        state=ForwardState(state),
        events=int(events),
        attempts=int(attempts),
        received_at=received,
        queued_at=queued,
        next_attempt_at=due,
        last_error=error,
        updated_at=updated,
        body=body,
    )
