"""Canary releases over real sockets: a slice of a held campaign first, the rest after a quiet
observation, each recipient delivered once; bad requests named; operators' decisions win."""

from __future__ import annotations

from collections import Counter

import pytest

from tests.clock import ManualClock
from tests.harness import held_campaign, run_gateway
from tests.helpers import eventually

RECIPIENTS = 200


@pytest.fixture
def clock():
    return ManualClock()


@pytest.fixture
async def gw(settings_for, upstream, clock):
    settings = settings_for(upstream.port, ops={"canary_poll_interval": "20ms"})
    async with run_gateway(settings, clock=clock) as running:
        yield running


def delivered(upstream) -> Counter:
    return Counter(r for t in upstream.transactions for r in t.rcpt_tos)


async def canary_state(gw, campaign_id: str, state: str) -> dict | None:
    status, body = await gw.api().get(f"/api/v1/campaigns/{campaign_id}")
    assert status == 200
    return body if body["canary"]["state"] == state else None


async def test_a_quiet_canary_sends_its_slice_then_the_rest_each_once(gw, upstream, clock):
    campaign_id = await held_campaign(gw, RECIPIENTS)
    status, body = await gw.api().post(
        f"/api/v1/campaigns/{campaign_id}/release",
        {"reason": "try 5% first", "canary": "5%", "observe": "10m"},
    )
    assert status == 200, body
    assert body["state"] == "held"  # the rest stays held while the slice is out
    assert body["canary"]["state"] == "sending"
    assert body["canary"]["recipients"] == 10
    assert body["counters"]["held"] == RECIPIENTS - 10

    observing = await eventually(lambda: canary_state(gw, campaign_id, "observing"))
    assert sum(delivered(upstream).values()) == 10
    assert observing["counters"]["held"] == RECIPIENTS - 10
    assert observing["counters"]["queued"] == 0
    assert observing["canary"]["waiting"] == 0
    assert observing["canary"]["decide_at"] is not None

    clock.advance(601)
    done = await eventually(lambda: canary_state(gw, campaign_id, "completed"))
    assert done["state"] == "released"
    await eventually(lambda: sum(delivered(upstream).values()) == RECIPIENTS)
    assert set(delivered(upstream).values()) == {1}
    events = [step["event"] for step in done["timeline"]]
    assert events.index("canary_started") < events.index("canary_sent")
    assert events.index("canary_sent") < events.index("canary_completed")

    status, audit = await gw.api().get("/api/v1/audit")
    assert status == 200
    by_canary = [e for e in audit["items"] if e["actor"] == "canary"]
    assert len(by_canary) == 1
    assert by_canary[0]["target"] == campaign_id
    assert by_canary[0]["action"] == "release campaign"


async def test_an_operator_releasing_during_the_observation_ends_the_canary(gw, upstream):
    campaign_id = await held_campaign(gw, RECIPIENTS)
    api = gw.api()
    status, _ = await api.post(
        f"/api/v1/campaigns/{campaign_id}/release", {"reason": "slice", "canary": 20}
    )
    assert status == 200
    await eventually(lambda: canary_state(gw, campaign_id, "observing"))
    status, body = await api.post(f"/api/v1/campaigns/{campaign_id}/release", {"reason": "go"})
    assert status == 200
    assert body["state"] == "released"
    await eventually(lambda: canary_state(gw, campaign_id, "ended"))
    await eventually(lambda: sum(delivered(upstream).values()) == RECIPIENTS)
    assert set(delivered(upstream).values()) == {1}


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"canary": "150%"}, "canary"),
        ({"canary": 0}, "canary"),
        ({"canary": "five"}, "canary"),
        ({"canary": 10, "max_recipients": 5}, "canary"),
        ({"observe": "1h"}, "observe"),
        ({"canary": 10, "observe": "soon"}, "observe"),
    ],
)
async def test_bad_canary_requests_name_the_field_and_change_nothing(gw, body, field):
    campaign_id = await held_campaign(gw, 60)
    status, problem = await gw.api().post(
        f"/api/v1/campaigns/{campaign_id}/release", {"reason": "x", **body}
    )
    assert status == 422, problem
    assert [e["field"] for e in problem["errors"]] == [field]
    status, campaign = await gw.api().get(f"/api/v1/campaigns/{campaign_id}")
    assert campaign["counters"]["held"] == 60
    assert campaign["canary"] is None


async def test_a_canary_as_large_as_what_is_held_is_refused(gw):
    campaign_id = await held_campaign(gw, 60)
    status, problem = await gw.api().post(
        f"/api/v1/campaigns/{campaign_id}/release", {"reason": "x", "canary": 60}
    )
    assert status == 409
    assert "release instead" in problem["detail"]
    status, campaign = await gw.api().get(f"/api/v1/campaigns/{campaign_id}")
    assert campaign["counters"]["held"] == 60
