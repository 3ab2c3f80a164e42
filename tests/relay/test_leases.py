"""Leases at the relay: a delivery that dies without a restart is taken over after its lease."""

from __future__ import annotations

import asyncio
import contextlib

from prometheus_client import CollectorRegistry

from gateway.metrics import Metrics
from gateway.model import DeliveryIds, Outcome, RecipientResult
from gateway.relay.upstream import CaptureUpstream
from gateway.relay.worker import Relay
from gateway.settings import RelaySettings
from gateway.spool import SqliteSpool
from gateway.states import RecipientState
from tests.clock import ManualClock
from tests.helpers import eventually
from tests.spool.records import NOW, WINDOW, accept, pass_all, submission

LEASE = 60.0


class StuckUpstream:
    """An upstream whose delivery finishes only when told (never, unless `finish` is set)."""

    def __init__(self) -> None:
        self.started = asyncio.Event()
        self.finish = asyncio.Event()

    async def open(self) -> None:
        pass

    async def close(self) -> None:
        pass

    async def deliver(
        self, mail_from: str, rcpt_tos: list[str], content: bytes, ids: DeliveryIds
    ) -> list[RecipientResult]:
        self.started.set()
        await self.finish.wait()
        return [RecipientResult(rcpt, Outcome.DELIVERED, "250 2.0.0 ok") for rcpt in rcpt_tos]


async def test_a_delivery_that_dies_without_a_restart_is_delivered_once_by_another_worker(tmp_path):
    spool = SqliteSpool(tmp_path / "spool.db")
    await spool.open()
    now = [NOW]
    settings = RelaySettings(lease=LEASE)
    try:
        admission = await accept(spool, submission(["a@x.test", "b@x.test"]), pass_all, WINDOW)
        stuck = StuckUpstream()
        first = Relay(
            spool, stuck, settings, Metrics.create(CollectorRegistry()), clock=lambda: now[0]
        )
        dying = asyncio.create_task(first.run())
        await stuck.started.wait()
        dying.cancel()  # the worker dies; the process (and the spool) lives on, no give-back
        with contextlib.suppress(asyncio.CancelledError):
            await dying
        rows = await spool.recipients(campaign_id=admission.campaign_id)
        assert {r.state for r in rows} == {RecipientState.SENDING}

        outbox = tmp_path / "outbox"
        upstream = CaptureUpstream(outbox)
        await upstream.open()
        second = Relay(
            spool, upstream, settings, Metrics.create(CollectorRegistry()), clock=lambda: now[0]
        )
        assert await spool.claim(second.owner, NOW + LEASE - 1, 10, LEASE) == []  # not yet
        running = asyncio.create_task(second.run())
        now[0] = NOW + LEASE
        second.wake()
        campaign = await eventually(
            lambda: _relayed(spool, admission.campaign_id, 2), message="taken-over delivery"
        )
        second.stop()
        await running
        assert len(list(outbox.glob("*.eml"))) == 1  # one message, both recipients, once
        assert (campaign.counters.relayed, campaign.counters.queued) == (2, 0)
    finally:
        await spool.close()


async def _relayed(spool, campaign_id, count):
    campaign = await spool.campaign(campaign_id)
    return campaign if campaign.counters.relayed == count else None


class RenewalsSeen:
    """The spool, passed through, noting each lease renewal's new expiry."""

    def __init__(self, spool: SqliteSpool) -> None:
        self._spool = spool
        self.renewed_to: list[float] = []

    def __getattr__(self, name: str):
        return getattr(self._spool, name)

    async def renew_leases(self, owner, recipient_ids, until):
        held = await self._spool.renew_leases(owner, recipient_ids, until)
        self.renewed_to.append(until)
        return held


async def test_a_delivery_longer_than_its_lease_renews_it_and_is_not_taken_over(tmp_path):
    spool = SqliteSpool(tmp_path / "spool.db")
    await spool.open()
    # The lease runs on the injected clock; the renewer's period (lease / 3) on the loop's.
    lease = 0.3
    clock = ManualClock(NOW)
    try:
        admission = await accept(spool, submission(["a@x.test"]), pass_all, WINDOW)
        slow = StuckUpstream()
        seen = RenewalsSeen(spool)
        relay = Relay(
            seen, slow, RelaySettings(lease=lease), Metrics.create(CollectorRegistry()), clock=clock
        )
        running = asyncio.create_task(relay.run())
        await slow.started.wait()
        # Half a lease at a time, three leases in all: each step waits for the renewer to
        # extend the lease from the new time, then another worker still cannot claim it.
        for _ in range(6):
            clock.advance(lease / 2)
            await eventually(
                lambda: seen.renewed_to and seen.renewed_to[-1] >= clock() + lease,
                message="the lease was not renewed",
            )
            assert await spool.claim("other", clock(), 10, lease) == []
        slow.finish.set()
        campaign = await eventually(lambda: _relayed(spool, admission.campaign_id, 1))
        relay.stop()
        await running
        assert campaign.counters.relayed == 1
    finally:
        await spool.close()
