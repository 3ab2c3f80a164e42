"""Gauges read from the spool at scrape time: held campaigns, recipients, pause, webhook outbox.

These numbers must survive a restart exactly, so they are never kept in memory: each
scrape of /metrics first reads one snapshot from the spool (asynchronously, in the
handler), then hands it to `SpoolCollector`, which prometheus_client calls synchronously
while rendering. The collector holds plain data and never touches the spool itself.

The only campaign IDs that appear as label values are those of campaigns held right now,
at most `HELD_NAMED_LIMIT` of them (`sendbrake_held_campaign_info`), so cardinality
stays bounded; `sendbrake_campaigns_held` always has the full count.

Replicas sharing a PostgreSQL spool read the same numbers; only the one holding the
leader lock reports them (`sendbrake_spool_leader` is 1 there), the others expose the
families without samples, so an alert on them fires once, not once per replica.
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client.metrics_core import GaugeMetricFamily, InfoMetricFamily, Metric
from prometheus_client.registry import Collector

from gateway.spool.base import HELD_NAMED_LIMIT, SpoolGauges
from gateway.states import RecipientState

__all__ = ["SpoolCollector"]

_EMPTY = SpoolGauges(
    campaigns_held=0,
    oldest_held_at=None,
    recipients=dict.fromkeys(RecipientState, 0),
    relay_paused=False,
    held=(),
)


class SpoolCollector(Collector):
    """Exposes the last spool snapshot it was given, computed for the instant `now`."""

    def __init__(self) -> None:
        self._snapshot = _EMPTY
        self._now = 0.0

    def update(self, snapshot: SpoolGauges, now: float) -> None:
        """Take the snapshot the next collection shows; call right before rendering."""
        self._snapshot = snapshot
        self._now = now

    def describe(self) -> Iterator[Metric]:
        """Name the families up front, so the registry can refuse duplicates."""
        return self._families(_EMPTY, 0.0)

    def collect(self) -> Iterator[Metric]:
        """Render the last snapshot."""
        return self._families(self._snapshot, self._now)

    @staticmethod
    def _families(snap: SpoolGauges, now: float) -> Iterator[Metric]:
        yield GaugeMetricFamily(
            "sendbrake_spool_leader",
            "1 on the one gateway that reports the spool-wide gauges below, else 0.",
            value=int(snap.leader),
        )
        for family in SpoolCollector._spool_wide(snap, now):
            if not snap.leader:
                family.samples = []  # another replica reports these
            yield family

    @staticmethod
    def _spool_wide(snap: SpoolGauges, now: float) -> Iterator[Metric]:
        yield GaugeMetricFamily(
            "sendbrake_campaigns_held",
            "Campaigns waiting in quarantine now.",
            value=snap.campaigns_held,
        )
        yield GaugeMetricFamily(
            "sendbrake_recipients_held",
            "Recipients waiting in quarantine now.",
            value=snap.recipients_held,
        )
        oldest = 0.0 if snap.oldest_held_at is None else max(now - snap.oldest_held_at, 0.0)
        yield GaugeMetricFamily(
            "sendbrake_oldest_held_campaign_age_seconds",
            "How long the longest-waiting held campaign has been held; 0 when none is.",
            value=oldest,
        )
        recipients = GaugeMetricFamily(
            "sendbrake_spool_recipients",
            "Recipients in the spool by state (queued, sending, deferred, held, relayed, ...).",
            labels=["state"],
        )
        for state in RecipientState:
            recipients.add_metric([str(state)], snap.recipients.get(state, 0))
        yield recipients
        yield GaugeMetricFamily(
            "sendbrake_relay_paused",
            "1 while an operator has paused the relay (the spool's durable flag), else 0.",
            value=int(snap.relay_paused),
        )
        yield GaugeMetricFamily(
            "sendbrake_webhook_forward_backlog",
            "Provider event batches waiting to be forwarded to the platform's webhook URL.",
            value=snap.forwards_pending,
        )
        yield GaugeMetricFamily(
            "sendbrake_webhook_forwards_dead",
            "Event batches given up on after webhooks.sendgrid.max_age (dead letters).",
            value=snap.forwards_dead,
        )
        waited = snap.oldest_forward_queued_at
        yield GaugeMetricFamily(
            "sendbrake_oldest_webhook_forward_age_seconds",
            "How long the oldest batch waiting to be forwarded has waited; 0 when none does.",
            value=0.0 if waited is None else max(now - waited, 0.0),
        )
        throttled = GaugeMetricFamily(
            "sendbrake_relay_throttled_recipients",
            "Recipients waiting only because of a relay throttle now, by rule.",
            labels=["rule"],
        )
        for rule, count in sorted(snap.throttled.items()):
            throttled.add_metric([rule], count)
        yield throttled
        info = InfoMetricFamily(
            "sendbrake_held_campaign",
            f"One series per campaign held now (longest-waiting first, at most {HELD_NAMED_LIMIT}).",
            labels=["campaign", "key", "client"],
        )
        for held in snap.held:
            info.add_metric([held.id, held.key, held.client], {})
        yield info
