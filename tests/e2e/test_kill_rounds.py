"""Twenty `kill -9`s at random moments of ingest and relay on one spool, then an audit.

The promise under test (DESIGN.md §5-§7): a 250 follows a durable commit, so nothing
acknowledged is lost however often the gateway dies; delivery is at-least-once, and the
duplicates the kills cause are bounded by what they interrupted, and reported.

ROUNDS rounds share one SQLite spool file and one capturing upstream. In each, a real
`sendbrake serve` process starts on the spool (forked from a process that imported the
gateway once, tests/crash.py: the imports would otherwise take most of the runtime),
CLIENTS smtplib connections send messages of one declared campaign with one to MAX_RCPTS
recipients, and the process gets SIGKILL at a moment drawn from a seeded `random.Random`:
after a random number of further 250s or of further transactions at the upstream, plus a
random delay of up to ACK_DELAY. The upstream answers each message ACK_DELAY late, so at
every kill messages are in flight there, and the clients are mid-DATA, waiting for a 250
or being committed. The seed is printed and recorded; SENDBRAKE_TEST_KILL_SEED replays
its choices. After each kill the spool file is read as the kill left it, and each round
records what was active: transactions cut (ingest), recipients leased and already taken
by the upstream (relay in flight). The test asserts that both phases were hit.

The clients act as a platform does: what got no 250 (the transaction the kill cut, and
what was not tried yet) is sent again to the next gateway; a recipient counts as
acknowledged only once `sendmail` returned. After the last round a final gateway takes the
rest and drains the spool. The audit: every acknowledged recipient arrived at least once,
nothing arrived that nobody sent, each arrival carries its own message, and the spool
holds every recipient relayed and nothing queued, leased, deferred, failed or held. The
campaign must stay open throughout: held mail waits for an operator, it does not arrive.

Duplicates (arrivals beyond the first) have two sources, bounded per kill:
- relay: a leased recipient the upstream took but whose settlement the kill prevented
  goes out again after the restart. The relay leases at most relay.concurrency
  (CONCURRENCY) messages of at most MAX_RCPTS recipients: CONCURRENCY × MAX_RCPTS.
- ingest: a message committed whose 250 the kill cut is stored again when the platform
  re-sends it. Each of the CLIENTS sessions has one message in DATA at most:
  CLIENTS × MAX_RCPTS.
So duplicates ≤ ROUNDS × (CONCURRENCY + CLIENTS) × MAX_RCPTS = 20 × (8 + 4) × 3 = 720.
The test also checks the measured bounds (relay duplicates ≤ the recipients leased after
each kill; ingest duplicates ≤ the recipients of cut messages the spool had stored) and
reports the duplicates each gateway relayed (after the kill before it) and in total.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import random
import secrets
import signal
import smtplib
import threading
import time
from collections import Counter, deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from functools import partial
from pathlib import Path
from typing import Any

import pytest

from tests.crash import (
    ForkedGateway,
    GatewayForks,
    gateway_env,
    gateways,
    pending_in_spool,
    spool_rows,
    spool_states,
)
from tests.fakes.upstream import CapturingUpstream
from tests.helpers import eventually
from tests.process import GatewayProcess

pytestmark = [pytest.mark.own_spool, pytest.mark.slow]  # a SQLite file it inspects

ROUNDS = 20
CLIENTS = 4  # concurrent smtplib connections, each with at most one message in DATA
CONCURRENCY = 8  # relay.concurrency: the most messages in flight at a kill
PER_ROUND = 100  # messages the platform has waiting at the start of each round
MAX_RCPTS = 3  # message n has 1 + n % MAX_RCPTS recipients
# Declared campaign size: covers every recipient the platform could ever send, re-sends
# included, so the shipped blast-radius rules pass the campaign.
DECLARED = ROUNDS * PER_ROUND * MAX_RCPTS
ACK_DELAY = 0.02  # the upstream's answer per message during the rounds: relay is in flight
ACK_DELAY_DRAIN = 0.002  # and after them, so the final drain is quick
RELAY_TRIGGER_MAX = 60  # a relay kill comes after 1..this many more upstream transactions
SENDER = "news@shop.test"


def recipients(n: int) -> list[str]:
    return [f"r{n}-{k}@kill.test" for k in range(1 + n % MAX_RCPTS)]


def message(n: int) -> bytes:
    # One declared campaign; a re-send carries the same Message-ID, as a platform's does.
    return (
        f"From: News <{SENDER}>\r\nTo: {', '.join(recipients(n))}\r\nSubject: Kill rounds\r\n"
        f"Message-ID: <m{n}@platform.kill.test>\r\n"
        f"X-Campaign-ID: kill-rounds\r\nX-Declared-Size: {DECLARED}\r\n"
        f"\r\nHello number {n}!\r\n"
    ).encode()


def number(rcpt: str) -> int:
    return int(rcpt.removeprefix("r").partition("-")[0])


class Platform:
    """The marketing platform: messages waiting, sent over several SMTP connections.

    A message is acknowledged once `sendmail` returned (the 250 arrived). One whose
    transaction a kill cut goes back to the front of the queue, for the next gateway.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._waiting: deque[int] = deque()
        self.created = 0
        self.acked: list[int] = []  # message numbers, in the order their 250s came
        self.cut: list[int] = []  # messages whose transaction a kill interrupted
        self.refused: list[str] = []  # answers other than 250 (none are expected)

    @property
    def waiting(self) -> int:
        with self._lock:
            return len(self._waiting)

    def top_up(self, count: int) -> None:
        """Have `count` messages waiting: what is left over, then new ones."""
        with self._lock:
            new = max(0, count - len(self._waiting))
            self._waiting.extend(range(self.created, self.created + new))
            self.created += new

    def _take(self) -> int | None:
        with self._lock:
            return self._waiting.popleft() if self._waiting else None

    def _give_back(self, n: int) -> None:
        with self._lock:
            self._waiting.appendleft(n)

    def connection(self, address: tuple[str, int]) -> None:
        """Send waiting messages on one connection until none wait or the gateway is gone."""
        try:
            with smtplib.SMTP(*address, timeout=10) as client:
                while (n := self._take()) is not None:
                    try:
                        refused = client.sendmail(SENDER, recipients(n), message(n))
                    except smtplib.SMTPResponseException as exc:
                        self.refused.append(f"{exc.smtp_code} {exc.smtp_error!r}")
                        raise
                    except (smtplib.SMTPException, OSError):
                        self.cut.append(n)
                        self._give_back(n)
                        raise
                    if refused:
                        self.refused.append(repr(refused))
                    self.acked.append(n)
        except (smtplib.SMTPException, OSError):
            pass  # the kill (or a refused connection to the gateway it killed)


@dataclass
class Kill:
    """One round: how its kill was chosen, and what the spool and upstream showed after."""

    round_number: int
    trigger: str  # "ingest+M" (M more 250s) or "relay+N" (N more upstream transactions)
    delay_ms: int
    acked: int  # messages acknowledged in the round
    cut: int  # transactions the kill interrupted (ingest was in progress)
    committed_cut: int  # recipients of cut messages already committed (stored again later)
    queued_at_kill: int  # accepted, not yet leased
    leased_at_kill: int  # leased: in flight in the gateway or at the upstream
    at_upstream_at_kill: int  # of those, already taken by the upstream (will be duplicates)

    @property
    def phases(self) -> str:
        return "+".join(
            phase
            for phase, active in (("ingest", self.cut), ("relay", self.at_upstream_at_kill))
            if active
        )


def choose_seed() -> int:
    override = os.environ.get("SENDBRAKE_TEST_KILL_SEED")
    return int(override) if override else secrets.randbelow(2**32)


def kill_moment(
    rng: random.Random, platform: Platform, up: CapturingUpstream
) -> tuple[str, Callable[[], bool], float]:
    """Draw the next kill: after M more 250s or N more upstream transactions, then a delay.

    Drawn before the gateway serves, so the counts start from where the last round ended.
    """
    if rng.random() < 0.5:
        count = rng.randint(1, PER_ROUND)  # at PER_ROUND the clients may have gone idle
        acked = len(platform.acked) + count
        due = lambda: len(platform.acked) >= acked  # noqa: E731
        trigger = f"ingest+{count}"
    else:
        count = rng.randint(1, RELAY_TRIGGER_MAX)
        delivered = len(up.transactions) + count
        due = lambda: len(up.transactions) >= delivered  # noqa: E731
        trigger = f"relay+{count}"
    return trigger, due, rng.uniform(0, ACK_DELAY)


async def kill_when(
    gateway: GatewayProcess, trigger: str, due: Callable[[], bool], check: Callable[[], None]
) -> None:
    """Wait until `due()` holds; fail if the gateway died on its own or `check` fails.

    `check` reads the spool, so it runs only every hundredth poll (0.2 s).
    """
    polls = itertools.count()

    def time_to_kill() -> bool:
        if gateway.proc.poll() is not None:
            raise AssertionError(f"gateway died on its own:\n{gateway.tail()}")
        if next(polls) % 100 == 99:
            check()
        return due()

    await eventually(time_to_kill, timeout=10, interval=0.002, message=f"kill at {trigger}")


def spool_after_kill(spool_db: Path) -> tuple[Counter[str], list[str], int]:
    """Rows per address, addresses leased (state sending), and how many wait queued."""
    rows = spool_rows(spool_db, "SELECT address, state FROM recipients")
    per_address = Counter(str(address) for address, _ in rows)
    leased = [str(address) for address, state in rows if state == "sending"]
    queued = sum(1 for _, state in rows if state == "queued")
    return per_address, leased, queued


def assert_campaign_open(spool_db: Path, round_number: int, kills: list[Kill], seed: int) -> None:
    """Nothing the kills did may hold the campaign: held mail waits for an operator."""
    campaigns = spool_rows(spool_db, "SELECT key, state, held, duplicates, findings FROM campaigns")
    assert all(state == "open" for _, state, *_ in campaigns), (
        f"in round {round_number} (seed {seed}) the campaign was held: {campaigns};"
        f" recipients of cut messages the spool had committed, per kill so far (the platform"
        f" sent them again in the next round): {[k.committed_cut for k in kills]}"
    )


def leases_recovered(gateway: GatewayProcess) -> int:
    return sum(
        e.get("recipients", 0)
        for e in gateway.events()
        if e.get("event") == "spool_leases_recovered"
    )


def repeats_per_gateway(up: CapturingUpstream, starts: list[int]) -> list[int]:
    """Arrivals of an already arrived recipient, per gateway (by transaction index)."""
    seen: set[str] = set()
    counts = [0] * len(starts)
    for index, txn in enumerate(up.transactions):
        gateway = sum(1 for start in starts if start <= index) - 1
        for rcpt in txn.rcpt_tos:
            counts[gateway] += rcpt in seen
            seen.add(rcpt)
    return counts


async def test_twenty_kill_9s_in_ingest_and_relay_lose_nothing_and_duplicate_within_bound(
    tmp_path: Path, record_property: Any
) -> None:
    started = time.monotonic()
    seed = choose_seed()
    print(f"\nkill rounds: seed {seed} (replay with SENDBRAKE_TEST_KILL_SEED={seed})")
    record_property("seed", seed)
    rng = random.Random(seed)
    spool_db = tmp_path / "spool.db"
    up = CapturingUpstream()
    up.ack_delay = ACK_DELAY
    await up.start()
    # The relay's conversations stay in the gateway process: a child (the default on more
    # than one CPU) spends the first second of each short round importing before it relays.
    # tests/e2e/test_crash.py kills a gateway with its child.
    env = gateway_env(spool_db, up.port, CONCURRENCY) | {"SENDBRAKE_UPSTREAM__PROCESS": "gateway"}
    platform = Platform()
    kills: list[Kill] = []
    starts: list[int] = []  # index of the first upstream transaction of each gateway
    committed_cuts: Counter[int] = Counter()  # per message: commits whose 250 a kill cut
    loop = asyncio.get_running_loop()
    forks = GatewayForks(env)
    try:
        # Gateways are killed before the client threads are joined, so none can hang there.
        with ThreadPoolExecutor(CLIENTS, "smtp-client") as clients, gateways() as procs:

            async def serve(name: str) -> tuple[ForkedGateway, list[asyncio.Future[None]]]:
                """Start a gateway and have the platform send to it; return the senders too."""
                starts.append(len(up.transactions))  # the gateway before is dead
                gateway = await forks.start(tmp_path / f"gateway-{name}.log")
                procs.append(gateway)
                address = await gateway.smtp_address()
                senders = [
                    loop.run_in_executor(clients, platform.connection, address)
                    for _ in range(CLIENTS)
                ]
                return gateway, senders

            # 1. ROUNDS gateways, each killed at a random moment.
            for round_number in range(1, ROUNDS + 1):
                platform.top_up(PER_ROUND)
                acked_before, cut_before = len(platform.acked), len(platform.cut)
                trigger, due, delay = kill_moment(rng, platform, up)
                gateway, senders = await serve(str(round_number))
                if kills:  # the restart gave back exactly the leases the kill left
                    assert leases_recovered(gateway) == kills[-1].leased_at_kill, gateway.tail()
                held = partial(assert_campaign_open, spool_db, round_number, kills, seed)
                await kill_when(gateway, trigger, due, held)
                await asyncio.sleep(delay)  # the randomness under test, not a synchronisation
                gateway.proc.kill()
                assert await gateway.wait(10) == -signal.SIGKILL
                await asyncio.gather(*senders)
                assert not gateway.errors(), gateway.errors()

                # 2. What the kill left: leases, waiting mail, cut messages already stored.
                per_address, leased, queued = spool_after_kill(spool_db)
                arrived = set(up.recipients)
                cut = platform.cut[cut_before:]
                committed = [n for n in cut if per_address[recipients(n)[0]] > committed_cuts[n]]
                committed_cuts.update(committed)
                kills.append(
                    Kill(
                        round_number=round_number,
                        trigger=trigger,
                        delay_ms=round(delay * 1000),
                        acked=len(platform.acked) - acked_before,
                        cut=len(cut),
                        committed_cut=sum(len(recipients(n)) for n in committed),
                        queued_at_kill=queued,
                        leased_at_kill=len(leased),
                        at_upstream_at_kill=sum(1 for rcpt in leased if rcpt in arrived),
                    )
                )
                print(f"  {kills[-1]} -> {kills[-1].phases or 'neither'}")
                assert_campaign_open(spool_db, round_number, kills, seed)

            # 3. The last gateway takes what the platform still has and drains the spool.
            up.ack_delay = ACK_DELAY_DRAIN
            cut_before = len(platform.cut)
            final, senders = await serve("final")
            await asyncio.gather(*senders)
            assert leases_recovered(final) == kills[-1].leased_at_kill, final.tail()
            assert platform.waiting == 0, "the final gateway did not take everything"
            assert len(platform.cut) == cut_before, final.tail()
            acked = {rcpt for n in platform.acked for rcpt in recipients(n)}

            def drained() -> bool:
                if final.proc.poll() is not None:
                    raise AssertionError(f"final gateway exited:\n{final.tail()}")
                return acked <= set(up.recipients) and pending_in_spool(spool_db) == 0

            try:
                await eventually(drained, timeout=30, interval=0.05)
            except AssertionError:
                missing = sorted(acked - set(up.recipients))
                raise AssertionError(
                    f"{len(missing)} acknowledged recipients never arrived, e.g. {missing[:5]};"
                    f" spool: {spool_states(spool_db)}; seed {seed}; final gateway:\n"
                    f"{final.tail(10)}"
                ) from None
            final.proc.send_signal(signal.SIGTERM)
            assert await final.wait(15) == 0, final.tail()
            assert any(e.get("event") == "shutdown_complete" for e in final.events())
            assert not final.errors(), final.errors()
    finally:
        forks.close()
        await up.stop()

    # 4. Every message was acknowledged in the end, and everything acknowledged arrived.
    assert not platform.refused, platform.refused
    assert sorted(platform.acked) == list(range(platform.created))
    tried = {rcpt for n in range(platform.created) for rcpt in recipients(n)}
    arrivals = Counter(up.recipients)
    missing = sorted(acked - arrivals.keys())
    assert not missing, f"{len(missing)} acknowledged recipients lost, e.g. {missing[:10]}"
    invented = sorted(arrivals.keys() - tried)
    assert not invented, f"upstream got mail nobody sent: {invented[:10]}"
    for txn in up.transactions:  # each arrival is the message sent to those recipients
        n = number(txn.rcpt_tos[0])
        assert set(txn.rcpt_tos) <= set(recipients(n)), txn.rcpt_tos
        assert txn.content.endswith(f"\r\n\r\nHello number {n}!\r\n".encode()), txn.rcpt_tos

    # 5. The spool: every stored recipient relayed; nothing waiting, leased, failed or held.
    rows, _, _ = spool_after_kill(spool_db)
    assert spool_states(spool_db) == {"relayed": sum(rows.values())}
    assert all(arrivals[rcpt] >= count for rcpt, count in rows.items())

    # 6. Duplicates, by source, within what the kills interrupted (the module docstring).
    ingest_duplicates = sum(count - 1 for count in rows.values())
    relay_duplicates = sum(arrivals[rcpt] - count for rcpt, count in rows.items())
    duplicates = sum(count - 1 for count in arrivals.values())
    assert duplicates == ingest_duplicates + relay_duplicates
    assert all(k.leased_at_kill <= CONCURRENCY * MAX_RCPTS for k in kills), kills
    assert all(k.committed_cut <= CLIENTS * MAX_RCPTS for k in kills), kills
    measured_bound = sum(k.leased_at_kill + k.committed_cut for k in kills)
    assert relay_duplicates <= sum(k.leased_at_kill for k in kills)
    assert ingest_duplicates <= sum(k.committed_cut for k in kills)
    bound = ROUNDS * (CONCURRENCY + CLIENTS) * MAX_RCPTS
    assert duplicates <= measured_bound <= bound

    # 7. The kills hit both phases.
    assert any(k.cut for k in kills), f"no kill interrupted ingest (seed {seed})"
    assert any(k.at_upstream_at_kill for k in kills), f"no kill hit relay in flight (seed {seed})"

    runtime = time.monotonic() - started
    per_gateway = repeats_per_gateway(up, starts)
    for name, value in [
        ("kills", [f"{asdict(k)} phases={k.phases}" for k in kills]),
        ("duplicates_per_gateway", per_gateway),
        ("duplicates", duplicates),
        ("relay_duplicates", relay_duplicates),
        ("ingest_duplicates", ingest_duplicates),
        ("duplicate_bound", bound),
        ("measured_duplicate_bound", measured_bound),
        ("acknowledged_recipients", len(acked)),
        ("runtime_s", round(runtime, 1)),
    ]:
        record_property(name, value)
    print(
        f"kill rounds: seed {seed}, {ROUNDS} kills ({sum(bool(k.cut) for k in kills)} in"
        f" ingest, {sum(bool(k.at_upstream_at_kill) for k in kills)} with relay in flight at"
        f" the upstream), {platform.created} messages, {len(acked)} recipients acknowledged,"
        f" none lost; {duplicates} duplicates ({relay_duplicates} relay, {ingest_duplicates}"
        f" ingest; bound {bound}, measured {measured_bound}), per gateway {per_gateway};"
        f" {runtime:.1f}s"
    )
