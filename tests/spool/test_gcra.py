"""GCRA arithmetic: the relay throttles' budget, as pure functions of an injected now."""

from __future__ import annotations

import pytest

from gateway.spool.gcra import Rate, charge, conforms_at, next_conforming, schedule


def test_a_full_bucket_lets_a_burst_go_at_once_then_one_per_interval():
    plan = schedule({}, {"b": Rate(per_second=10, burst=3)}, now=100.0, count=6, horizon=1.0)
    assert plan.slots == pytest.approx([100.0, 100.0, 100.0, 100.1, 100.2, 100.3])
    assert plan.next_at == pytest.approx(100.4)
    assert plan.limiting == "b"


def test_slots_stop_at_the_horizon_and_the_rest_waits_until_next_at():
    plan = schedule({}, {"b": Rate(per_second=20)}, now=50.0, count=1000, horizon=2.0)
    assert len(plan.slots) == 41  # 0, 0.05, ..., 2.0 s
    assert plan.slots[-1] <= 52.0 + 1e-9
    assert plan.next_at == pytest.approx(52.05)
    assert plan.tats["b"] == pytest.approx(52.05)


def test_a_stored_tat_in_the_future_delays_the_first_slot():
    plan = schedule({"b": 10.5}, {"b": Rate(per_second=2)}, now=10.0, count=2, horizon=5.0)
    assert plan.slots == pytest.approx([10.5, 11.0])


def test_a_tat_in_the_past_is_a_full_bucket():
    rate = Rate(per_second=1, burst=2)
    assert schedule({"b": 0.0}, {"b": rate}, 100.0, 2, 0.0).slots == (100.0, 100.0)


def test_the_tightest_of_several_buckets_sets_every_slot():
    rates = {"fast": Rate(per_second=100, burst=50), "slow": Rate(per_second=4)}
    plan = schedule({}, rates, now=0.0, count=3, horizon=10.0)
    assert plan.slots == pytest.approx([0.0, 0.25, 0.5])
    assert plan.limiting == "slow"
    assert plan.tats["fast"] == pytest.approx(0.51)  # every cell is charged to both


def test_over_a_long_run_the_rate_is_exactly_per_second():
    rate, tat, now, sent = Rate(per_second=20, burst=20), 0.0, 0.0, 0
    while now < 20.0:  # a claimer that looks every 7 ms and takes what conforms
        while conforms_at(tat, rate) <= now:
            tat, sent = charge(tat, now, rate), sent + 1
        now += 0.007
    assert 20 * 20 + 20 - 1 <= sent <= 20 * 20 + 20 + 1  # the burst, then 20 per second


def test_next_conforming_is_now_for_a_bucket_with_room():
    rates = {"b": Rate(per_second=5, burst=2)}
    assert next_conforming({}, rates, 7.0) == 7.0
    assert next_conforming({"b": 8.0}, rates, 7.0) == pytest.approx(7.8)


def test_schedule_needs_a_bucket():
    with pytest.raises(ValueError, match="at least one bucket"):
        schedule({}, {}, 0.0, 1, 1.0)
