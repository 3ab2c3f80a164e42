"""The HTTP upstream end to end: SendGrid's SDK sends to the gateway's send API, and the
gateway relays with `upstream.kind: sendgrid` to the fake provider, over real sockets.

Each recipient must reach the provider exactly once with its own rendered content and
custom args naming its message and campaign; a held campaign reaches it only once
released; a throttling provider delays the campaign by its Retry-After and loses nothing.
"""

from __future__ import annotations

import asyncio
from typing import Any

from tests.esp import personalised, sdk
from tests.fakes.sendgrid_provider import KEY, FakeSendGrid
from tests.harness import make_settings, run_gateway
from tests.helpers import eventually


def sendgrid_gateway(tmp_path, provider: FakeSendGrid, **sections: dict[str, Any]):
    upstream = {"kind": "sendgrid", "base_url": provider.url, "api_key": KEY, "process": "gateway"}
    return make_settings(tmp_path, esp={"listen": "127.0.0.1:0"}, upstream=upstream, **sections)


def by_reader(provider: FakeSendGrid) -> dict[str, dict[str, Any]]:
    """Each delivered recipient's (request body, personalization); fails on a duplicate."""
    found: dict[str, dict[str, Any]] = {}
    for request in provider.delivered:
        for person in request.body["personalizations"]:
            [to] = person["to"]
            assert to["email"] not in found, f"{to['email']} delivered twice"
            found[to["email"]] = {"body": request.body, "person": person}
    return found


async def campaign_of(gw, key: str) -> dict[str, Any]:
    status, page = await gw.api().get("/api/v1/campaigns")
    assert status == 200
    return next(c for c in page["items"] if c["key"] == key)


async def relayed(gw, key: str, count: int) -> dict[str, int] | None:
    """The campaign's counters once `count` recipients are settled as relayed, else None."""
    counters = (await campaign_of(gw, key))["counters"]
    return counters if counters["relayed"] >= count else None


async def test_a_500_reader_campaign_reaches_the_provider_once_per_reader_with_own_content(
    tmp_path, sendgrid
):
    async with run_gateway(sendgrid_gateway(tmp_path, sendgrid)) as gw:
        mail = personalised(500, campaign="spring-500", declared=500)
        response = await asyncio.to_thread(sdk(gw).send, mail)
        assert response.status_code == 202

        await eventually(lambda: len(sendgrid.recipients) >= 500, timeout=60)
        readers = by_reader(sendgrid)
        assert sorted(readers) == sorted(f"reader{i}@example.org" for i in range(500))
        campaign = await campaign_of(gw, "spring-500")
        messages = set()
        for i in range(500):
            got = readers[f"reader{i}@example.org"]
            body, person = got["body"], got["person"]
            assert person["to"] == [{"email": f"reader{i}@example.org", "name": f"Name{i}"}]
            assert body["from"] == {"email": "news@shop.test", "name": "Shop"}
            assert body["subject"] == f"A spring note for Name{i}"
            text, html = body["content"]
            assert text == {
                "type": "text/plain",
                "value": f"Dear Name{i}, the spring collection is in the shop now.\n",
            }
            assert html["value"].startswith(f"<p>Dear Name{i}, the spring")
            assert body["headers"]["X-Campaign-ID"] == "spring-500"
            assert "X-Declared-Size" not in body["headers"]  # stripped, as on SMTP
            args = person["custom_args"]
            assert args["campaign_id"] == "spring-500"  # the platform's own, kept
            assert args["sendbrake_campaign"] == campaign["id"]
            assert body["headers"]["X-Sendbrake-Message"] == args["sendbrake_message"]
            messages.add(args["sendbrake_message"])
        assert len(messages) == 500  # one message per personalization, each named
        status, message = await gw.api().get(f"/api/v1/messages/{messages.pop()}")
        assert status == 200, message

        counters = await eventually(lambda: relayed(gw, "spring-500", 500))
        assert counters["failed"] == counters["deferred"] == 0
        assert len(sendgrid.requests) == 500  # nothing was sent twice, nothing refused


async def test_an_oversize_campaign_is_held_then_released_and_delivered_exactly_once(
    tmp_path, sendgrid
):
    async with run_gateway(sendgrid_gateway(tmp_path, sendgrid)) as gw:
        # Declared 5: blast-declared holds past 5 × 1.5 and 5 + 50.
        mail = personalised(80, campaign="tiny", declared=5)
        assert (await asyncio.to_thread(sdk(gw).send, mail)).status_code == 202
        campaign = await campaign_of(gw, "tiny")
        assert campaign["state"] == "held"
        assert campaign["counters"]["held"] == 80
        assert sendgrid.requests == []

        status, released = await gw.api("alice").post(
            f"/api/v1/campaigns/{campaign['id']}/release", {"reason": "list grew, checked"}
        )
        assert status == 200, released
        await eventually(lambda: len(sendgrid.recipients) >= 80, timeout=30)
        # A second release finds nothing held: nothing goes out again.
        status, again = await gw.api("bob").post(
            f"/api/v1/campaigns/{campaign['id']}/release", {"reason": "again"}
        )
        assert status == 200, again  # idempotent: nothing was held any more
        counters = await eventually(lambda: relayed(gw, "tiny", 80))
        assert sorted(by_reader(sendgrid)) == sorted(f"reader{i}@example.org" for i in range(80))
        assert len(sendgrid.recipients) == 80
        assert counters["escaped"] == 0


async def test_a_throttling_provider_delays_the_campaign_by_retry_after_and_loses_nothing(
    tmp_path, sendgrid
):
    # One delivery at a time, so that the order of calls tells what the gateway waited for.
    settings = sendgrid_gateway(tmp_path, sendgrid, relay={"concurrency": 1})
    sendgrid.throttle_next(1, retry_after="1")
    async with run_gateway(settings) as gw:
        mail = personalised(20, campaign="throttled", declared=20)
        assert (await asyncio.to_thread(sdk(gw).send, mail)).status_code == 202
        await eventually(lambda: len(sendgrid.recipients) >= 20, timeout=30)

        first, *rest = sendgrid.requests
        assert first.status == 429
        assert all(r.status == 202 for r in rest)
        # Nothing was called again before the provider's Retry-After had passed (its own
        # backoff, relay.retry_base, is 50 ms in the tests).
        assert rest[0].at - first.at >= 0.99
        assert sorted(by_reader(sendgrid)) == sorted(f"reader{i}@example.org" for i in range(20))
        counters = await eventually(lambda: relayed(gw, "throttled", 20))
        assert counters["failed"] == 0
        registry = gw.gateway.metrics.registry
        deferred = registry.get_sample_value(
            "sendbrake_recipients_relayed_total", {"outcome": "deferred"}
        )
        assert deferred is not None
        assert deferred >= 1  # the throttled one at least, and those that waited with it
