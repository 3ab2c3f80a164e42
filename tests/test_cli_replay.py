"""`sendbrake policies replay` on a spool of 2,000 campaigns admitted by the real admission.

Replayed with the shipped policies, every rule's count of campaigns with a finding, and the
campaigns held, are those the spool recorded (no campaign new or gone); replayed with a
tightened rule, the table counts the campaigns it would have held in addition.
"""

from __future__ import annotations

import re
import shutil
import time
from pathlib import Path

from prometheus_client import CollectorRegistry

from gateway.admission.admitter import Admitter
from gateway.metrics import Metrics
from gateway.model import Inbound
from gateway.policy.engine import Engine
from gateway.policy.loader import load_policies
from gateway.policy.registry import default_registry
from gateway.settings import Settings
from gateway.spool import SqliteSpool
from tests.harness import POLICIES
from tests.mail import message
from tests.process import sendbrake

CAMPAIGNS = 2000


def traffic(i: int) -> tuple[bytes, list[str], int]:
    """Campaign number `i`: its content, its recipients and how many times it is sent."""
    key = f"c{i}"
    rcpts = [f"r{i}-{n}@example.org" for n in range(3)]
    if i % 50 == 1:  # grew past its declaration: 60 recipients declared at 5 (limit 55)
        many = [f"r{i}-{n}@example.org" for n in range(60)]
        return message(X_Campaign_ID=key, X_Declared_Size="5"), many, 6
    if i % 50 == 2:
        return message(subject="Hi {{FirstName}}", X_Campaign_ID=key), rcpts, 1
    if i % 50 == 3:
        return message(subject="Integration Test Email #1", X_Campaign_ID=key), rcpts, 1
    if i % 50 == 4:  # the same message sent twice to the same people
        return message(X_Campaign_ID=key, X_Declared_Size="3"), rcpts, 2
    # Declared at 1, 3 sent: within the shipped slack of 50, past a slack of 0. One body
    # for all, read once (the content rules remember it): the test stays quick.
    return message(subject="Newsletter", X_Campaign_ID=key, X_Declared_Size="1"), rcpts, 1


async def admit_traffic(spool_db: Path, now: float) -> None:
    spool = SqliteSpool(spool_db)
    await spool.open()
    registry = default_registry()
    clock = [now]
    engine = Engine(load_policies(POLICIES, registry), registry=registry, clock=lambda: clock[0])
    settings = Settings()
    admitter = Admitter(
        spool,
        settings.campaigns,
        decider=engine,
        metrics=Metrics.create(CollectorRegistry()),
        hostname="gw.test",
        clock=lambda: clock[0],
    )
    try:
        for i in range(CAMPAIGNS):
            content, rcpts, times = traffic(i)
            for part in range(times):
                clock[0] += 1.0
                batch = rcpts[part * 10 : part * 10 + 10] if len(rcpts) > 10 else rcpts
                inbound = Inbound("smtp", "127.0.0.0/8", "news@shop.test", tuple(batch), content)
                await admitter.admit(inbound)
    finally:
        await admitter.close()
        await spool.close()


def rows(output: str) -> dict[str, list[str]]:
    """The replay table as {rule: [mode, now, candidate, new, gone]}."""
    lines = output.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("RULE"))
    return {cells[0]: cells[1:] for line in lines[start + 1 :] if (cells := line.split())}


async def test_a_replay_with_the_same_policies_finds_what_the_spool_recorded(tmp_path):
    spool_db = tmp_path / "spool.db"
    await admit_traffic(spool_db, time.time() - 3 * 3600)
    url = f"sqlite:///{spool_db}"
    same = sendbrake("policies", "replay", str(POLICIES), "--since", "1d", spool_url=url)
    assert same.returncode == 0, same.stderr
    assert re.match(r"replayed 2240 messages of 2000 campaigns received since ", same.stdout)
    table = rows(same.stdout)
    expected = {
        "blast-declared": ["enforce", "40", "40", "0", "0"],
        "merge-tags": ["enforce", "40", "40", "0", "0"],
        "test-markers": ["enforce", "40", "40", "0", "0"],
        "sent-twice": ["enforce", "40", "40", "0", "0"],
        "(held)": ["-", "160", "160", "0", "0"],
    }
    assert table == expected

    tighter = tmp_path / "candidate"
    shutil.copytree(POLICIES, tighter)
    default = tighter / "default.yaml"
    default.write_text(default.read_text().replace("slack: 50", "slack: 0"))
    tightened = sendbrake("policies", "replay", str(tighter), "--since", "1d", spool_url=url)
    assert tightened.returncode == 0, tightened.stderr
    table = rows(tightened.stdout)
    # Every ordinary campaign (1,840) and the sent-twice ones (6 received for 3) go over.
    assert table["blast-declared"] == ["enforce", "40", "1920", "1880", "0"]
    assert table["(held)"] == ["-", "160", "2000", "1840", "0"]
