"""`sendbrake serve` as a real process on its embedded defaults (what `make run` starts)."""

from __future__ import annotations

import json
import os
import signal
import smtplib
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import eventually

POLICIES = Path(__file__).resolve().parents[2] / "policies"


def listening_event(log_path: Path) -> dict[str, str] | None:
    for line in log_path.read_text(encoding="utf-8").splitlines():
        if line.startswith("{"):
            event = json.loads(line)
            if event.get("event") == "listening":
                return event
    return None


@pytest.mark.slow
async def test_serve_with_no_config_relays_to_the_capture_outbox_and_stops_cleanly(tmp_path):
    # Only the ports (tests never use fixed ports) and the policy folder (the run is in an
    # empty directory) are set; everything else is the embedded default.
    env = {
        "PATH": os.environ.get("PATH", ""),
        "SENDBRAKE_SMTP__LISTEN": "127.0.0.1:0",
        "SENDBRAKE_HTTP__LISTEN": "127.0.0.1:0",
        "SENDBRAKE_POLICIES__DIR": str(POLICIES),
    }
    log_path = tmp_path / "gateway.log"
    with log_path.open("w") as log_file:
        proc = subprocess.Popen(
            [sys.executable, "-m", "gateway", "serve"],
            cwd=tmp_path,
            env=env,
            stdout=log_file,
            stderr=subprocess.STDOUT,
        )
    try:
        event = await eventually(lambda: listening_event(log_path), timeout=20)
        assert event["upstream"] == "capture"
        assert event["spool"] == "sqlite:///var/spool.db"
        host, port = event["smtp"].rsplit(":", 1)
        with smtplib.SMTP(host, int(port), timeout=10) as client:
            client.sendmail(
                "me@example.com",
                ["you@example.com"],
                b"Subject: hello from the quickstart\r\n\r\nIt works.\r\n",
            )
        [eml] = await eventually(lambda: list((tmp_path / "var" / "outbox").glob("*.eml")))
        assert b"Subject: hello from the quickstart" in eml.read_bytes()
        assert (tmp_path / "var" / "spool.db").exists()
    finally:
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(timeout=20)
    assert code == 0
    assert '"event": "shutdown_complete"' in log_path.read_text()
