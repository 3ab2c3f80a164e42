"""Statements of the relay throttles: how many recipients of a throttled campaign a claim takes.

Run inside the claim's transaction, before it leases rows (`sql_queue.claim`). The claim
has picked the messages it will take; for each of their campaigns the caller's
`Throttler` says which throttles are in force (`model.Throttle`, each one GCRA bucket).
For a throttled campaign this module locks its buckets' rows (`throttle_buckets`; FOR
UPDATE where several processes claim, so replicas share one budget), reads the
campaign's due recipients that have not paid yet, and gives each the earliest slot its
buckets allow (`gcra.schedule`), charging the buckets for it:

- a slot of now: the row stays due and the claim takes it (paid: not charged again);
- a slot in the next `HORIZON` seconds: the row's `next_attempt_at` moves to it, paid, so
  the relay's idle wait (`next_due`) wakes for it and it is taken then without a charge;
- past the horizon: the rest of the campaign's due rows wait, unpaid, until the bucket
  allows its next cell after the reserved ones, in one statement, and are planned again then.

A paid row claimed more than `LAPSE` seconds after its slot (the relay was paused, down or
slow) is charged again, so a backlog that waited never goes out as one burst. The horizon
bounds how far ahead a bucket is reserved: a policy reload, or another campaign drawing on
a shared bucket, waits at most that long. `throttled` names the rule a waiting row waits
for (the gauge of throttled recipients reads it); leasing a row clears it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from gateway.model import Throttle, ThrottleWait
from gateway.spool import gcra
from gateway.spool.dialect import Conn
from gateway.states import CLAIMABLE

HORIZON = 5.0  # seconds of slots a bucket may have reserved ahead of now
LAPSE = 2.0  # a paid slot claimed later than this after its time is charged again
_PRUNE_AFTER = 60.0  # a bucket whose TAT is this far past is full again: its row can go
_STATES = tuple(str(state) for state in CLAIMABLE)
_UNPAID = "(throttle_paid = 0 OR next_attempt_at < ?)"


def plan(
    conn: Conn, throttled: Sequence[tuple[str, Sequence[Throttle]]], now: float
) -> list[ThrottleWait]:
    """Make the due rows of the throttled campaigns `throttled` wait for their slots.

    `throttled` pairs each campaign id with the throttles in force for it. Return what
    waited newly, per campaign. The claim then leases what is still due.
    """
    if not throttled:
        return []
    tats = _lock_buckets(conn, sorted({t.bucket for _, ts in throttled for t in ts}))
    waits = [
        wait
        for cid, ts in sorted(throttled, key=lambda pair: pair[0])
        if (wait := _campaign(conn, cid, ts, tats, now)) is not None
    ]
    conn.executemany(
        "UPDATE throttle_buckets SET tat = ? WHERE bucket = ?",
        [(tat, bucket) for bucket, tat in sorted(tats.items())],
    )
    conn.execute("DELETE FROM throttle_buckets WHERE tat < ?", (now - _PRUNE_AFTER,))
    return waits


def _lock_buckets(conn: Conn, buckets: Sequence[str]) -> dict[str, float]:
    """Return the TATs of `buckets`, their rows locked until commit (in one order)."""
    conn.executemany(
        "INSERT INTO throttle_buckets (bucket, tat) VALUES (?, 0) ON CONFLICT (bucket) DO NOTHING",
        [(bucket,) for bucket in buckets],
    )
    marks = ",".join("?" * len(buckets))
    lock = " ORDER BY bucket FOR UPDATE" if conn.dialect.shared else ""
    return {
        bucket: float(tat)
        for bucket, tat in conn.execute(
            f"SELECT bucket, tat FROM throttle_buckets WHERE bucket IN ({marks}){lock}", buckets
        )
    }


def _campaign(
    conn: Conn,
    campaign_id: str,
    throttles: Sequence[Throttle],
    tats: dict[str, float],
    now: float,
) -> ThrottleWait | None:
    """Plan one throttled campaign's unpaid due rows; charge `tats` in place."""
    rates = {t.bucket: gcra.Rate(t.per_second, t.burst) for t in throttles}
    by_bucket = {t.bucket: t for t in throttles}
    # No more rows than the horizon can give slots to, plus one to know there are more.
    cap = math.ceil(min(t.per_second for t in throttles) * HORIZON) + max(
        t.burst for t in throttles
    )
    states = ",".join("?" * len(_STATES))
    due = conn.execute(
        f"SELECT id, throttled FROM recipients WHERE campaign_id = ? AND state IN ({states})"
        f" AND next_attempt_at <= ? AND {_UNPAID} ORDER BY next_attempt_at, id LIMIT ?",
        (campaign_id, *_STATES, now, now - LAPSE, cap + 1),
    ).fetchall()
    if not due:
        return None
    was_waiting = (
        conn.execute(
            "SELECT 1 FROM recipients WHERE campaign_id = ? AND throttled IS NOT NULL"
            f" AND state IN ({states}) LIMIT 1",
            (campaign_id, *_STATES),
        ).fetchone()
        is not None
    )
    schedule = gcra.schedule(tats, rates, now, len(due), HORIZON)
    tats.update(schedule.tats)
    rule = by_bucket[schedule.limiting].rule
    slotted = list(zip(due, schedule.slots, strict=False))
    conn.executemany(
        "UPDATE recipients SET next_attempt_at = ?, throttle_paid = 1, throttled = ? WHERE id = ?",
        [(slot, rule if slot > now else None, rid) for (rid, _), slot in slotted],
    )
    newly = sum(1 for (_, before), slot in slotted if slot > now and before is None)
    until = min((slot for slot in schedule.slots if slot > now), default=schedule.next_at)
    if len(due) > len(schedule.slots):
        # Every other unpaid due row of the campaign waits for the bucket, in one statement.
        park = (
            "UPDATE recipients SET next_attempt_at = ?, throttled = ?, throttle_paid = 0"
            f" WHERE campaign_id = ? AND state IN ({states}) AND next_attempt_at <= ?"
            f" AND {_UNPAID}"
        )
        params = (schedule.next_at, rule, campaign_id, *_STATES, now, now - LAPSE)
        newly += conn.execute(park + " AND throttled IS NULL", params).rowcount
        conn.execute(park, params)
    if not newly:
        return None
    return ThrottleWait(campaign_id, rule, newly, until, first=not was_waiting)


def tats(conn: Conn, buckets: Sequence[str]) -> dict[str, float]:
    """Return the stored TATs of these buckets (a bucket with none is full)."""
    if not buckets:
        return {}
    marks = ",".join("?" * len(buckets))
    return {
        bucket: float(tat)
        for bucket, tat in conn.execute(
            f"SELECT bucket, tat FROM throttle_buckets WHERE bucket IN ({marks})", list(buckets)
        )
    }


def waiting(conn: Conn, campaign_id: str) -> dict[str, int]:
    """Return how many of a campaign's recipients wait for a throttle now, by rule."""
    states = ",".join("?" * len(_STATES))
    return {
        rule: int(count)
        for rule, count in conn.execute(
            "SELECT throttled, COUNT(*) FROM recipients WHERE campaign_id = ?"
            f" AND throttled IS NOT NULL AND state IN ({states}) GROUP BY throttled",
            (campaign_id, *_STATES),
        )
    }


def waiting_by_rule(conn: Conn) -> dict[str, int]:
    """Return how many recipients wait for a throttle now, by the rule they wait for."""
    states = ",".join("?" * len(_STATES))
    return {
        rule: int(count)
        for rule, count in conn.execute(
            "SELECT throttled, COUNT(*) FROM recipients WHERE throttled IS NOT NULL"
            f" AND state IN ({states}) GROUP BY throttled",
            _STATES,
        )
    }
