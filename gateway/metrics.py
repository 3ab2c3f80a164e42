"""Prometheus metrics of one gateway, registered on an injected registry.

These are the instruments the stages update as things happen (counters, histograms,
the upstream gauge). What must be exact across restarts (held campaigns, recipients by
state, the relay pause) is read from the spool at scrape time by `gateway.ops.gauges`,
never kept here. Labels are bounded (ingress kind, outcome, rule, mode); never a
campaign or message ID.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info

INGRESSES = ("smtp", "http")
OUTCOMES = ("delivered", "deferred", "failed")
# Why the gateway closed an SMTP session itself, each with a 421.
SESSION_CLOSES = ("max_sessions", "max_sessions_per_client", "timeout", "junk_commands")
# Provider feedback events by what they counted as (bounded: never a campaign).
FEEDBACK_EVENTS = ("delivered", "bounced", "dropped", "complained", "unsubscribed",
                   "unattributed", "other", "duplicate")  # fmt: skip
FORWARD_OUTCOMES = ("delivered", "retried", "dead")
# Why a content analysis process was replaced (its message held, the next one read anew).
ANALYSIS_REPLACED = ("timeout", "exited")
MANUAL_RULE = "manual"  # the rule label of holds an operator made
_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


@dataclass(frozen=True)
class Metrics:
    """The gateway's instruments; build one per process (or per test) with `create`."""

    registry: CollectorRegistry
    messages_received: Counter
    recipients_received: Counter
    recipients_relayed: Counter
    ingest_duration: Histogram
    relay_duration: Histogram
    upstream_up: Gauge
    policy_findings: Counter
    campaign_holds: Counter
    policy: Info
    smtp_sessions_closed: Counter
    feedback_events: Counter
    webhook_forwards: Counter
    throttle_waits: Counter
    analysis_replaced: Counter

    @classmethod
    def create(cls, registry: CollectorRegistry) -> Metrics:
        """Register every instrument on `registry` (each gateway, each test, its own)."""
        metrics = cls._register(registry)
        # Series that exist from the start read 0 instead of being absent, so rates and
        # increases in alert rules see their first event (a series born at 1 shows none).
        for ingress in INGRESSES:
            metrics.messages_received.labels(ingress=ingress)
        for outcome in OUTCOMES:
            metrics.recipients_relayed.labels(outcome=outcome)
        metrics.campaign_holds.labels(rule=MANUAL_RULE)
        for reason in SESSION_CLOSES:
            metrics.smtp_sessions_closed.labels(reason=reason)
        for event in FEEDBACK_EVENTS:
            metrics.feedback_events.labels(event=event)
        for outcome in FORWARD_OUTCOMES:
            metrics.webhook_forwards.labels(outcome=outcome)
        for reason in ANALYSIS_REPLACED:
            metrics.analysis_replaced.labels(reason=reason)
        # No transaction has failed yet; an idle gateway must not look like an outage.
        metrics.upstream_up.set(1)
        return metrics

    def declare_policies(self, version: str, rules: Iterable[tuple[str, str]]) -> None:
        """Show the policy set in force, and create the zero series of each rule (id, mode).

        Replicas sharing a spool must enforce one policy version; each reports its own,
        so a difference is visible (and alerted on) in Prometheus.
        """
        self.policy.info({"version": version})
        for rule, mode in rules:
            self.policy_findings.labels(rule=rule, mode=mode)
            if mode == "enforce":
                self.campaign_holds.labels(rule=rule)

    def declare_throttles(self, rules: Iterable[str]) -> None:
        """Create the zero series of each throttle rule's wait counter."""
        for rule in rules:
            self.throttle_waits.labels(rule=rule)

    @classmethod
    def _register(cls, reg: CollectorRegistry) -> Metrics:
        return cls(
            registry=reg,
            messages_received=Counter(
                "sendbrake_messages_received",
                "Messages accepted into the spool.",
                ["ingress"],
                registry=reg,
            ),
            recipients_received=Counter(
                "sendbrake_recipients_received",
                "Recipients accepted into the spool.",
                registry=reg,
            ),
            recipients_relayed=Counter(
                "sendbrake_recipients_relayed",
                "Recipient delivery attempts by outcome (delivered, deferred, failed).",
                ["outcome"],
                registry=reg,
            ),
            ingest_duration=Histogram(
                "sendbrake_ingest_duration_seconds",
                "Time from end of DATA to the reply, durable commit included.",
                buckets=_LATENCY_BUCKETS,
                registry=reg,
            ),
            relay_duration=Histogram(
                "sendbrake_relay_duration_seconds",
                "Time of one upstream transaction.",
                buckets=_LATENCY_BUCKETS,
                registry=reg,
            ),
            upstream_up=Gauge(
                "sendbrake_upstream_up",
                "1 when the last upstream transaction reached the provider (or none was tried yet), else 0.",
                registry=reg,
            ),
            policy_findings=Counter(
                "sendbrake_policy_findings",
                "Findings raised by policy rules, per message, by rule and mode.",
                ["rule", "mode"],
                registry=reg,
            ),
            campaign_holds=Counter(
                "sendbrake_campaign_holds",
                "Campaigns put on hold, by the rule that held them (manual for operators).",
                ["rule"],
                registry=reg,
            ),
            policy=Info(
                "sendbrake_policy",
                "The policy set this gateway enforces: its version (a digest of the files).",
                registry=reg,
            ),
            smtp_sessions_closed=Counter(
                "sendbrake_smtp_sessions_closed",
                "SMTP sessions the gateway refused or cut with a 421, by reason"
                " (max_sessions, max_sessions_per_client, timeout, junk_commands).",
                ["reason"],
                registry=reg,
            ),
            feedback_events=Counter(
                "sendbrake_feedback_events",
                "Provider feedback events (webhooks, DSNs) by what they counted as: delivered,"
                " bounced, dropped, complained, unsubscribed, unattributed (no recipient"
                " matched), other (not counted), duplicate (a provider's retry).",
                ["event"],
                registry=reg,
            ),
            webhook_forwards=Counter(
                "sendbrake_webhook_forwards",
                "Attempts to forward an event batch to the platform's webhook URL, by outcome"
                " (delivered, retried, dead).",
                ["outcome"],
                registry=reg,
            ),
            throttle_waits=Counter(
                "sendbrake_relay_throttle_waits",
                "Recipients a relay throttle made wait (once per wait), by rule.",
                ["rule"],
                registry=reg,
            ),
            analysis_replaced=Counter(
                "sendbrake_analysis_processes_replaced",
                "Content analysis processes killed and replaced, by reason (timeout: over"
                " policies.content_timeout; exited: died while reading). Each held its message.",
                ["reason"],
                registry=reg,
            ),
        )
