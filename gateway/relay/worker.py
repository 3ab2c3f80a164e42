"""Relay workers: claim due recipients under a lease, deliver, settle each outcome.

Owns retry policy: the upstream only classifies answers; this module turns transient
ones into a deferral with exponential backoff and jitter, or a failure once a recipient
is older than the maximum age. At most `concurrency` messages are in delivery at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import socket
import time
from collections import Counter
from collections.abc import Callable, Sequence

import structlog

from gateway.errors import SpoolError
from gateway.metrics import Metrics
from gateway.model import (
    Campaign,
    Delivery,
    Outcome,
    RecipientResult,
    Settlement,
    Throttle,
    ThrottleWait,
    new_id,
)
from gateway.relay.upstream import Upstream
from gateway.settings import RelaySettings
from gateway.spool.base import Queue
from gateway.states import RecipientState

log = structlog.get_logger(__name__)

_MIN_WAIT = 0.005  # never spin: a due row that raced a claim is picked up this soon


def backoff_delay(attempt: int, settings: RelaySettings, rand: float) -> float:
    """Return the wait before try number `attempt` + 1; `rand` in [0, 1) spreads retries."""
    base = min(settings.retry_base * 2.0 ** max(attempt - 1, 0), settings.retry_max_delay)
    return base * (1 + settings.retry_jitter * rand)


def plan_settlements(
    delivery: Delivery,
    results: Sequence[RecipientResult],
    now: float,
    settings: RelaySettings,
    rand: Callable[[], float],
) -> list[Settlement]:
    """Decide, per recipient, what the upstream's answer means for the spool."""
    attempt = delivery.attempts + 1
    too_old = now - delivery.queued_at >= settings.max_age
    out = []
    for (recipient_id, _address), result in zip(delivery.recipients, results, strict=True):
        if result.outcome is Outcome.DELIVERED:
            out.append(Settlement(recipient_id, RecipientState.RELAYED, result.reply))
        elif result.outcome is Outcome.PERMANENT:
            out.append(Settlement(recipient_id, RecipientState.FAILED, result.reply))
        elif too_old:
            reply = f"{result.reply} (gave up: older than relay.max_age)"
            out.append(Settlement(recipient_id, RecipientState.FAILED, reply))
        else:
            delay = backoff_delay(attempt, settings, rand())
            if result.retry_after is not None:  # the provider's Retry-After, up to max_age
                delay = max(delay, min(result.retry_after, settings.max_age))
            retry_at = now + delay
            out.append(Settlement(recipient_id, RecipientState.DEFERRED, result.reply, retry_at))
    return out


# Settled state -> (metric outcome label, log event).
_REPORT = {
    RecipientState.RELAYED: ("delivered", "recipients_relayed"),
    RecipientState.DEFERRED: ("deferred", "recipients_deferred"),
    RecipientState.FAILED: ("failed", "recipients_failed"),
}


class _Throttler:
    """The relay's side of a throttled claim: which throttles apply, and what waited."""

    def __init__(
        self, throttles: Callable[[Campaign], Sequence[Throttle]], metrics: Metrics
    ) -> None:
        self.throttles = throttles
        self._metrics = metrics

    def waited(self, waits: Sequence[ThrottleWait]) -> None:
        for wait in waits:
            self._metrics.throttle_waits.labels(rule=wait.rule).inc(wait.recipients)
            if wait.first:
                log.info(
                    "campaign_throttled",
                    campaign=wait.campaign_id,
                    rule=wait.rule,
                    recipients=wait.recipients,
                    until=wait.until,
                )


class Relay:
    """A pool of relay workers sharing one claim loop."""

    def __init__(
        self,
        spool: Queue,
        upstream: Upstream,
        settings: RelaySettings,
        metrics: Metrics,
        *,
        clock: Callable[[], float] = time.time,
        rand: Callable[[], float] = random.random,
        throttles: Callable[[Campaign], Sequence[Throttle]] | None = None,
    ) -> None:
        """`throttles` names the relay throttles in force for a campaign (none: no limits)."""
        self._spool = spool
        self._throttler = None if throttles is None else _Throttler(throttles, metrics)
        self._upstream = upstream
        self._settings = settings
        self._metrics = metrics
        self._clock = clock
        self._rand = rand
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{new_id()}"
        self._wake = asyncio.Event()
        self._stopping = asyncio.Event()
        self._inflight = 0
        # Recipients of deliveries in progress: the leases the renewer keeps alive. A
        # delivery that dies leaves here, so its leases run out and another worker takes over.
        self._leased: dict[int, tuple[int, ...]] = {}  # by the delivery's first recipient

    def wake(self) -> None:
        """Tell the workers new work may be due (called after each admission)."""
        self._wake.set()

    def stop(self) -> None:
        """Stop claiming new work; `run` returns once in-flight deliveries settle."""
        self._stopping.set()
        self._wake.set()

    async def run(self) -> None:
        """Claim and deliver until `stop`; in-flight deliveries finish before returning."""
        log.info("relay_started", owner=self.owner, concurrency=self._settings.concurrency)
        async with asyncio.TaskGroup() as tasks:
            renewer = tasks.create_task(self._renew_leases())
            while not self._stopping.is_set():
                self._wake.clear()  # before claiming, so a wake during the claim is not lost
                free = self._settings.concurrency - self._inflight
                claimed: list[Delivery] = []
                if free > 0:
                    try:
                        claimed = await self._spool.claim(
                            self.owner,
                            self._clock(),
                            min(free, self._settings.batch_size),
                            self._settings.lease,
                            throttler=self._throttler,
                        )
                    except SpoolError as exc:
                        # The spool will come back (disk freed, database restarted); the
                        # relay must still be there when it does.
                        log.warning("relay_claim_failed", error=str(exc))
                        free = 0
                for delivery in claimed:
                    self._inflight += 1
                    tasks.create_task(self._deliver(delivery))
                if not claimed:
                    await self._idle(free > 0)
            renewer.cancel()
        log.info("relay_stopped", owner=self.owner)

    async def _renew_leases(self) -> None:
        """Keep the leases of deliveries in progress from running out (a slow upstream)."""
        lease = self._settings.lease
        while True:
            await asyncio.sleep(lease / 3)
            ids = [rid for rids in self._leased.values() for rid in rids]
            if not ids:
                continue
            try:
                await self._spool.renew_leases(self.owner, ids, self._clock() + lease)
            except SpoolError as exc:
                log.warning("relay_lease_renewal_failed", error=str(exc))

    async def _idle(self, may_claim: bool) -> None:
        timeout = self._settings.poll_interval
        if may_claim:
            try:
                due = await self._spool.next_due()
            except SpoolError:
                due = None
            if due is not None:
                timeout = min(timeout, max(due - self._clock(), _MIN_WAIT))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), timeout)

    def _report_upstream(self, results: Sequence[RecipientResult]) -> None:
        """Set `upstream_up` from what the provider said, if the delivery reached it."""
        # A reply that starts with a code means the provider answered at all; a transient
        # one without means it could not be reached. The rest ("not sent: ...", a spool's
        # unsendable address) were refused here and say nothing about the provider.
        if any(r.reply[:1].isdigit() for r in results):
            self._metrics.upstream_up.set(1)
        elif any(r.outcome is Outcome.TRANSIENT for r in results):
            self._metrics.upstream_up.set(0)

    async def _deliver(self, delivery: Delivery) -> None:
        bound = log.bind(message=delivery.message_id, campaign=delivery.campaign_id)
        leased = tuple(rid for rid, _ in delivery.recipients)
        self._leased[leased[0]] = leased
        try:
            started = time.perf_counter()
            results = await self._upstream.deliver(
                delivery.mail_from,
                [address for _, address in delivery.recipients],
                delivery.content,
                delivery.ids,
            )
            self._metrics.relay_duration.observe(time.perf_counter() - started)
            self._report_upstream(results)
            now = self._clock()
            settlements = plan_settlements(delivery, results, now, self._settings, self._rand)
            await self._spool.settle(self.owner, settlements, now)
            counts = Counter(s.state for s in settlements)
            for state, count in counts.items():
                outcome, event = _REPORT[state]
                self._metrics.recipients_relayed.labels(outcome=outcome).inc(count)
                bound.info(
                    event,
                    recipients=count,
                    reply=next(s.reply for s in settlements if s.state is state),
                )
        except Exception:  # noqa: BLE001 - a bug here must not kill the relay loop
            # Leave the lease in place: the recipients are retried when it expires or at
            # the next start, never dropped.
            bound.exception("relay_delivery_crashed")
        finally:
            del self._leased[leased[0]]
            self._inflight -= 1
            self._wake.set()
