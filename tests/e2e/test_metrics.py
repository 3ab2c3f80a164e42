"""The scraped /metrics equal what happened: a scripted scenario, then a restart.

One clean campaign is delivered, one is held, one is held and released by an operator,
and one message meets a provider that refuses a recipient (550). Every DESIGN.md §8
metric is then checked for its exact value, parsed with Prometheus' own text parser.
"""

from __future__ import annotations

import time

import aiohttp

from tests.clock import ManualClock
from tests.harness import advance, run_gateway, send_campaign
from tests.helpers import eventually
from tests.mail import addresses
from tests.metrics import DESIGN_METRICS, samples

# What is read from the spool at scrape time and must read the same after a restart.
HELD_STATE = (
    "sendbrake_campaigns_held",
    "sendbrake_recipients_held",
    "sendbrake_oldest_held_campaign_age_seconds",
    "sendbrake_spool_recipients",
    "sendbrake_relay_paused",
    "sendbrake_held_campaign_info",
)


class Clock:
    """Wall time until frozen: frozen scrapes compute ages for one instant."""

    def __init__(self) -> None:
        self.frozen: float | None = None

    def __call__(self) -> float:
        return time.time() if self.frozen is None else self.frozen


async def scrape(gw) -> dict:
    async with aiohttp.ClientSession() as http, http.get(f"{gw.http_url}/metrics") as response:
        assert response.status == 200
        return samples(await response.text())


def families(values: dict) -> set[str]:
    """Sample names with the histogram suffixes folded back into their family."""
    names = set()
    for sample, _ in values:
        family = sample
        for suffix in ("_bucket", "_count", "_sum"):
            family = family.removesuffix(suffix)
        names.add(family)
    return names


def held_state(values: dict) -> dict:
    return {key: value for key, value in values.items() if key[0] in HELD_STATE}


async def test_scraped_metrics_equal_a_scripted_scenario_and_held_gauges_survive_a_restart(
    settings_for, upstream
):
    upstream.rcpt_replies["nobody@example.org"] = "550 5.1.1 no such user"
    settings = settings_for(upstream.port)
    clock = Clock()
    async with run_gateway(settings, clock=clock) as gw:
        await send_campaign(gw, "newsletter", addresses("reader", 3), declared=3)
        await send_campaign(gw, "receipts", ["buyer@example.org", "nobody@example.org"])
        # Declared 5: the limit is max(5 × 1.5, 5 + 50) = 55, so 60 and 58 recipients hold.
        held_id = await send_campaign(gw, "survey", addresses("surveyed", 60), declared=5)
        released_id = await send_campaign(gw, "win-back", addresses("lapsed", 58), declared=5)
        status, released = await gw.api("alice").post(
            f"/api/v1/campaigns/{released_id}/release", {"reason": "list checked"}
        )
        assert (status, released["state"]) == (200, "released")

        async def settled() -> dict | None:
            values = await scrape(gw)
            delivered = values[("sendbrake_recipients_relayed_total", (("outcome", "delivered"),))]
            in_spool = values[("sendbrake_spool_recipients", (("state", "relayed"),))]
            # Counters move just after the spool commit: wait for both to agree.
            return values if delivered == in_spool == 62 else None

        await eventually(settled, timeout=30, message="relay did not settle")
        clock.frozen = time.time()
        held_at = (await gw.spool.campaign(held_id)).held_at
        values = await scrape(gw)

        assert families(values) >= DESIGN_METRICS
        expected = {
            ("sendbrake_messages_received_total", (("ingress", "smtp"),)): 4,
            ("sendbrake_recipients_received_total", ()): 3 + 2 + 60 + 58,
            ("sendbrake_recipients_relayed_total", (("outcome", "delivered"),)): 3 + 1 + 58,
            ("sendbrake_recipients_relayed_total", (("outcome", "failed"),)): 1,
            ("sendbrake_recipients_relayed_total", (("outcome", "deferred"),)): 0,
            (
                "sendbrake_policy_findings_total",
                (("mode", "enforce"), ("rule", "blast-declared")),
            ): 2,
            ("sendbrake_policy_findings_total", (("mode", "enforce"), ("rule", "sent-twice"))): 0,
            ("sendbrake_campaign_holds_total", (("rule", "blast-declared"),)): 2,
            ("sendbrake_campaign_holds_total", (("rule", "manual"),)): 0,
            ("sendbrake_campaigns_held", ()): 1,
            ("sendbrake_recipients_held", ()): 60,
            ("sendbrake_oldest_held_campaign_age_seconds", ()): clock.frozen - held_at,
            ("sendbrake_spool_recipients", (("state", "queued"),)): 0,
            ("sendbrake_spool_recipients", (("state", "sending"),)): 0,
            ("sendbrake_spool_recipients", (("state", "deferred"),)): 0,
            ("sendbrake_spool_recipients", (("state", "held"),)): 60,
            ("sendbrake_spool_recipients", (("state", "relayed"),)): 62,
            ("sendbrake_spool_recipients", (("state", "failed"),)): 1,
            ("sendbrake_spool_recipients", (("state", "discarded"),)): 0,
            ("sendbrake_spool_recipients", (("state", "suppressed"),)): 0,
            ("sendbrake_ingest_duration_seconds_count", ()): 4,
            ("sendbrake_relay_duration_seconds_count", ()): 3,  # newsletter, receipts, win-back
            ("sendbrake_upstream_up", ()): 1,
            ("sendbrake_relay_paused", ()): 0,
            (
                "sendbrake_held_campaign_info",
                (("campaign", held_id), ("client", "127.0.0.0/8"), ("key", "survey")),
            ): 1,
        }
        assert {key: values.get(key) for key in expected} == expected
        info = [key for key in values if key[0] == "sendbrake_held_campaign_info"]
        assert len(info) == 1  # the released campaign is no longer named

        status, _ = await gw.api("alice").post("/api/v1/relay/pause", {"reason": "maintenance"})
        assert status == 200
        before = held_state(await scrape(gw))
        assert before[("sendbrake_relay_paused", ())] == 1

    async with run_gateway(settings, clock=clock) as gw:
        after = held_state(await scrape(gw))
    assert after == before


async def test_upstream_up_reads_zero_while_the_provider_is_unreachable_and_one_again_after(
    settings_for, upstream
):
    clock = ManualClock()  # stands still: the retry waits until the provider is back
    async with run_gateway(settings_for(upstream.port), clock=clock) as gw:
        assert (await scrape(gw))[("sendbrake_upstream_up", ())] == 1  # nothing tried yet
        await upstream.stop()
        await send_campaign(gw, "alerts", ["ops@example.org"])

        async def up_is(value: int) -> bool:
            return (await scrape(gw))[("sendbrake_upstream_up", ())] == value

        await eventually(lambda: up_is(0), timeout=30, message="upstream_up never fell to 0")
        await upstream.start()
        advance(gw, clock, 1.0)  # the retry is due
        await eventually(lambda: up_is(1), timeout=30, message="upstream_up never came back")
        delivered = ("sendbrake_recipients_relayed_total", (("outcome", "delivered"),))

        async def settled() -> bool:  # the gauge moves with the answer, the count after settling
            return (await scrape(gw))[delivered] == 1

        await eventually(settled, timeout=30, message="the retried message was never delivered")
        values = await scrape(gw)
    assert values[("sendbrake_recipients_relayed_total", (("outcome", "deferred"),))] >= 1
    assert values[delivered] == 1


async def test_shadow_findings_are_counted_by_rule_and_mode_without_a_hold(
    settings_for, upstream, tmp_path
):
    policies = tmp_path / "policies"
    policies.mkdir()
    (policies / "p.yaml").write_text(
        "version: 1\nrules:\n"
        "  - {id: blast-declared, kind: declared_size, ratio: 1.5, slack: 50, mode: shadow}\n"
    )
    shadow = ("sendbrake_policy_findings_total", (("mode", "shadow"), ("rule", "blast-declared")))
    async with run_gateway(settings_for(upstream.port, policies={"dir": str(policies)})) as gw:
        assert (await scrape(gw))[shadow] == 0  # the series exists before the first finding
        await send_campaign(gw, "survey", addresses("s", 60), declared=5)
        await send_campaign(gw, "survey", addresses("t", 10), declared=5)
        values = await scrape(gw)
    assert values[shadow] == 2
    assert values[("sendbrake_campaigns_held", ())] == 0
    assert not [key for key in values if key[0] == "sendbrake_campaign_holds_total" and values[key]]
