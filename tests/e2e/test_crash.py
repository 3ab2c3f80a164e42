"""Crash test: `kill -9` a real gateway process in the middle of relaying, restart it.

The promise under test (a 250 follows a durable commit; the spool gives back the leases of
a crashed process when it is opened again): every recipient
that got a 250 from sendbrake reaches the upstream, exactly once, or at most twice when it
was in flight at the moment of the crash (the provider took it but the gateway died before
it could record that). Nothing accepted is lost.

The capturing upstream runs on the test's event loop; the gateway is a subprocess started
with `python -m gateway serve` and configured through SENDBRAKE_* variables only. Eight
smtplib clients send 3,000 single-recipient messages; half-way through, with hundreds
relayed, the gateway is killed with SIGKILL. A new gateway on the same spool takes over,
the clients send the rest to it, and then every count is checked at the upstream and in
the spool. The number of duplicates is printed and recorded as a test property.
"""

from __future__ import annotations

import asyncio
import signal
import smtplib
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from gateway.spool import SqliteSpool
from gateway.states import RecipientState
from tests.crash import gateway_env, gateways, pending_in_spool, spool_states
from tests.fakes.upstream import CapturingUpstream
from tests.helpers import eventually
from tests.process import GatewayProcess

pytestmark = pytest.mark.own_spool  # its gateway processes run on a SQLite file it inspects

MESSAGES = 3000  # one recipient each: r{i}@crash.test
CLIENTS = 8  # concurrent smtplib connections into the gateway
CONCURRENCY = 8  # relay.concurrency, and so the most messages in flight at the kill
KILL_AFTER = 300  # kill once the upstream got this many and half the messages got their 250
# The provider acknowledges each message this late. Until the kill it is slow, so the relay
# (at most CONCURRENCY / delay = 400 messages/s) falls behind ingress; after the restart it
# is quicker, to keep the test short.
DELAY_BEFORE_KILL = 0.02
DELAY_AFTER_KILL = 0.005


def message(i: int) -> bytes:
    # One declared campaign, so that the shipped blast-radius rules let it through.
    return (
        f"From: News <news@shop.test>\r\nTo: r{i}@crash.test\r\nSubject: Crash test\r\n"
        f"X-Campaign-ID: crash-test\r\nX-Declared-Size: {MESSAGES}\r\n"
        f"\r\nHello number {i}!\r\n"
    ).encode()


def send_share(
    address: tuple[str, int], indexes: list[int], acked: list[str], cut: list[str]
) -> list[int]:
    """Send one message per index on one connection; return the indexes not tried yet.

    The first failure (the kill) ends the share: the recipient of that transaction goes to
    `cut` (it got no 250, so nothing was promised) and the rest is returned for later.
    """
    rest = list(indexes)
    try:
        with smtplib.SMTP(*address, timeout=10) as client:
            while rest:
                rcpt = f"r{rest[0]}@crash.test"
                try:
                    client.sendmail("news@shop.test", [rcpt], message(rest.pop(0)))
                except (smtplib.SMTPException, OSError):
                    cut.append(rcpt)
                    raise
                acked.append(rcpt)  # sendmail returned: the gateway said 250
    except (smtplib.SMTPException, OSError):
        pass
    return rest


@pytest.mark.slow
async def test_kill_9_mid_relay_loses_nothing_and_duplicates_only_in_flight(
    tmp_path: Path, record_property: Any
) -> None:
    started = time.monotonic()
    spool_db = tmp_path / "spool.db"
    up = CapturingUpstream()
    up.ack_delay = DELAY_BEFORE_KILL
    await up.start()
    env = gateway_env(spool_db, up.port, CONCURRENCY)
    acked: list[str] = []  # got a 250: must arrive
    cut: list[str] = []  # in a transaction the kill interrupted: may arrive
    loop = asyncio.get_running_loop()
    try:
        # Gateways are killed before the client threads are joined, so none can hang there.
        with ThreadPoolExecutor(CLIENTS, "smtp-client") as clients, gateways() as procs:

            async def send(address: tuple[str, int], shares: list[list[int]]) -> list[list[int]]:
                return list(
                    await asyncio.gather(
                        *(
                            loop.run_in_executor(clients, send_share, address, share, acked, cut)
                            for share in shares
                        )
                    )
                )

            # 1. CLIENTS connections send MESSAGES while the relay works through them.
            first = GatewayProcess(env, tmp_path / "gateway-1.log")
            procs.append(first)
            senders = asyncio.ensure_future(
                send(
                    await first.smtp_address(),
                    [list(range(c, MESSAGES, CLIENTS)) for c in range(CLIENTS)],
                )
            )

            # 2. kill -9 half-way through ingress, with hundreds relayed and many waiting.
            def time_to_kill() -> bool:
                if first.proc.poll() is not None:
                    raise AssertionError(f"gateway died on its own:\n{first.tail()}")
                busy = len(up.transactions) >= KILL_AFTER and len(acked) >= MESSAGES // 2
                return busy or senders.done()

            await eventually(time_to_kill, timeout=90, message="relay or ingress too slow")
            first.proc.kill()
            delivered_at_kill = len(up.transactions)  # nothing ran since the check: exact
            acked_at_kill = len(acked)  # give or take the 250s on their way to the clients
            sending_at_kill = not senders.done()
            assert await first.wait(10) == -signal.SIGKILL
            rest = await senders
            assert not first.errors(), first.errors()
            before_kill = {r for t in up.transactions[:delivered_at_kill] for r in t.rcpt_tos}
            assert len(before_kill) < acked_at_kill, "the kill came after relaying was done"

            # 3. Restart on the same spool: it gives back the dead process's leases. The
            # clients send what they had not tried yet, as a platform would after an outage.
            up.ack_delay = DELAY_AFTER_KILL
            second = GatewayProcess(env, tmp_path / "gateway-2.log")
            procs.append(second)
            cut_before_restart = list(cut)
            assert await send(await second.smtp_address(), rest) == [[]] * CLIENTS
            assert cut == cut_before_restart, "the restarted gateway refused mail"
            acked_set = set(acked)
            assert len(acked_set) == len(acked) == MESSAGES - len(cut)

            def all_acked_arrived() -> bool:
                if second.proc.poll() is not None:
                    raise AssertionError(f"restarted gateway exited:\n{second.tail()}")
                return acked_set <= set(up.recipients)

            try:
                await eventually(all_acked_arrived, timeout=90, interval=0.05)
            except AssertionError:
                missing = sorted(acked_set - set(up.recipients))
                raise AssertionError(
                    f"{len(missing)} acknowledged recipients never arrived, e.g. {missing[:5]};"
                    f" spool: {spool_states(spool_db)}; restarted gateway:\n{second.tail(10)}"
                ) from None
            # Mail committed but not acknowledged (the kill cut the 250) must go out too.
            await eventually(
                lambda: pending_in_spool(spool_db) == 0,
                timeout=30,
                interval=0.05,
                message=f"the restarted gateway left mail in the spool ({spool_db})",
            )

            # 4. Clean stop.
            second.proc.send_signal(signal.SIGTERM)
            assert await second.wait(15) == 0, second.tail()
            second_events = second.events()
            assert any(e.get("event") == "shutdown_complete" for e in second_events)
            assert not second.errors(), second.errors()
            recovered = sum(
                e.get("recipients", 0)
                for e in second_events
                if e.get("event") == "spool_leases_recovered"
            )
    finally:
        await up.stop()

    # 5. What the upstream got: everything acknowledged, nobody more than twice.
    arrivals = Counter(up.recipients)
    missing = sorted(acked_set - arrivals.keys())
    assert not missing, f"{len(missing)} acknowledged recipients lost, e.g. {missing[:10]}"
    twice_or_more = {rcpt: n for rcpt, n in arrivals.items() if n > 1}
    assert all(n == 2 for n in twice_or_more.values()), twice_or_more
    duplicates = sum(n - 1 for n in twice_or_more.values())
    # Only a recipient leased at the kill can go out twice; the relay leases at most
    # relay.concurrency messages (of one recipient each here) at once.
    assert recovered <= CONCURRENCY, f"{recovered} leases recovered, more than could be in flight"
    assert duplicates <= recovered, f"duplicates that were not in flight: {twice_or_more}"
    extra = arrivals.keys() - acked_set  # committed, but the 250 was cut by the kill
    assert extra <= set(cut), f"upstream got mail nobody sent: {sorted(extra - set(cut))}"
    for txn in up.transactions:  # and each one is the message that was sent to that recipient
        [rcpt] = txn.rcpt_tos
        number = rcpt.removeprefix("r").removesuffix("@crash.test")
        assert txn.content.endswith(f"\r\n\r\nHello number {number}!\r\n".encode()), rcpt

    # 6. The spool agrees: nothing left leased or waiting, every stored recipient relayed.
    raw_states = spool_states(spool_db)  # before `open` would give back any lease
    assert set(raw_states) == {RecipientState.RELAYED}, raw_states
    spool = SqliteSpool(spool_db)
    await spool.open()
    try:
        counts = await spool.count_by_state()
        relayed = await spool.recipients(state=RecipientState.RELAYED, limit=10 * MESSAGES)
    finally:
        await spool.close()
    assert counts[RecipientState.RELAYED] == len(acked_set) + len(extra)
    assert all(n == 0 for state, n in counts.items() if state is not RecipientState.RELAYED), counts
    relayed_addresses = Counter(r.address for r in relayed)
    assert max(relayed_addresses.values()) == 1
    assert relayed_addresses.keys() == arrivals.keys()

    runtime = time.monotonic() - started
    for name, value in [
        ("acknowledged", len(acked_set)),
        ("cut_by_kill", len(cut)),
        ("delivered_before_kill", len(before_kill)),
        ("leases_recovered", recovered),
        ("duplicates", duplicates),
        ("runtime_s", round(runtime, 1)),
    ]:
        record_property(name, value)
    print(
        f"\ncrash test: killed {'during' if sending_at_kill else 'after'} ingress with"
        f" {acked_at_kill} acknowledged and {len(before_kill)} delivered; in the end"
        f" {len(acked_set)} acknowledged, {len(cut)} cut by the kill ({len(extra)} of those"
        f" relayed anyway), {recovered} leases recovered, {duplicates} duplicates"
        f" (bound {CONCURRENCY}), {runtime:.1f}s"
    )
