"""The relay throttles in the spool, on every backend: claims share one GCRA budget."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest

from gateway.model import Campaign, Settlement, Throttle, ThrottleWait
from gateway.spool.sql_throttle import HORIZON, LAPSE
from gateway.states import RecipientState
from tests.spool.records import NOW, accept, pass_all, submission


class KeyThrottler:
    """Throttles campaigns by key, as the engine's rules would; records what waited."""

    def __init__(self, rates: dict[str, tuple[float, int, str]]) -> None:
        self.rates = rates  # key -> (per_second, burst, bucket)
        self.waits: list[ThrottleWait] = []

    def throttles(self, campaign: Campaign) -> Sequence[Throttle]:
        if campaign.key not in self.rates:
            return ()
        per_second, burst, bucket = self.rates[campaign.key]
        return (Throttle(f"slow-{bucket}", bucket, per_second, burst, "campaign"),)

    def waited(self, waits: Sequence[ThrottleWait]) -> None:
        self.waits.extend(waits)


async def _admit(spool, key: str, count: int, *, at: float = NOW) -> str:
    admission = None
    for i in range(count):
        admission = await accept(spool, submission([f"r{i}@{key}.test"], key=key, at=at), pass_all)
    assert admission is not None
    return admission.campaign_id


async def _claim_all(spool, owner: str, now: float, throttler) -> list[int]:
    """Claim at `now`, settle what was claimed as relayed, return the recipient ids."""
    deliveries = await spool.claim(owner, now, 100, 60, throttler=throttler)
    ids = [rid for d in deliveries for rid, _ in d.recipients]
    relayed = [Settlement(rid, RecipientState.RELAYED, "250 ok") for rid in ids]
    await spool.settle(owner, relayed, now)
    return ids


async def test_two_claimers_never_take_more_than_the_bucket_allows(spool):
    throttler = KeyThrottler({"news": (10.0, 5, "news")})
    await _admit(spool, "news", 60)
    taken: list[tuple[float, int]] = []
    for step in range(61):  # three seconds, two claimers racing at each 50 ms tick
        now = NOW + step * 0.05
        first, second = await asyncio.gather(
            _claim_all(spool, "w1", now, throttler), _claim_all(spool, "w2", now, throttler)
        )
        assert not set(first) & set(second)
        taken.append((now, len(first) + len(second)))
    sent = 0
    for now, count in taken:
        sent += count
        # burst 5, then 10 per second: never ahead of the budget at any instant
        assert sent <= 5 + 10 * (now - NOW) + 1e-6, (now, sent)
    assert sent == 5 + 30  # and the budget is used: the burst and 3 s at 10/s


async def test_the_rest_waits_until_the_bucket_allows_it_so_next_due_wakes_then(spool):
    throttler = KeyThrottler({"news": (2.0, 1, "news")})
    campaign_id = await _admit(spool, "news", 30)
    assert len(await _claim_all(spool, "w1", NOW, throttler)) == 1
    due = await spool.next_due()
    assert due == pytest.approx(NOW + 0.5)  # the next slot, not now: no busy loop
    assert await _claim_all(spool, "w1", NOW + 0.4, throttler) == []
    assert len(await _claim_all(spool, "w1", NOW + 0.5, throttler)) == 1
    waiting = await spool.throttle_waiting(campaign_id)
    assert waiting == {"slow-news": 28}
    gauges = await spool.gauges()
    assert gauges.throttled == {"slow-news": 28}
    [wait] = throttler.waits[:1]
    assert (wait.campaign_id, wait.rule, wait.first) == (campaign_id, "slow-news", True)
    assert sum(w.recipients for w in throttler.waits) == 29  # each counted once
    assert [w.first for w in throttler.waits].count(True) == 1
    events = [e.event for e in await spool.events(campaign_id)]
    assert events.count("throttled") == 1
    tats = await spool.throttle_tats(["news", "other"])
    assert set(tats) == {"news"}
    assert tats["news"] <= NOW + HORIZON + 0.5 + 1e-6  # reserved at most a horizon ahead


async def test_another_campaign_is_not_slowed_by_a_throttled_one(spool):
    throttler = KeyThrottler({"slow": (1.0, 1, "slow"), "also": (50.0, 50, "also")})
    await _admit(spool, "slow", 20)
    await _admit(spool, "fast", 20)
    await _admit(spool, "also", 20)
    deliveries = await spool.claim("w1", NOW, 100, 60, throttler=throttler)
    by_campaign: dict[str, int] = {}
    for d in deliveries:
        by_campaign[d.campaign_id] = by_campaign.get(d.campaign_id, 0) + len(d.recipients)
    claimed = sorted(by_campaign.values())
    assert claimed == [1, 20, 20]  # the unthrottled and the other throttled one go in full


async def test_a_reservation_claimed_long_after_its_slot_is_charged_again(spool):
    throttler = KeyThrottler({"news": (10.0, 1, "news")})
    await _admit(spool, "news", 40)
    assert len(await _claim_all(spool, "w1", NOW, throttler)) == 1
    # The relay was paused or down: the slots it reserved are long past.
    later = NOW + HORIZON + LAPSE + 60
    assert len(await _claim_all(spool, "w1", later, throttler)) == 1  # no burst of the backlog


async def test_without_a_throttler_nothing_is_held_back(spool):
    await _admit(spool, "news", 10)
    deliveries = await spool.claim("w1", NOW, 100, 60)
    assert sum(len(d.recipients) for d in deliveries) == 10


async def test_a_campaign_no_longer_throttled_sends_what_waited_within_a_horizon(spool):
    throttler = KeyThrottler({"news": (1.0, 1, "news")})
    await _admit(spool, "news", 30)
    assert len(await _claim_all(spool, "w1", NOW, throttler)) == 1
    throttler.rates.clear()  # the policy was reloaded without the throttle
    after = NOW + HORIZON + 1.01
    assert len(await _claim_all(spool, "w1", after, throttler)) == 29
    assert (await spool.gauges()).throttled == {}
