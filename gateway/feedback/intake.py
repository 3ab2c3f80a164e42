"""Recording provider feedback: a verified webhook batch, or a report that came over SMTP.

Each batch is one spool transaction (`Spool.record_feedback`): new events are attributed
to the recipient of (message ID, address), counted per campaign, and queued in the
outbox to be forwarded; the caller answers only after that commit. Counts the metrics
and logs one event per batch. Must not parse HTTP or SMTP itself.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import replace

import structlog

from gateway.feedback import sendgrid
from gateway.mail import dsn
from gateway.metrics import Metrics
from gateway.model import Admission, FeedbackEvent, FeedbackOutcome, Inbound, new_id
from gateway.spool.base import Feedbacks

log = structlog.get_logger(__name__)

Admit = Callable[[Inbound], Awaitable[Admission]]


class Intake:
    """Records feedback through the spool and counts it."""

    def __init__(
        self,
        spool: Feedbacks,
        metrics: Metrics,
        *,
        forward: bool,
        casefold_local: bool = True,
        clock: Callable[[], float] = time.time,
        on_queued: Callable[[], None] = lambda: None,
        on_counted: Callable[[Sequence[str]], Awaitable[None]] | None = None,
    ) -> None:
        self._spool = spool
        self._metrics = metrics
        self._forward = forward  # a forward URL is configured: queue batches for it
        self.casefold_local = casefold_local
        self._clock = clock
        self._on_queued = on_queued
        self._on_counted = on_counted  # judges the campaigns a batch counted for

    async def sendgrid(self, events: Sequence[FeedbackEvent], body: bytes) -> FeedbackOutcome:
        """Record a verified SendGrid batch; return once it is durable."""
        outcome = await self._spool.record_feedback(
            sendgrid.SOURCE, events, self._clock(), body=body if self._forward else None
        )
        self._count(outcome)
        log.info(
            "webhook_events_received",
            source=sendgrid.SOURCE,
            events=outcome.received,
            new=outcome.new,
            unattributed=outcome.unattributed,
            forward=outcome.forward_id,
            **dict(sorted(outcome.counted.items())),
        )
        if outcome.forward_id is not None:
            self._on_queued()
        await self._judge(outcome)
        return outcome

    async def report(self, inbound: Inbound) -> Admission:
        """Record mail to a return-path address as the report it is; never relayed.

        A message that is no report (an auto-reply) is accepted and counted as nothing.
        """
        events = dsn.parse_report(
            inbound.content, self._clock(), casefold_local=self.casefold_local
        )
        report_id = new_id(self._clock())
        if events is None:
            log.info("report_not_understood", report=report_id, client=inbound.client)
            return Admission(message_id=report_id, campaign_id="", held=False)
        outcome = await self._spool.record_feedback(dsn.SOURCE, events, self._clock(), body=None)
        self._count(outcome)
        log.info(
            "report_received",
            report=report_id,
            client=inbound.client,
            recipients=len(events),
            new=outcome.new,
            unattributed=outcome.unattributed,
            **dict(sorted(outcome.counted.items())),
        )
        await self._judge(outcome)
        return Admission(message_id=report_id, campaign_id="", held=False)

    async def _judge(self, outcome: FeedbackOutcome) -> None:
        """Hand the campaigns the batch counted for to the breaker, after the commit."""
        if self._on_counted is not None and outcome.campaigns:
            await self._on_counted(outcome.campaigns)

    def _count(self, outcome: FeedbackOutcome) -> None:
        counter = self._metrics.feedback_events
        for kind, count in outcome.counted.items():
            counter.labels(event=kind).inc(count)
        counter.labels(event="unattributed").inc(outcome.unattributed)
        counter.labels(event="other").inc(outcome.uncounted)
        counter.labels(event="duplicate").inc(outcome.received - outcome.new)


def with_reports(admit: Admit, report: Admit, addresses: Sequence[str]) -> Admit:
    """Return an `admit` that hands mail for the return-path `addresses` to `report`.

    A transaction to report addresses only is a report; one mixing them with other
    recipients is split: the report, then the message to the others (whose answer is
    the reply). Without addresses, `admit` itself.
    """
    wanted = frozenset(a.casefold() for a in addresses)
    if not wanted:
        return admit

    async def admit_or_record(inbound: Inbound) -> Admission:
        reports = [r for r in inbound.rcpt_tos if r.casefold() in wanted]
        if not reports:
            return await admit(inbound)
        answer = await report(replace(inbound, rcpt_tos=tuple(reports)))
        others = tuple(r for r in inbound.rcpt_tos if r.casefold() not in wanted)
        return await admit(replace(inbound, rcpt_tos=others)) if others else answer

    return admit_or_record
