"""SMTP ingress processes (`smtp.processes`): sessions served by children, admitted here.

Real child processes on real sockets: the gateway accepts and counts each session, hands
it to a child, and the child's 250 follows the gateway's durable commit.
"""

from __future__ import annotations

import asyncio
import os
import signal

import aiosmtplib
import pytest

from tests.harness import run_gateway
from tests.helpers import eventually
from tests.mail import message
from tests.metrics import samples

pytestmark = pytest.mark.filterwarnings("error::pytest.PytestUnraisableExceptionWarning")


def processes(gw) -> list[int]:
    return gw.gateway.smtp.pids


async def metric(gw, name: str, **labels: str) -> float:
    status, text = await gw.api().get("/metrics")
    assert status == 200
    return samples(text).get((name, tuple(sorted(labels.items()))), 0.0)


async def test_children_relay_clean_mail_and_the_gateway_holds_a_leak(settings_for, upstream):
    settings = settings_for(upstream.port, smtp={"processes": 2})
    clean = message("Spring is here", X_Campaign_ID="spring")
    leaked = message("Hello {{FirstName}}", X_Campaign_ID="leak")
    async with run_gateway(settings) as gw:
        assert len(processes(gw)) == 2
        assert os.getpid() not in processes(gw)
        sends = [gw.send("news@shop.test", [f"r{n}@example.org"], clean) for n in range(8)]
        await asyncio.gather(*sends, gw.send("news@shop.test", ["x@example.org"], leaked))
        await eventually(lambda: len(upstream.recipients) == 8)
        status, page = await gw.api().get("/api/v1/campaigns?state=held")
        assert status == 200
        assert [c["key"] for c in page["items"]] == ["leak"]
        received = await metric(gw, "sendbrake_messages_received_total", ingress="smtp")
        assert received == 9  # counted by the children, shown by the gateway
        assert await metric(gw, "sendbrake_ingest_duration_seconds_count") == 9
    assert sorted(upstream.recipients) == sorted(f"r{n}@example.org" for n in range(8))


async def test_the_session_limit_counts_the_sessions_of_every_child(settings_for, upstream):
    settings = settings_for(upstream.port, smtp={"processes": 2, "max_sessions": 2})
    async with run_gateway(settings) as gw:
        host, port = gw.addresses.smtp
        first, second = (
            aiosmtplib.SMTP(hostname=host, port=port),
            aiosmtplib.SMTP(hostname=host, port=port),
        )
        await first.connect()
        await second.connect()
        with pytest.raises(aiosmtplib.SMTPConnectError, match="Too many concurrent sessions"):
            await aiosmtplib.SMTP(hostname=host, port=port).connect()
        refused = await metric(gw, "sendbrake_smtp_sessions_closed_total", reason="max_sessions")
        assert refused == 1
        await first.quit()  # its child tells the gateway, which counts it out

        async def third_session() -> bool:
            client = aiosmtplib.SMTP(hostname=host, port=port)
            try:
                await client.connect()
            except aiosmtplib.SMTPConnectError:
                return False
            await client.quit()
            return True

        await eventually(third_session)
        await second.quit()


async def test_a_child_killed_is_started_again_and_its_sessions_counted_out(settings_for, upstream):
    settings = settings_for(upstream.port, smtp={"processes": 1, "max_sessions": 1})
    async with run_gateway(settings) as gw:
        [before] = processes(gw)
        host, port = gw.addresses.smtp
        client = aiosmtplib.SMTP(hostname=host, port=port)
        await client.connect()
        await client.ehlo()
        os.kill(before, signal.SIGKILL)
        await eventually(lambda: processes(gw) and processes(gw) != [before])
        with pytest.raises(aiosmtplib.SMTPServerDisconnected):  # its session died with it
            await client.noop()
        # The one session the limit allows is free again: the dead child's was counted out.
        await gw.send("news@shop.test", ["after@example.org"], message(X_Campaign_ID="again"))
        await eventually(lambda: upstream.recipients == ["after@example.org"])
