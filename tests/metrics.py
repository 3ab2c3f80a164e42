"""Metrics as tests read them: the DESIGN.md §8 families and a parsed exposition."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

# Every metric of DESIGN.md §8 (counters by their exposed name).
DESIGN_METRICS = {
    "sendbrake_messages_received_total",
    "sendbrake_recipients_received_total",
    "sendbrake_recipients_relayed_total",
    "sendbrake_policy_findings_total",
    "sendbrake_campaign_holds_total",
    "sendbrake_campaigns_held",
    "sendbrake_recipients_held",
    "sendbrake_oldest_held_campaign_age_seconds",
    "sendbrake_spool_recipients",
    "sendbrake_ingest_duration_seconds",
    "sendbrake_relay_duration_seconds",
    "sendbrake_upstream_up",
    "sendbrake_relay_paused",
}


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """A Prometheus text exposition as {(sample name, sorted labels): value}."""
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }
