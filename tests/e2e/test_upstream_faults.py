"""The relay against an upstream that refuses, fails, disappears and hangs.

Retry delays and the maximum age run on a `ManualClock`: a test holds the gateway's clock
still and advances it past a window, so nothing waits for one in real time.
"""

from __future__ import annotations

import io
import sqlite3

import pytest

from gateway.log import configure
from gateway.states import RecipientState
from tests.clock import ManualClock
from tests.harness import advance, opened_spool, run_gateway
from tests.helpers import eventually
from tests.mail import message


async def _states(spool) -> dict[str, RecipientState]:
    return {r.address: r.state for r in await spool.recipients()}


async def test_transient_failure_is_retried_with_backoff_and_delivered_once(settings_for, upstream):
    upstream.fail_next(1, "451 4.3.0 greylisted, try later")
    settings = settings_for(
        upstream.port, relay={"retry_base": "300ms", "retry_max_delay": "1s", "retry_jitter": 0}
    )
    clock = ManualClock()
    async with run_gateway(settings, clock=clock) as gw:
        await gw.send("news@shop.test", ["a@example.org"], message())
        deferred = await eventually(
            lambda: gw.spool.recipients(state=RecipientState.DEFERRED), message="never deferred"
        )
        # The backoff is visible in the spool: the failed attempt, its reply, the next try.
        assert deferred[0].attempts == 1
        assert deferred[0].last_reply.startswith("451 4.3.0 greylisted")
        assert deferred[0].next_attempt_at - deferred[0].updated_at == pytest.approx(0.3)
        campaign = await gw.spool.campaign(deferred[0].campaign_id)
        assert campaign.counters.deferred == 1
        advance(gw, clock, 0.3)  # the retry is due
        relayed = await eventually(lambda: gw.spool.recipients(state=RecipientState.RELAYED))
        campaign = await gw.spool.campaign(relayed[0].campaign_id)
    assert relayed[0].attempts == 2
    assert upstream.attempts == 2
    assert upstream.recipients == ["a@example.org"]
    assert (campaign.counters.deferred, campaign.counters.relayed, campaign.counters.queued) == (
        0,
        1,
        0,
    )


async def test_permanent_refusal_of_one_recipient_fails_only_that_one(settings_for, upstream):
    upstream.rcpt_replies["b@example.org"] = "550 5.1.1 <b@example.org>: no such user"
    rcpts = ["a@example.org", "b@example.org", "c@example.org"]
    async with run_gateway(settings_for(upstream.port)) as gw:
        await gw.send("news@shop.test", rcpts, message())
        states = await eventually(lambda: _settled(gw.spool, 3), message="recipients not settled")
        failed = await gw.spool.recipients(state=RecipientState.FAILED)
        campaign = await gw.spool.campaign(failed[0].campaign_id)
    assert states == {
        "a@example.org": RecipientState.RELAYED,
        "b@example.org": RecipientState.FAILED,
        "c@example.org": RecipientState.RELAYED,
    }
    assert failed[0].last_reply.startswith("550 5.1.1")
    assert [t.rcpt_tos for t in upstream.transactions] == [["a@example.org", "c@example.org"]]
    assert (campaign.counters.relayed, campaign.counters.failed, campaign.counters.queued) == (
        2,
        1,
        0,
    )


async def _settled(spool, count):
    states = await _states(spool)
    done = {RecipientState.RELAYED, RecipientState.FAILED}
    return states if len(states) == count and set(states.values()) <= done else None


async def test_upstream_down_for_a_while_then_up_loses_nothing(settings_for, upstream):
    await upstream.stop()
    rcpts = [f"user{i}@example.org" for i in range(20)]
    clock = ManualClock()
    async with run_gateway(settings_for(upstream.port), clock=clock) as gw:
        for rcpt in rcpts:
            await gw.send("news@shop.test", [rcpt], message())
        deferred = await eventually(
            lambda: _count_in(gw.spool, RecipientState.DEFERRED, 20), message="not all deferred"
        )
        assert all("unreachable" in r.last_reply for r in deferred)
        await upstream.start()  # same port: the provider is back
        advance(gw, clock, 1.0)  # past every retry (at most 200ms plus jitter)
        await eventually(lambda: _count_in(gw.spool, RecipientState.RELAYED, 20), timeout=30)
    assert sorted(upstream.recipients) == sorted(rcpts)


async def _count_in(spool, state, count):
    rows = await spool.recipients(state=state)
    return rows if len(rows) == count else None


async def test_upstream_that_hangs_times_out_and_the_worker_is_not_stuck(settings_for, upstream):
    await upstream.stop()
    upstream.hang = True
    await upstream.start()
    settings = settings_for(
        upstream.port,
        upstream={"connect_timeout": "300ms", "command_timeout": "300ms"},
        relay={"concurrency": 1, "retry_base": "100ms"},
    )
    clock = ManualClock()  # the timeouts above are the loop's; the retry waits for this clock
    async with run_gateway(settings, clock=clock) as gw:
        await gw.send("news@shop.test", ["a@example.org"], message())
        deferred = await eventually(lambda: gw.spool.recipients(state=RecipientState.DEFERRED))
        assert "unreachable" in deferred[0].last_reply
        # The single worker is free again: once the provider answers, mail flows.
        await upstream.stop()
        upstream.hang = False
        await upstream.start()
        advance(gw, clock, 1.0)  # the retry is due
        await eventually(lambda: gw.spool.recipients(state=RecipientState.RELAYED), timeout=30)
        await gw.send("news@shop.test", ["b@example.org"], message())
        await eventually(lambda: _count_in(gw.spool, RecipientState.RELAYED, 2))
    assert sorted(upstream.recipients) == ["a@example.org", "b@example.org"]


async def test_a_recipient_deferred_past_the_maximum_age_fails(settings_for, upstream):
    upstream.fail_next(100, "421 4.7.0 try again later")
    settings = settings_for(upstream.port, relay={"max_age": "200ms", "retry_base": "50ms"})
    clock = ManualClock()
    async with run_gateway(settings, clock=clock) as gw:
        await gw.send("news@shop.test", ["a@example.org"], message())
        await eventually(lambda: gw.spool.recipients(state=RecipientState.DEFERRED))
        advance(gw, clock, 0.3)  # the retry is due, and the recipient is past max_age
        failed = await eventually(lambda: gw.spool.recipients(state=RecipientState.FAILED))
    assert failed[0].attempts >= 2
    assert "gave up" in failed[0].last_reply
    assert upstream.recipients == []


@pytest.mark.own_spool  # another process takes SQLite's write lock
async def test_the_relay_survives_a_spool_that_cannot_commit_and_resumes(
    settings_for, upstream, tmp_path
):
    upstream.fail_next(1)
    log = io.StringIO()
    configure("json", "warning", stream=log)
    settings = settings_for(
        upstream.port,
        relay={"retry_base": "300ms", "retry_jitter": 0},
        spool={"busy_timeout": "100ms"},
    )
    clock = ManualClock()
    async with run_gateway(settings, clock=clock) as gw:
        await gw.send("news@shop.test", ["a@example.org"], message())
        await eventually(lambda: gw.spool.recipients(state=RecipientState.DEFERRED))
        # Another process locks the database before the retry is due (a backup tool, say;
        # the clock stands still, so it is not due yet): the claim cannot commit, and the
        # relay must still be there afterwards.
        blocker = sqlite3.connect(tmp_path / "spool.db", isolation_level=None)
        blocker.execute("BEGIN EXCLUSIVE")
        try:
            await eventually(lambda: "relay_claim_failed" in log.getvalue(), timeout=30)
        finally:
            blocker.execute("COMMIT")
            blocker.close()
        advance(gw, clock, 0.3)  # the retry is due
        await eventually(lambda: upstream.recipients == ["a@example.org"], timeout=30)


async def test_shutdown_lets_an_in_flight_delivery_finish_and_records_it(
    settings_for, upstream, tmp_path
):
    upstream.ack_delay = 0.5  # the provider is slow to answer: the delivery is in flight
    settings = settings_for(upstream.port)
    async with run_gateway(settings) as gw:
        await gw.send("news@shop.test", ["a@example.org"], message())
        await eventually(lambda: upstream.transactions)  # DATA arrived; the 250 is pending
        # Leaving the block stops the gateway while the delivery waits for its answer.
    async with opened_spool(tmp_path) as spool:
        [row] = await spool.recipients()
    assert row.state is RecipientState.RELAYED
    assert row.last_reply.startswith("250")
