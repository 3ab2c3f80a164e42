"""The spool's gauge snapshot (what /metrics reads at scrape time), on every backend."""

from __future__ import annotations

from gateway.model import Finding, Settlement, Verdict
from gateway.states import RecipientState
from tests.spool.records import NOW, WINDOW, Decide, accept, pass_all, submission


def _hold(campaign, sub, facts):
    return Verdict(hold=True, findings=(Finding(rule="r", kind="k", mode="enforce", message="m"),))


hold_all = Decide(_hold)


async def test_an_empty_spool_reports_nothing_held_and_every_state_at_zero(spool):
    gauges = await spool.gauges()
    assert gauges.campaigns_held == 0
    assert gauges.recipients_held == 0
    assert gauges.oldest_held_at is None
    assert gauges.held == ()
    assert gauges.relay_paused is False
    assert dict(gauges.recipients) == dict.fromkeys(RecipientState, 0)


async def test_gauges_count_held_campaigns_and_recipients_by_state(spool):
    await accept(spool, submission(["a@x.test", "b@x.test"], key="clean"), pass_all, WINDOW)
    first = await accept(spool, submission(["c@x.test"], key="one", at=NOW + 1), hold_all, WINDOW)
    second = await accept(
        spool,
        submission(["d@x.test", "e@x.test", "f@x.test"], key="two", at=NOW + 5),
        hold_all,
        WINDOW,
    )
    [delivery] = await spool.claim("w1", NOW + 6, 10, 60)
    rid = delivery.recipients[0][0]
    await spool.settle("w1", [Settlement(rid, RecipientState.RELAYED, "250 ok")], NOW + 6)

    gauges = await spool.gauges()
    assert gauges.campaigns_held == 2
    assert gauges.recipients_held == 4
    assert gauges.oldest_held_at == NOW + 1
    assert [(h.id, h.key, h.client) for h in gauges.held] == [
        (first.campaign_id, "one", "127.0.0.0/8"),
        (second.campaign_id, "two", "127.0.0.0/8"),
    ]
    assert gauges.recipients[RecipientState.HELD] == 4
    assert gauges.recipients[RecipientState.RELAYED] == 1
    assert gauges.recipients[RecipientState.SENDING] == 1


async def test_released_and_rejected_campaigns_leave_the_held_gauges(spool):
    one = await accept(spool, submission(["a@x.test"], key="one"), hold_all, WINDOW)
    two = await accept(spool, submission(["b@x.test"], key="two", at=NOW + 1), hold_all, WINDOW)
    await spool.release(one.campaign_id, "alice", NOW + 2)
    gauges = await spool.gauges()
    assert (gauges.campaigns_held, gauges.recipients_held) == (1, 1)
    assert gauges.oldest_held_at == NOW + 1
    await spool.reject(two.campaign_id, "alice", NOW + 3)
    gauges = await spool.gauges()
    assert (gauges.campaigns_held, gauges.recipients_held, gauges.held) == (0, 0, ())
    assert gauges.recipients[RecipientState.DISCARDED] == 1
    assert gauges.recipients[RecipientState.QUEUED] == 1


async def test_named_held_campaigns_are_capped_but_the_count_is_not(spool):
    for i in range(5):
        await accept(spool, submission([f"u{i}@x.test"], key=f"k{i}", at=NOW + i), hold_all, WINDOW)
    gauges = await spool.gauges(limit=3)
    assert gauges.campaigns_held == 5
    assert [h.key for h in gauges.held] == ["k0", "k1", "k2"]  # the longest-waiting first


async def test_the_relay_pause_flag_is_in_the_snapshot(spool):
    await spool.set_relay_paused(paused=True, actor="alice", reason="incident", now=NOW)
    assert (await spool.gauges()).relay_paused is True
    await spool.set_relay_paused(paused=False, actor="alice", reason="over", now=NOW + 1)
    assert (await spool.gauges()).relay_paused is False
