"""Deliveries through the upstream process: the answers the gateway process would get,
settings carried over, and a child that dies costing a retry, never a message."""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from gateway.model import DeliveryIds, Outcome
from gateway.relay.upstream import create_upstream
from gateway.relay.upstream_process import ProcessUpstream
from tests.fakes.upstream import CapturingUpstream
from tests.harness import make_settings
from tests.helpers import eventually
from tests.process import running

MESSAGE = b"From: news@shop.test\r\nSubject: Spring\r\n\r\nThe spring letter.\r\n"
IDS = DeliveryIds("01MSG", "01CAMPAIGN")
RCPTS = ["a@example.org", "gone@example.org", "b@example.org"]


@pytest.fixture
async def remote(tmp_path: Path, upstream: CapturingUpstream) -> AsyncIterator[ProcessUpstream]:
    up = ProcessUpstream(make_settings(tmp_path, upstream.port))
    yield up
    await up.close()


async def test_answers_are_those_of_the_upstream_in_the_gateway_process(tmp_path, upstream, remote):
    upstream.rcpt_replies = {"gone@example.org": "550 5.1.1 no such mailbox"}
    direct = create_upstream(make_settings(tmp_path, upstream.port).upstream)
    try:
        expected = await direct.deliver("news@shop.test", RCPTS, MESSAGE, IDS)
    finally:
        await direct.close()
    assert await remote.deliver("news@shop.test", RCPTS, MESSAGE, IDS) == expected
    assert [r.outcome for r in expected] == [
        Outcome.DELIVERED,
        Outcome.PERMANENT,
        Outcome.DELIVERED,
    ]
    first, second = upstream.transactions
    assert second == first  # same envelope, same bytes
    assert first.content.endswith(  # the ids crossed the pipe
        b"X-Sendbrake-Message: 01MSG\r\nX-Sendbrake-Campaign: 01CAMPAIGN\r\n\r\nThe spring letter.\r\n"
    )
    assert remote.pid is not None
    assert remote.pid != os.getpid()


async def test_a_child_that_dies_mid_delivery_answers_transient_and_is_replaced(upstream, remote):
    upstream.hang = True  # connections are accepted but never greeted
    delivery = asyncio.create_task(
        remote.deliver("news@shop.test", ["b@example.org"], MESSAGE, IDS)
    )
    await eventually(lambda: upstream.connections > 0, message="the child never connected")
    first = remote.pid
    assert first is not None
    os.kill(first, signal.SIGKILL)
    [result] = await delivery
    assert result.outcome is Outcome.TRANSIENT
    assert "upstream process exited" in result.reply
    upstream.hang = False
    [again] = await remote.deliver("news@shop.test", ["b@example.org"], MESSAGE, IDS)
    assert again.outcome is Outcome.DELIVERED
    assert remote.pid not in (None, first)
    assert upstream.recipients == ["b@example.org"]


async def test_close_lets_the_child_finish_and_exit(upstream, remote):
    await remote.deliver("news@shop.test", ["a@example.org"], MESSAGE, IDS)
    pid = remote.pid
    assert pid is not None
    assert running(pid)
    await remote.close()
    assert remote.pid is None
    assert not running(pid)
