"""`sendbrake serve` as a real process on its embedded defaults (what `make run` starts)."""

from __future__ import annotations

import os
import signal
import smtplib

import pytest

from tests.helpers import eventually
from tests.process import REPO, GatewayProcess, children, running

pytestmark = pytest.mark.own_spool  # `sendbrake serve` on its embedded defaults: a SQLite spool

# Only the ports (tests never use fixed ports) and the policy folder (the runs are in an
# empty directory) are set; everything else is the embedded default.
DEFAULTS = {
    "SENDBRAKE_SMTP__LISTEN": "127.0.0.1:0",
    "SENDBRAKE_HTTP__LISTEN": "127.0.0.1:0",
    "SENDBRAKE_POLICIES__DIR": str(REPO / "policies"),
}


@pytest.mark.slow
async def test_serve_with_no_config_relays_to_the_capture_outbox_and_stops_cleanly(tmp_path):
    env = {"PATH": os.environ.get("PATH", ""), **DEFAULTS}
    gateway = GatewayProcess(env, tmp_path / "gateway.log", cwd=tmp_path)
    try:
        event = await gateway.listening()
        assert event["upstream"] == "capture"
        assert event["spool"] == "sqlite:///var/spool.db"
        with smtplib.SMTP(*await gateway.smtp_address(), timeout=10) as client:
            client.sendmail(
                "me@example.com",
                ["you@example.com"],
                b"Subject: hello from the quickstart\r\n\r\nIt works.\r\n",
            )
        [eml] = await eventually(lambda: list((tmp_path / "var" / "outbox").glob("*.eml")))
        assert b"Subject: hello from the quickstart" in eml.read_bytes()
        assert (tmp_path / "var" / "spool.db").exists()
        helpers = children(gateway.proc.pid)  # the upstream process, on a multi-CPU machine
        gateway.proc.send_signal(signal.SIGTERM)
        assert await gateway.wait(timeout=60) == 0
    finally:
        gateway.close()
    assert any(e["event"] == "shutdown_complete" for e in gateway.events())
    assert not [pid for pid in helpers if running(pid)]


@pytest.mark.slow
async def test_the_child_processes_die_with_a_gateway_killed_9(tmp_path):
    env = {
        "PATH": os.environ.get("PATH", ""),
        **DEFAULTS,
        "SENDBRAKE_UPSTREAM__PROCESS": "separate",
        "SENDBRAKE_POLICIES__CONTENT_PROCESSES": "2",
        "SENDBRAKE_SMTP__PROCESSES": "2",
    }
    gateway = GatewayProcess(env, tmp_path / "gateway.log", cwd=tmp_path)
    try:
        await gateway.listening()
        helpers = children(gateway.proc.pid)  # started with the gateway, not on first use
        assert len(helpers) == 5  # the upstream process, two analysis and two SMTP processes
        with smtplib.SMTP(*await gateway.smtp_address(), timeout=10) as client:
            client.sendmail("me@example.com", ["you@example.com"], b"Subject: hi\r\n\r\nHi.\r\n")
        await eventually(lambda: list((tmp_path / "var" / "outbox").glob("*.eml")))
        assert children(gateway.proc.pid) == helpers
        gateway.proc.kill()
        await eventually(
            lambda: not any(running(pid) for pid in helpers), message="a child outlived"
        )
    finally:
        gateway.close()
