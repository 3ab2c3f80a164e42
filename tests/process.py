"""A `sendbrake serve` subprocess for tests that need a real process (kill -9, memory)."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from tests.helpers import eventually

REPO = Path(__file__).resolve().parent.parent


def children(pid: int) -> list[int]:
    """Process ids whose parent is `pid`, and that still run (zombies left out)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (FileNotFoundError, ProcessLookupError):
            continue
        if int(fields[1]) == pid and fields[0] != "Z":
            found.append(int(stat.parent.name))
    return found


def running(pid: int) -> bool:
    """Whether `pid` runs (a zombie that nobody reaps counts as gone)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (FileNotFoundError, ProcessLookupError):
        return False


def sendbrake(
    *args: str, spool_url: str, stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    """Run the `sendbrake` CLI as an operator would: a subprocess, this spool, no other
    SENDBRAKE_ settings of the test's environment."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SENDBRAKE_")}
    env["SENDBRAKE_SPOOL__URL"] = spool_url
    return subprocess.run(
        [sys.executable, "-m", "gateway", *args],
        input=stdin,
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )


class GatewayProcess:
    """One `sendbrake serve` subprocess whose stdout and stderr go to a log file."""

    def __init__(self, env: dict[str, str], log_path: Path, cwd: Path = REPO) -> None:
        self.log_path = log_path
        self._log = log_path.open("wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "gateway", "serve"],
            cwd=cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )

    def events(self) -> list[dict[str, Any]]:
        out = []
        for line in self.log_path.read_text(encoding="utf-8", errors="replace").splitlines():
            try:
                event = json.loads(line)
            except ValueError:
                continue
            if isinstance(event, dict):
                out.append(event)
        return out

    def errors(self) -> list[dict[str, Any]]:
        return [
            e
            for e in self.events()
            if e.get("level") in {"error", "critical"} or e.get("event") == "relay_delivery_crashed"
        ]

    def tail(self, lines: int = 40) -> str:
        text = self.log_path.read_text(encoding="utf-8", errors="replace")
        return "\n".join(text.splitlines()[-lines:])

    async def listening(self) -> dict[str, Any]:
        """Wait for the `listening` event and return it (addresses are "host:port")."""

        def event() -> dict[str, Any] | None:
            if self.proc.poll() is not None:
                raise AssertionError(f"gateway exited with {self.proc.returncode}:\n{self.tail()}")
            return next((e for e in self.events() if e.get("event") == "listening"), None)

        return await eventually(event, timeout=60, message="gateway did not start listening")

    async def smtp_address(self) -> tuple[str, int]:
        """Where the SMTP listener bound."""
        host, _, port = str((await self.listening())["smtp"]).rpartition(":")
        return host, int(port)

    async def http_url(self) -> str:
        """Base URL of the HTTP listener."""
        return f"http://{(await self.listening())['http']}"

    def rss_bytes(self) -> int:
        """Resident memory of the process now."""
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
        raise AssertionError("no VmRSS")

    async def wait(self, timeout: float) -> int:
        return await asyncio.to_thread(self.proc.wait, timeout)

    def close(self) -> None:
        """Teardown: make sure the process is gone, whatever happened."""
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        self._log.close()
