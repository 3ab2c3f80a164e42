"""What only a shared PostgreSQL spool must do: replicas that behave as one gateway.

Two `PostgresSpool`s on one schema are two replicas: each has its own writers, readers
and connections, and nothing between them but the database.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import psycopg
import pytest

from gateway.errors import SpoolError
from gateway.model import Finding, Verdict
from gateway.spool.postgres import PostgresSpool
from gateway.states import CampaignState, RecipientState
from tests.helpers import eventually
from tests.postgres import SERVER, private_schema
from tests.spool.records import NOW, WINDOW, Decide, accept, pass_all, submission

DECLARED, RATIO = 200, 1.5


def blast(campaign, sub, facts) -> Verdict:
    """Hold once the campaign has received more than DECLARED × RATIO recipients."""
    if campaign.counters.received > DECLARED * RATIO:
        return Verdict(findings=(Finding("blast", "oversize", "hold", "too many"),), hold=True)
    return Verdict()


@pytest.fixture
async def replicas() -> AsyncIterator[tuple[PostgresSpool, PostgresSpool]]:
    with private_schema() as url:
        tag = uuid.uuid4().hex[:8]  # names this test's connections in pg_stat_activity
        a = PostgresSpool(f"{url}&application_name=a_{tag}")
        b = PostgresSpool(f"{url}&application_name=b_{tag}")
        await asyncio.gather(a.open(), b.open())  # both migrate at once: one does the work
        yield a, b
        await asyncio.gather(a.close(), b.close())


async def test_two_replicas_count_one_campaign_exactly_and_hold_it_once(replicas):
    decider = Decide(blast)
    subs = [submission([f"u{i}@x.test"], size=DECLARED) for i in range(1_000)]
    admissions = await asyncio.gather(
        *(accept(replicas[i % 2], sub, decider) for i, sub in enumerate(subs))
    )
    assert len({a.campaign_id for a in admissions}) == 1  # never created twice
    assert sum(a.tripped for a in admissions) == 1  # held by exactly one admission
    passed = [a for a in admissions if not a.held]
    assert len(passed) == DECLARED * RATIO  # the bound a single gateway keeps, exactly
    campaign = await replicas[1].campaign(admissions[0].campaign_id)
    assert campaign.state is CampaignState.HELD
    assert campaign.counters.received == 1_000
    assert campaign.counters.queued + campaign.counters.held == 1_000


async def test_replicas_claiming_at_once_never_take_the_same_recipient(replicas):
    for i in range(300):
        await accept(replicas[i % 2], submission([f"u{i}@x.test"]), pass_all, WINDOW)
    taken: list[int] = []

    async def drain(spool: PostgresSpool, owner: str) -> None:
        while deliveries := await spool.claim(owner, NOW, 7, 60):
            taken.extend(rid for d in deliveries for rid, _ in d.recipients)

    await asyncio.gather(*(drain(replicas[n % 2], f"w{n}") for n in range(6)))
    assert len(taken) == 300
    assert len(set(taken)) == 300


async def test_a_dead_replicas_leases_are_taken_over_after_they_expire(replicas):
    a, b = replicas
    await accept(a, submission(["a@x.test", "b@x.test"]), pass_all, WINDOW)
    [delivery] = await a.claim("replica-a", NOW, 10, 60)
    assert await b.claim("replica-b", NOW + 30, 10, 60) == []  # A's lease still runs
    [taken] = await b.claim("replica-b", NOW + 61, 10, 60)
    assert taken.recipients == delivery.recipients
    assert await a.settle("replica-a", [], NOW + 62) == 0
    rows = await b.recipients(message_id=delivery.message_id)
    assert {r.state for r in rows} == {RecipientState.SENDING}


async def test_exactly_one_replica_leads_and_another_takes_over_when_it_goes(replicas):
    a, b = replicas
    first = [(await a.gauges()).leader, (await b.gauges()).leader]
    assert sorted(first) == [False, True]
    leader, follower = (a, b) if first[0] else (b, a)
    await leader.close()
    # The server lets go of the closed session's lock when its backend has exited, a moment
    # after close() returns (on a busy machine the next look came first).
    assert await eventually(lambda: _leads(follower))


async def _leads(spool) -> bool:
    return (await spool.gauges()).leader


async def test_a_unit_that_loses_a_deadlock_is_tried_again_alone(replicas):
    tries = []

    def victim(conn):
        tries.append(len(tries))
        if len(tries) == 1:
            conn.execute("SELECT 1")
            raise psycopg.errors.DeadlockDetected("deadlock detected")
        return conn.execute("SELECT 42").fetchone()[0]

    other = accept(replicas[0], submission(["a@x.test"]), pass_all, WINDOW)
    result, admission = await asyncio.gather(replicas[0]._write(victim), other)
    assert result == 42
    assert tries == [0, 1]
    assert (await replicas[0].campaign(admission.campaign_id)).counters.received == 1


async def test_a_spool_that_cannot_reach_its_database_says_so_and_recovers(replicas):
    a, _ = replicas
    await accept(a, submission(["a@x.test"]), pass_all, WINDOW)
    await a.ping()
    with psycopg.connect(SERVER, autocommit=True) as admin:  # as a database restart does
        killed = admin.execute(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
            " WHERE application_name = %s",
            (a.url.rsplit("application_name=", 1)[1],),
        ).fetchone()[0]
    assert killed >= 2  # its writers and the reader that answered the first ping
    await a.ping()  # a read reconnects on its own
    admission = await accept(a, submission(["b@x.test"]), pass_all, WINDOW)  # so do writers
    assert (await a.campaign(admission.campaign_id)).counters.received == 2


async def test_an_unreachable_database_is_a_spool_error():
    spool = PostgresSpool("postgresql://postgres@127.0.0.1:1/none", connect_timeout=1)
    with pytest.raises(SpoolError, match="cannot reach"):
        await spool.open()


async def test_spools_in_two_schemas_of_one_database_never_share_a_lock():
    with private_schema() as first_url, private_schema() as second_url:
        first, second = PostgresSpool(first_url), PostgresSpool(second_url)
        await asyncio.gather(first.open(), second.open())
        try:
            assert (await first.gauges()).leader is True
            assert (await second.gauges()).leader is True  # its own deployment, its own leader
        finally:
            await asyncio.gather(first.close(), second.close())
