"""Relay throttles end to end: a real gateway, the HTTP send API, a capturing SMTP upstream.

A throttle of 20 recipients per second holds the relay rate within 10 % of 20/s over a
20-second run, measured where the mail arrives; a campaign the throttle does not select
is not slowed by it; the campaign JSON and /metrics show the wait while it lasts.
"""

from __future__ import annotations

import aiohttp

from gateway.spool.sql_throttle import LAPSE
from tests.esp import body, post
from tests.harness import run_gateway
from tests.helpers import eventually

RATE = 20.0
SLOW = 401  # 400 intervals at 20/s: a 20-second run


async def _campaign_id(gw, key: str) -> str:
    status, page = await gw.api().get("/api/v1/campaigns?limit=50")
    assert status == 200
    [found] = [c["id"] for c in page["items"] if c["key"] == key]
    return found


async def _metric(gw, name: str) -> float:
    async with aiohttp.ClientSession() as http, http.get(gw.http_url + "/metrics") as response:
        text = await response.text()
    return sum(float(line.split()[-1]) for line in text.splitlines() if line.startswith(name))


async def test_a_throttle_of_20_per_second_holds_the_relay_rate_within_10_percent(
    settings_for, upstream, tmp_path
):
    policies = tmp_path / "policies"
    policies.mkdir()
    (policies / "throttles.yaml").write_text(
        "version: 1\nrules:\n"
        "  - {id: slow-newsletters, kind: throttle, per_second: 20, when: {key: 'slow-*'}}\n"
    )
    settings = settings_for(
        upstream.port, esp={"listen": "127.0.0.1:0"}, policies={"dir": str(policies)}
    )
    async with run_gateway(settings) as gw:
        status, _, _ = await post(gw, body(SLOW, custom_args={"campaign_id": "slow-spring"}))
        assert status == 202
        slow_id = await _campaign_id(gw, "slow-spring")

        # While it runs: the wait is visible in the campaign and in /metrics.
        status, campaign = await gw.api().get(f"/api/v1/campaigns/{slow_id}")
        assert status == 200
        [throttle] = campaign["throttles"]
        assert throttle["rule"] == "slow-newsletters"
        assert (throttle["per_second"], throttle["burst"], throttle["scope"]) == (
            20.0,
            1,
            "campaign",
        )
        await eventually(lambda: _metric(gw, "sendbrake_relay_throttled_recipients{"))

        # A campaign the throttle does not select goes at once, beside the throttled one.
        fast = body(30, custom_args={"campaign_id": "fast-spring"})
        fast["personalizations"] = [{"to": [{"email": f"fast{i}@example.org"}]} for i in range(30)]
        status, _, _ = await post(gw, fast)
        assert status == 202
        fast_id = await _campaign_id(gw, "fast-spring")

        def all_relayed(campaign_id, count):
            async def probe():
                _, shown = await gw.api().get(f"/api/v1/campaigns/{campaign_id}")
                return shown["counters"]["relayed"] == count

            return probe

        await eventually(all_relayed(fast_id, 30), timeout=5, interval=0.05)
        slow_so_far = sum(1 for t in upstream.transactions if t.rcpt_tos[0].startswith("r"))
        assert slow_so_far < SLOW / 2  # the fast campaign did not wait for the slow one

        await eventually(all_relayed(slow_id, SLOW), timeout=30, interval=0.1)
        arrivals = sorted(t.at for t in upstream.transactions if t.rcpt_tos[0].startswith("r"))
        assert len(arrivals) == SLOW
        rate = (SLOW - 1) / (arrivals[-1] - arrivals[0])
        assert abs(rate - RATE) <= 0.1 * RATE, f"relayed at {rate:.2f}/s"
        # Never far ahead of the budget: a relay that lagged catches up on the slots it
        # was granted, at most LAPSE seconds' worth (a paid slot claimed later than that is
        # charged again); unthrottled, all 401 would arrive in the first second.
        catch_up = RATE * LAPSE
        for sent, at in enumerate(arrivals, start=1):
            assert sent <= 1 + RATE * (at - arrivals[0]) + catch_up, (sent, at - arrivals[0])
        assert (
            await _metric(gw, 'sendbrake_relay_throttle_waits_total{rule="slow-newsletters"}') > 0
        )
        _, campaign = await gw.api().get(f"/api/v1/campaigns/{slow_id}")
        assert "throttled" in [step["event"] for step in campaign["timeline"]]
        assert campaign["throttles"][0]["waiting"] == 0
