"""Provider feedback through a running gateway: signed webhooks, forwarding, dead letters, DSNs.

A real gateway relays a small campaign; SendGrid-style signed event batches are posted
to its ops listener; a fake platform endpoint (a real aiohttp server) receives what the
gateway forwards, failing when told to. The gateway's clock is a `ManualClock`, moved
past backoff delays and the maximum age instead of waiting for them.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from tests.clock import ManualClock
from tests.fakes.platform import FakePlatform
from tests.harness import Running, run_gateway, send_campaign
from tests.helpers import eventually
from tests.webhooks import Signer, batch, dsn, event

HOOK = "/webhooks/sendgrid"
RECIPIENTS = [f"r{i}@example.org" for i in range(6)]


@pytest.fixture
async def platform() -> AsyncIterator[FakePlatform]:
    fake = await FakePlatform().start()
    yield fake
    await fake.stop()


@pytest.fixture
def signer() -> Signer:
    return Signer()


def hook_settings(
    settings_for, signer: Signer, platform: FakePlatform, **sections: dict[str, Any]
) -> Any:
    return settings_for(
        **sections,
        webhooks={
            "sendgrid": {
                "public_key": signer.public_key,
                "forward_url": platform.url,
                "retry_base": "10s",
                "retry_max_delay": "1m",
                "max_age": "1h",
                "timeout": "5s",
                "poll_interval": "50ms",
            }
        },
        feedback={"dsn_recipients": ["bounces@shop.test"]},
    )


async def post(gw: Running, body: bytes, headers: dict[str, str]) -> tuple[int, Any]:
    async with (
        aiohttp.ClientSession() as http,
        http.post(gw.http_url + HOOK, data=body, headers=headers) as response,
    ):
        return response.status, await response.json(content_type=None)


async def campaign_events(gw: Running, clock: ManualClock) -> tuple[str, list[dict[str, Any]]]:
    """Relay a campaign of six; return its id and one event of each kind for its recipients."""
    campaign = await send_campaign(gw, "spring", RECIPIENTS)
    rows = await gw.spool.recipients(campaign_id=campaign)
    mid = {row.address: row.message_id for row in rows}
    kinds = ["delivered", "bounce", "spamreport", "unsubscribe", "dropped", "open"]
    events = [
        event(
            kind, address.upper(), mid[address], campaign, n, clock.now, reason="550 no such user"
        )
        for n, (kind, address) in enumerate(zip(kinds, RECIPIENTS, strict=True))
    ]
    events.append(event("bounce", "stranger@example.org", "01UNKNOWN", campaign, 99, clock.now))
    return campaign, events


async def forward_settled(gw: Running, state: str, attempts: int) -> dict[str, Any] | None:
    """The one forwarded batch, once it is in `state` after `attempts` attempts."""
    status, page = await gw.api("viewer").get("/api/v1/webhooks/deliveries")
    assert status == 200
    [delivery] = page["items"]
    return delivery if (delivery["state"], delivery["attempts"]) == (state, attempts) else None


async def feedback(gw: Running, campaign: str) -> dict[str, int]:
    status, body = await gw.api("viewer").get(f"/api/v1/campaigns/{campaign}")
    assert status == 200
    return body["feedback"]


async def test_signed_events_are_counted_once_and_forwarded_exactly_once_through_outages(
    settings_for, signer, platform
):
    clock = ManualClock()
    async with run_gateway(hook_settings(settings_for, signer, platform), clock=clock) as gw:
        campaign, events = await campaign_events(gw, clock)
        platform.fail_next(2)  # the platform is down for the first two attempts
        body = batch(events)
        status, receipt = await post(gw, body, signer.headers(body, clock.now))
        assert (status, receipt) == (
            200,
            {"received": 7, "new": 7, "unattributed": 1, "forwarding": True},
        )
        counts = {"delivered": 1, "bounced": 1, "dropped": 1, "complained": 1, "unsubscribed": 1}
        assert await feedback(gw, campaign) == counts

        # SendGrid retries a batch it got no 2xx for: counted and forwarded once.
        clock.advance(1)
        status, receipt = await post(gw, body, signer.headers(body, clock.now))
        assert (status, receipt["new"], receipt["forwarding"]) == (200, 0, False)
        assert await feedback(gw, campaign) == counts

        await eventually(lambda: platform.attempts == 1)
        for attempt in (1, 2):  # past each backoff (10 s, then 20 s, plus at most 20 % jitter)
            # The failed attempt is settled (its retry planned) before the clock moves on.
            await eventually(lambda a=attempt: forward_settled(gw, "pending", a))
            clock.advance(25)
            gw.gateway.forwarder.wake()
            await eventually(lambda a=attempt: platform.attempts == a + 1)
        [(forwarded, headers)] = platform.accepted
        assert forwarded == body  # as SendGrid sent it, in order
        assert [e["sg_event_id"] for e in platform.events] == [e["sg_event_id"] for e in events]
        assert headers["Content-Type"] == "application/json"
        delivery = await eventually(lambda: forward_settled(gw, "delivered", 3))
        assert delivery["events"] == 7
        assert platform.attempts == 3

        status, detail = await gw.api("viewer").get(f"/api/v1/campaigns/{campaign}")
        samples = {(s["kind"], s["recipient"]) for s in detail["feedback_samples"]}
        assert ("bounced", "r1@example.org") in samples
        metrics = await gw.api(None).get("/metrics")
        assert 'sendbrake_feedback_events_total{event="unattributed"} 1.0' in metrics[1]
        assert 'sendbrake_feedback_events_total{event="duplicate"} 7.0' in metrics[1]
        assert 'sendbrake_webhook_forwards_total{outcome="retried"} 2.0' in metrics[1]
        assert "sendbrake_webhook_forward_backlog 0.0" in metrics[1]


SPOILED = {
    "body-changed": lambda signer, body, now: (signer.headers(body, now), body + b" "),
    "unsigned": lambda signer, body, now: ({"Content-Type": "application/json"}, body),
    "other-key": lambda signer, body, now: (Signer().headers(body, now), body),
    "stale": lambda signer, body, now: (signer.headers(body, now - 301), body),
    "future": lambda signer, body, now: (signer.headers(body, now + 301), body),
}


@pytest.mark.parametrize("spoil", SPOILED.values(), ids=SPOILED.keys())
async def test_a_bad_or_stale_signature_gets_401_and_changes_nothing(
    settings_for, signer, platform, spoil
):
    clock = ManualClock()
    async with run_gateway(hook_settings(settings_for, signer, platform), clock=clock) as gw:
        campaign, events = await campaign_events(gw, clock)
        headers, sent = spoil(signer, batch(events), clock.now)
        status, problem = await post(gw, sent, headers)
        assert (status, problem["type"]) == (
            401,
            "https://sendbrake.dev/problems/invalid-signature",
        )
        assert await feedback(gw, campaign) == dict.fromkeys(
            ("delivered", "bounced", "dropped", "complained", "unsubscribed"), 0
        )
        assert await gw.spool.forwards() == []
        assert await gw.spool.unattributed_feedback() == {}
    assert platform.attempts == 0


async def test_a_malformed_batch_gets_400_naming_the_field(settings_for, signer, platform):
    clock = ManualClock()
    async with run_gateway(hook_settings(settings_for, signer, platform), clock=clock) as gw:
        body = json.dumps([{"event": "delivered", "email": "a@x.test"}]).encode()
        status, problem = await post(gw, body, signer.headers(body, clock.now))
        assert status == 400
        assert problem["errors"] == [
            {"field": "[0].timestamp", "detail": "required: seconds since the epoch"}
        ]
        assert await gw.spool.forwards() == []


async def test_a_batch_older_than_max_age_becomes_a_dead_letter_visible_and_retryable(
    settings_for, signer, platform
):
    clock = ManualClock()
    async with run_gateway(hook_settings(settings_for, signer, platform), clock=clock) as gw:
        _, events = await campaign_events(gw, clock)
        platform.fail_next(1000, status=503)
        body = batch(events)
        assert (await post(gw, body, signer.headers(body, clock.now)))[0] == 200
        await eventually(lambda: forward_settled(gw, "pending", 1))
        clock.advance(3601)  # past webhooks.sendgrid.max_age
        gw.gateway.forwarder.wake()
        viewer = gw.api("viewer")

        async def dead() -> list[dict[str, Any]]:
            return (await viewer.get("/api/v1/webhooks/deliveries?state=dead"))[1]["items"]

        [letter] = await eventually(dead)
        assert (letter["attempts"], letter["last_error"]) == (
            2,
            "HTTP 503: platform down for maintenance",
        )
        metrics = (await gw.api(None).get("/metrics"))[1]
        assert "sendbrake_webhook_forwards_dead 1.0" in metrics
        assert (await viewer.get("/api/v1/webhooks/deliveries?state=pending"))[1]["items"] == []

        retry = f"/api/v1/webhooks/deliveries/{letter['id']}/retry"
        assert (await viewer.post(retry, {"reason": "platform is back"}))[0] == 403
        platform.recover()
        status, again = await gw.api("alice").post(retry, {"reason": "platform is back"})
        assert (status, again["state"]) == (200, "pending")
        await eventually(lambda: len(platform.accepted) == 1)
        assert platform.accepted[0][0] == body
        status, _ = await gw.api("alice").post(retry, {"reason": "again"})
        assert status == 409
        _, audit = await gw.api("viewer").get("/api/v1/audit")
        assert [(e["action"], e["outcome"]) for e in audit["items"][:2]] == [
            ("retry webhook delivery", "refused"),
            ("retry webhook delivery", "ok"),
        ]


@pytest.mark.parametrize("processes", [0, 2], ids=["in-process", "ingress-processes"])
async def test_a_dsn_to_the_return_path_counts_a_bounce_of_its_recipient_and_is_not_relayed(
    settings_for, signer, platform, processes
):
    # Through SMTP ingress processes too: the report is recognised by the gateway's admit.
    settings = hook_settings(settings_for, signer, platform, smtp={"processes": processes})
    clock = ManualClock()
    async with run_gateway(settings, clock=clock) as gw:
        campaign = await send_campaign(gw, "spring", RECIPIENTS)
        rows = await gw.spool.recipients(campaign_id=campaign)
        report = dsn("R5@example.org", rows[5].message_id)
        assert await gw.send("", ["bounces@shop.test"], report) == {}
        assert await gw.send("", ["bounces@shop.test"], report) == {}  # sent twice: counted once
        assert (await feedback(gw, campaign))["bounced"] == 1
        [only] = await gw.spool.campaigns()
        assert only.id == campaign  # the report is no campaign of its own
        assert await gw.spool.recipients(message_id=rows[5].message_id, limit=10) != []
        assert len(await gw.spool.recipients(campaign_id=campaign)) == len(RECIPIENTS)
        [sample] = await gw.spool.feedback_samples(campaign)
        assert (sample.kind, sample.recipient, sample.evidence["status"]) == (
            "bounced",
            "r5@example.org",
            "5.1.1",
        )
        unknown = dsn("someone@example.org", "01NOT-OURS")
        assert await gw.send("", ["bounces@shop.test"], unknown) == {}
        assert await gw.spool.unattributed_feedback() == {"bounced": 1}
    assert platform.attempts == 0  # reports are counted, not forwarded
