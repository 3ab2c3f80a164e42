"""The scrape-time collector: spool snapshots rendered as Prometheus gauges."""

from __future__ import annotations

import aiohttp
from prometheus_client import CollectorRegistry, generate_latest

from gateway.metrics import Metrics
from gateway.ops.gauges import SpoolCollector
from gateway.spool.base import HeldCampaign, SpoolGauges
from gateway.states import RecipientState
from tests.harness import run_gateway
from tests.metrics import samples


def snapshot(**overrides) -> SpoolGauges:
    values = {
        "campaigns_held": 2,
        "oldest_held_at": 1000.0,
        "recipients": {**dict.fromkeys(RecipientState, 0), RecipientState.HELD: 7},
        "relay_paused": True,
        "held": (
            HeldCampaign("01A", "survey", "127.0.0.0/8", 1000.0),
            HeldCampaign("01B", "promo", "mta1", 1500.0),
        ),
    }
    return SpoolGauges(**{**values, **overrides})


def render(collector: SpoolCollector) -> dict:
    registry = CollectorRegistry()
    registry.register(collector)
    return samples(generate_latest(registry).decode())


def test_collector_renders_the_snapshot_it_was_given_for_that_instant():
    collector = SpoolCollector()
    collector.update(snapshot(), now=1600.0)
    values = render(collector)
    assert values[("sendbrake_campaigns_held", ())] == 2
    assert values[("sendbrake_recipients_held", ())] == 7
    assert values[("sendbrake_oldest_held_campaign_age_seconds", ())] == 600
    assert values[("sendbrake_relay_paused", ())] == 1
    assert values[("sendbrake_spool_recipients", (("state", "held"),))] == 7
    assert values[("sendbrake_spool_recipients", (("state", "relayed"),))] == 0
    info = {labels for name, labels in values if name == "sendbrake_held_campaign_info"}
    assert info == {
        (("campaign", "01A"), ("client", "127.0.0.0/8"), ("key", "survey")),
        (("campaign", "01B"), ("client", "mta1"), ("key", "promo")),
    }


def test_nothing_held_reads_zero_age_and_no_named_campaigns():
    collector = SpoolCollector()
    collector.update(snapshot(campaigns_held=0, oldest_held_at=None, held=()), now=5.0)
    values = render(collector)
    assert values[("sendbrake_oldest_held_campaign_age_seconds", ())] == 0
    assert not [name for name, _ in values if name == "sendbrake_held_campaign_info"]


def test_collector_names_clash_with_nothing_the_stages_register():
    metrics = Metrics.create(CollectorRegistry())
    metrics.registry.register(SpoolCollector())  # raises on a duplicated metric name


async def test_scrape_fails_with_503_when_the_spool_cannot_be_read(settings_for):
    async with run_gateway(settings_for()) as gw, aiohttp.ClientSession() as http:
        await gw.spool.close()  # as if the database went away under a running gateway
        async with http.get(f"{gw.http_url}/metrics") as response:
            assert response.status == 503
        await gw.spool.open()  # so shutdown can close it again
