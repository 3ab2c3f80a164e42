"""Canary releases and the feedback breaker over real sockets: a slice of a held campaign
first, the rest after a quiet observation, each recipient delivered once; complaints posted
as signed SendGrid events fail the canary (nothing past it sent) or hold a sending campaign;
bad requests named; operators' decisions win."""

from __future__ import annotations

import shutil
from collections import Counter

import aiohttp
import pytest

from tests.clock import ManualClock
from tests.harness import POLICIES, held_campaign, run_gateway, send_campaign
from tests.helpers import eventually
from tests.webhooks import Signer, batch, event

RECIPIENTS = 200
BREAKER = "  - {id: breaker, kind: feedback, min_sent: 10, max_rate: {complained: 0.05}}\n"


@pytest.fixture
def clock():
    return ManualClock()


@pytest.fixture
def signer():
    return Signer()


@pytest.fixture
async def gw(settings_for, upstream, clock, signer, tmp_path):
    policies = tmp_path / "policies"
    policies.mkdir()
    shutil.copy(POLICIES / "default.yaml", policies)
    (policies / "breaker.yaml").write_text(f"version: 1\nrules:\n{BREAKER}")
    settings = settings_for(
        upstream.port,
        ops={"canary_poll_interval": "20ms"},
        policies={"dir": str(policies)},
        webhooks={"sendgrid": {"public_key": signer.public_key}},
    )
    async with run_gateway(settings, clock=clock) as running:
        yield running


async def complain(gw, signer, clock, campaign_id: str, addresses: list[str]) -> None:
    """Post signed spam reports about these relayed recipients, as SendGrid would."""
    rows = {r.address: r for r in await gw.spool.recipients(campaign_id=campaign_id)}
    events = [
        event("spamreport", a, rows[a].message_id, campaign_id, n, clock.now)
        for n, a in enumerate(addresses)
    ]
    body = batch(events)
    async with (
        aiohttp.ClientSession() as http,
        http.post(
            gw.http_url + "/webhooks/sendgrid", data=body, headers=signer.headers(body, clock.now)
        ) as response,
    ):
        assert response.status == 200, await response.text()


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


async def test_complaints_about_the_slice_fail_the_canary_and_nothing_more_goes_out(
    gw, upstream, clock, signer
):
    campaign_id = await held_campaign(gw, RECIPIENTS)
    status, body = await gw.api().post(
        f"/api/v1/campaigns/{campaign_id}/release",
        {"reason": "try 5% first", "canary": "5%", "observe": "10m"},
    )
    assert status == 200, body
    await eventually(lambda: canary_state(gw, campaign_id, "observing"))
    slice_ = sorted(delivered(upstream))
    assert len(slice_) == 10

    await complain(gw, signer, clock, campaign_id, slice_[:2])  # 2 of 10 sent: 20 % > 5 %

    async def failed_with_findings():
        body = await canary_state(gw, campaign_id, "failed")
        return body if body and any(f["rule"] == "breaker" for f in body["findings"]) else None

    failed = await eventually(failed_with_findings)
    assert failed["state"] == "held"
    assert failed["counters"]["held"] == RECIPIENTS - 10
    [finding] = [f for f in failed["findings"] if f["rule"] == "breaker"]
    assert finding["kind"] == "complaint_rate"
    evidence = finding["evidence"]
    assert (evidence["count"], evidence["sent"], evidence["rate"]) == (2, 10, 0.2)
    assert {s["recipient"] for s in evidence["samples"]} == set(slice_[:2])
    assert failed["feedback"]["complained"] == 2
    assert "canary_failed" in [step["event"] for step in failed["timeline"]]

    clock.advance(3600)  # long past the observation: the rest stays held
    await eventually(lambda: canary_state(gw, campaign_id, "failed"))
    status, after = await gw.api().get(f"/api/v1/campaigns/{campaign_id}")
    assert after["state"] == "held"
    assert after["counters"]["held"] == RECIPIENTS - 10
    assert after["counters"]["queued"] == 0
    assert sorted(delivered(upstream)) == slice_  # nothing past the canary


async def test_complaints_hold_a_campaign_that_is_sending(gw, upstream, clock, signer):
    rcpts = [f"reader{i}@example.org" for i in range(40)]
    campaign_id = await send_campaign(gw, "spring-news", rcpts)
    await eventually(lambda: sum(delivered(upstream).values()) == 40)

    await complain(gw, signer, clock, campaign_id, rcpts[:3])  # 3 of 40: 7.5 % > 5 %
    status, held = await gw.api().get(f"/api/v1/campaigns/{campaign_id}")
    assert status == 200
    assert held["state"] == "held"
    held_step = [s for s in held["timeline"] if s["event"] == "held"]
    assert held_step[-1]["actor"] == "feedback"
    assert held_step[-1]["rules"] == ["breaker"]
    more = [f"later{i}@example.org" for i in range(5)]
    assert await send_campaign(gw, "spring-news", more) == campaign_id
    status, after = await gw.api().get(f"/api/v1/campaigns/{campaign_id}")
    assert after["counters"]["held"] == 5  # later mail waits for a reviewer
    assert sum(delivered(upstream).values()) == 40


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
