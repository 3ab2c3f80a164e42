"""GCRA, the generic cell rate algorithm: the arithmetic of the relay throttles.

Pure functions of numbers and an injected `now`; no I/O. A bucket is one number, its
theoretical arrival time (TAT): the time at which it would be empty of debt. A rate of
`per_second` with a `burst` emits a cell every `interval` = 1 / per_second and tolerates
cells up to `tolerance` = (burst - 1) × interval early, so after a quiet spell `burst`
cells may go at once and then one per interval. A cell sent at `t` conforms when
TAT − tolerance ≤ t, and moves the TAT to max(TAT, t) + interval. A TAT in the past is a
full bucket: a bucket never seen is stored as nothing at all.

`schedule` plans several cells at once against one or more buckets (a campaign under a
campaign throttle and a client throttle draws on both): each cell gets the earliest time
every bucket allows it, and is charged to every bucket. The spool runs it inside the claim
transaction with the buckets' rows locked, so replicas share one budget.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Rate:
    """A bucket's rate: `per_second` cells, and up to `burst` at once."""

    per_second: float
    burst: int = 1

    @property
    def interval(self) -> float:
        """Seconds between cells at the steady rate."""
        return 1.0 / self.per_second

    @property
    def tolerance(self) -> float:
        """How far ahead of its TAT a cell may go (the burst)."""
        return (self.burst - 1) * self.interval


def conforms_at(tat: float, rate: Rate) -> float:
    """Return the earliest time a cell conforms to a bucket whose TAT is `tat`."""
    return tat - rate.tolerance


def charge(tat: float, at: float, rate: Rate) -> float:
    """Return the bucket's TAT after a cell sent at `at` (which must conform)."""
    return max(tat, at) + rate.interval


@dataclass(frozen=True, slots=True)
class Plan:
    """When each cell of a batch may go, and the buckets after them.

    `slots` are in order and no later than `now` + horizon; the cells past them got none
    and wait, unpaid, until `next_at`, when the next cell would conform. `limiting` names
    the bucket that set `next_at` (the tightest).
    """

    slots: tuple[float, ...]
    tats: Mapping[str, float]
    next_at: float
    limiting: str


def schedule(
    tats: Mapping[str, float],
    rates: Mapping[str, Rate],
    now: float,
    count: int,
    horizon: float,
) -> Plan:
    """Give up to `count` cells their times, the earliest every bucket of `rates` allows.

    `tats` holds the buckets' stored TATs (a missing one is full). Cells whose time would
    lie more than `horizon` after `now` get no slot, so a long backlog does not reserve
    the bucket far ahead (a policy reload or another campaign of a shared bucket waits at
    most a horizon for it).
    """
    if not rates:
        raise ValueError("schedule needs at least one bucket")
    state = {bucket: tats.get(bucket, now) for bucket in rates}
    slots: list[float] = []

    def earliest() -> tuple[float, str]:
        bucket, limit = max(
            ((b, conforms_at(state[b], r)) for b, r in rates.items()), key=lambda x: x[1]
        )
        return max(now, limit), bucket

    at, limiting = earliest()
    while len(slots) < count and at <= now + horizon:
        slots.append(at)
        for bucket, rate in rates.items():
            state[bucket] = charge(state[bucket], at, rate)
        at, limiting = earliest()
    return Plan(tuple(slots), state, at, limiting)


def next_conforming(tats: Mapping[str, float], rates: Mapping[str, Rate], now: float) -> float:
    """Return when the next cell may go through every bucket (`now` if it may now)."""
    return max([now, *(conforms_at(tats.get(b, now), r) for b, r in rates.items())])
