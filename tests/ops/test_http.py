"""Health, readiness and metrics over real HTTP."""

from __future__ import annotations

import aiohttp

from tests.harness import run_gateway
from tests.helpers import eventually
from tests.mail import message
from tests.metrics import samples


async def test_health_and_readiness_answer(settings_for):
    async with run_gateway(settings_for()) as gw, aiohttp.ClientSession() as http:
        async with http.get(f"{gw.http_url}/healthz") as response:
            assert response.status == 200
            assert await response.json() == {"status": "ok"}
        async with http.get(f"{gw.http_url}/readyz") as response:
            assert response.status == 200
            assert (await response.json())["status"] == "ready"


async def test_readiness_fails_when_the_spool_cannot_answer(settings_for):
    async with run_gateway(settings_for()) as gw, aiohttp.ClientSession() as http:
        await gw.spool.close()  # as if the database went away under a running gateway
        async with http.get(f"{gw.http_url}/readyz") as response:
            assert response.status == 503
        await gw.spool.open()  # so shutdown can close it again


async def test_metrics_count_received_and_relayed_recipients(settings_for, upstream):
    upstream.rcpt_replies["bad@example.org"] = "550 5.1.1 unknown"
    async with run_gateway(settings_for(upstream.port)) as gw, aiohttp.ClientSession() as http:
        await gw.send("news@shop.test", ["a@example.org", "b@example.org"], message())
        await gw.send("news@shop.test", ["bad@example.org"], message())

        async def scrape():
            async with http.get(f"{gw.http_url}/metrics") as response:
                values = samples(await response.text())
            done = values.get(("sendbrake_recipients_relayed_total", (("outcome", "failed"),)))
            return values if done == 1 else None

        values = await eventually(scrape)
    assert values[("sendbrake_messages_received_total", (("ingress", "smtp"),))] == 2
    assert values[("sendbrake_recipients_received_total", ())] == 3
    assert values[("sendbrake_recipients_relayed_total", (("outcome", "delivered"),))] == 2
    assert values[("sendbrake_ingest_duration_seconds_count", ())] == 2
    assert values[("sendbrake_upstream_up", ())] == 1
