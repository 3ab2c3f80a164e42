"""Forwarding recorded event batches to the platform's own webhook URL, durably.

A long-lived task (started in `service`'s TaskGroup): it claims due batches from the
spool's outbox under a lease (replicas sharing a database never send one batch at
once), POSTs each as it was received (or the new events of a provider's retry) to
`webhooks.sendgrid.forward_url`, and settles it: any 2xx is delivered; anything else
(another status, a timeout, a refused connection) is tried again after a backoff with
jitter, until the batch is older than `max_age`, when it becomes a dead letter an
operator can see and retry over the API. A crash between the platform's 2xx and the
settlement sends that batch again once its lease runs out: at-least-once, as SendGrid
itself delivers.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections.abc import Callable

import aiohttp
import structlog

from gateway import __version__
from gateway.errors import SpoolError
from gateway.metrics import Metrics
from gateway.model import Forward, ForwardState, new_id
from gateway.settings import SendgridWebhookSettings
from gateway.spool.base import Feedbacks

log = structlog.get_logger(__name__)

CLAIM_LIMIT = 16  # batches claimed at once; each is sent in turn, oldest first
MAX_ERROR_BODY = 200  # characters of the platform's answer kept as the last error


def backoff_delay(attempt: int, settings: SendgridWebhookSettings, rand: float) -> float:
    """Seconds before attempt `attempt + 1`: the base doubled per attempt, capped, plus jitter."""
    base = min(settings.retry_base * 2.0 ** max(attempt - 1, 0), settings.retry_max_delay)
    return float(base * (1 + settings.retry_jitter * rand))


def settlement(
    forward: Forward, error: str | None, now: float, settings: SendgridWebhookSettings, rand: float
) -> tuple[ForwardState, float]:
    """Return the state a batch goes to after an attempt (`error` None: it was accepted)."""
    if error is None:
        return ForwardState.DELIVERED, now
    if now - forward.queued_at >= settings.max_age:
        return ForwardState.DEAD, now
    return ForwardState.PENDING, now + backoff_delay(forward.attempts + 1, settings, rand)


class Forwarder:
    """Sends the outbox's due batches to the forward URL until stopped."""

    def __init__(
        self,
        spool: Feedbacks,
        settings: SendgridWebhookSettings,
        metrics: Metrics,
        *,
        clock: Callable[[], float] = time.time,
        rand: Callable[[], float] = random.random,
    ) -> None:
        self._spool = spool
        self._settings = settings
        self._metrics = metrics
        self._clock = clock
        self._rand = rand
        self.owner = f"forwarder-{new_id()}"
        self._wake = asyncio.Event()
        self._stopping = asyncio.Event()

    def wake(self) -> None:
        """Look for due batches now (a batch was queued, or the clock moved)."""
        self._wake.set()

    def stop(self) -> None:
        """Finish the batch in hand, then return from `run`."""
        self._stopping.set()
        self._wake.set()

    async def run(self) -> None:
        """Forward due batches until stopped; nothing to do without a forward URL."""
        if not self._settings.forward_url:
            return
        headers = {"Content-Type": "application/json", "User-Agent": f"sendbrake/{__version__}"}
        token = self._settings.forward_token.get_secret_value()
        if token:
            headers["Authorization"] = f"Bearer {token}"
        timeout = aiohttp.ClientTimeout(total=self._settings.timeout)
        async with aiohttp.ClientSession(headers=headers, timeout=timeout) as http:
            while not self._stopping.is_set():
                self._wake.clear()
                try:
                    sent = await self._pass(http)
                    wait = 0.0 if sent else await self._idle_wait()
                except SpoolError as exc:
                    log.warning("webhook_forward_spool_failed", error=str(exc))
                    wait = self._settings.poll_interval
                if wait:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._wake.wait(), wait)

    async def _pass(self, http: aiohttp.ClientSession) -> int:
        """Claim and send one round of due batches; return how many were claimed."""
        claimed = await self._spool.claim_forwards(
            self.owner, self._clock(), CLAIM_LIMIT, self._settings.lease
        )
        for forward in claimed:
            if self._stopping.is_set():
                break  # the rest wait for their lease to run out, or another replica
            await self._send(http, forward)
        return len(claimed)

    async def _idle_wait(self) -> float:
        due = await self._spool.next_forward_due()
        if due is None:
            return self._settings.poll_interval
        return min(max(due - self._clock(), 0.05), self._settings.poll_interval)

    async def _send(self, http: aiohttp.ClientSession, forward: Forward) -> None:
        error = await self._post(http, forward)
        now = self._clock()
        state, due = settlement(forward, error, now, self._settings, self._rand())
        settled = await self._spool.settle_forward(
            self.owner, forward.id, state, now, next_attempt_at=due, error=error or ""
        )
        outcome = {ForwardState.DELIVERED: "delivered", ForwardState.DEAD: "dead"}.get(
            state, "retried"
        )
        self._metrics.webhook_forwards.labels(outcome=outcome).inc()
        fields = {"forward": forward.id, "events": forward.events, "attempt": forward.attempts + 1}
        if not settled:
            log.warning("webhook_forward_lease_lost", **fields)
        elif state is ForwardState.DELIVERED:
            log.info("webhook_forwarded", **fields)
        elif state is ForwardState.DEAD:
            log.error("webhook_forward_dead", error=error, max_age=self._settings.max_age, **fields)
        else:
            log.warning(
                "webhook_forward_failed", error=error, retry_in=round(due - now, 3), **fields
            )

    async def _post(self, http: aiohttp.ClientSession, forward: Forward) -> str | None:
        """POST one batch; return None when the platform accepted it, else what went wrong."""
        try:
            async with http.post(
                self._settings.forward_url,
                data=forward.body,
                headers={"X-Sendbrake-Forward-Id": str(forward.id)},
            ) as response:
                text = (await response.text(errors="replace"))[:MAX_ERROR_BODY]
                if 200 <= response.status < 300:
                    return None
                return f"HTTP {response.status}: {' '.join(text.split())}".rstrip(": ")
        except TimeoutError:
            return f"no answer within webhooks.sendgrid.timeout ({self._settings.timeout:g} s)"
        except aiohttp.ClientError as exc:
            return f"{type(exc).__name__}: {exc}"
