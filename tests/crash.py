"""What the kill -9 tests share: gateway subprocesses on one SQLite spool and a look into it.

`gateway_env` configures a `sendbrake serve` through SENDBRAKE_* variables only (the
shipped policies, an SMTP upstream on the test's loop, quick retries); `spool_states` and
`spool_rows` read the spool file beside a running gateway or after a killed one.
`GatewayForks` starts gateways for tests that start many: it imports the gateway once and
forks each `sendbrake serve` from there (the imports take seconds of CPU each time).
"""

from __future__ import annotations

import asyncio
import os
import queue
import signal
import sqlite3
import subprocess
import sys
import threading
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from tests.process import REPO, GatewayProcess

if TYPE_CHECKING:
    from collections.abc import Iterator


@contextmanager
def gateways() -> Iterator[list[GatewayProcess]]:
    """Collect the gateways a test starts; whatever happens, none outlives the block."""
    started: list[GatewayProcess] = []
    try:
        yield started
    finally:
        for gateway in started:
            gateway.close()


def gateway_env(spool_db: Path, upstream_port: int, concurrency: int) -> dict[str, str]:
    """The environment of a gateway on this SQLite spool relaying to this upstream port."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SENDBRAKE_")}
    env.update(
        {
            "SENDBRAKE_SMTP__LISTEN": "127.0.0.1:0",
            "SENDBRAKE_SMTP__HOSTNAME": "gw.test",
            "SENDBRAKE_POLICIES__DIR": str(REPO / "policies"),  # the shipped policy
            "SENDBRAKE_HTTP__LISTEN": "127.0.0.1:0",
            "SENDBRAKE_SPOOL__URL": f"sqlite:///{spool_db}",  # spool_db is absolute: 4 slashes
            "SENDBRAKE_UPSTREAM__KIND": "smtp",
            "SENDBRAKE_UPSTREAM__HOST": "127.0.0.1",
            "SENDBRAKE_UPSTREAM__PORT": str(upstream_port),
            "SENDBRAKE_UPSTREAM__POOL_SIZE": str(concurrency),
            "SENDBRAKE_UPSTREAM__CONNECT_TIMEOUT": "2s",
            "SENDBRAKE_UPSTREAM__COMMAND_TIMEOUT": "5s",
            "SENDBRAKE_RELAY__CONCURRENCY": str(concurrency),
            "SENDBRAKE_RELAY__RETRY_BASE": "50ms",
            "SENDBRAKE_RELAY__RETRY_MAX_DELAY": "200ms",
            "SENDBRAKE_RELAY__POLL_INTERVAL": "100ms",
            "SENDBRAKE_RELAY__DRAIN_TIMEOUT": "5s",
            "SENDBRAKE_LOG__FORMAT": "json",
            "SENDBRAKE_LOG__LEVEL": "info",
            "PYTHONUNBUFFERED": "1",
        }
    )
    return env


def spool_states(spool_db: Path) -> dict[str, int]:
    """Recipients per state, read beside a running gateway (WAL) or after it."""
    return {
        str(state): int(count)
        for state, count in spool_rows(
            spool_db, "SELECT state, COUNT(*) FROM recipients GROUP BY state"
        )
    }


def spool_rows(spool_db: Path, query: str) -> list[tuple[object, ...]]:
    """Run one read-only query on the spool file."""
    conn = sqlite3.connect(f"file:{spool_db}?mode=ro", uri=True, timeout=5)
    try:
        return conn.execute(query).fetchall()
    finally:
        conn.close()


def pending_in_spool(spool_db: Path) -> int:
    """Recipients the spool still has to relay."""
    states = spool_states(spool_db)
    return sum(states.get(state, 0) for state in ("queued", "sending", "deferred"))


class GatewayForks:
    """One Python process that imports the gateway once and forks a `sendbrake serve` per start.

    Importing the gateway takes seconds of CPU (more on a busy machine); a test that starts
    twenty gateways would spend most of its time there. Each forked gateway is a process of
    its own that runs the real `serve` command from the start: it opens the spool, recovers
    leases and binds its listeners itself, and dies of SIGKILL like any other. Only the
    imports happened before, once, in the parent that forks it.
    """

    def __init__(self, env: dict[str, str]) -> None:
        self._proc = subprocess.Popen(
            [sys.executable, "-c", _FORK_SERVER],
            cwd=REPO,
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            bufsize=1,
        )
        self._started: queue.SimpleQueue[Forked | None] = queue.SimpleQueue()
        self._forks: dict[int, Forked] = {}
        self._reader = threading.Thread(target=self._read, name="gateway-forks", daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self._proc.stdout is not None
        for line in self._proc.stdout:
            word, pid, *code = line.split()
            if word == "started":
                self._forks[int(pid)] = Forked(int(pid))
                self._started.put(self._forks[int(pid)])
            elif word == "exited":
                self._forks[int(pid)].exited(int(code[0]))
        self._started.put(None)  # the server is gone: no start waits for ever

    async def start(self, log_path: Path) -> ForkedGateway:
        """Fork a gateway that logs to `log_path` and serves."""
        assert self._proc.stdin is not None
        log_path.touch()  # readable at once; the gateway writes it from its first line
        # One request at a time: the server reads the next line only after this answer.
        self._proc.stdin.write(f"{log_path}\n")
        forked = await asyncio.to_thread(self._started.get, timeout=60)
        if forked is None:
            raise AssertionError(f"the fork server exited with {self._proc.wait(10)}")
        return ForkedGateway(forked, log_path)

    def close(self) -> None:
        """Stop the fork server; it kills any gateway still running first."""
        assert self._proc.stdin is not None
        self._proc.stdin.close()
        try:
            self._proc.wait(10)
        finally:
            if self._proc.poll() is None:
                self._proc.kill()
                self._proc.wait(10)
            self._reader.join(10)
            assert self._proc.stdout is not None
            self._proc.stdout.close()


# The fork server: import, then per line of input (a log path) fork a gateway that serves.
# It alone can reap its children, so it reports each one's exit code.
_FORK_SERVER = """
import os, select, signal, sys, traceback
from gateway.cli import main
children = set()
def reap():
    while children:
        pid, status = os.waitpid(-1, os.WNOHANG)
        if pid == 0:
            return
        children.discard(pid)
        print("exited", pid, os.waitstatus_to_exitcode(status), flush=True)
while True:
    if select.select([sys.stdin], [], [], 0.005)[0]:
        line = sys.stdin.readline()
        if not line:
            break
        pid = os.fork()
        if pid == 0:
            for fd, path, flags in ((0, os.devnull, os.O_RDONLY), (1, line.strip(), os.O_WRONLY)):
                opened = os.open(path, flags)
                os.dup2(opened, fd)
                os.close(opened)
            os.dup2(1, 2)
            try:
                main(["serve"], prog_name="sendbrake")
                code = 0
            except SystemExit as exc:
                code = exc.code if isinstance(exc.code, int) else 1
            except BaseException:
                traceback.print_exc()
                code = 1
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(code)  # never back into this loop
        children.add(pid)
        print("started", pid, flush=True)
    reap()
for pid in children:
    os.kill(pid, signal.SIGKILL)
while children:
    children.discard(os.waitpid(-1, 0)[0])
"""


class Forked:
    """What a test needs of `subprocess.Popen` for a gateway the fork server started."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.returncode: int | None = None
        self._done = threading.Event()

    def exited(self, code: int) -> None:
        self.returncode = code
        self._done.set()

    def poll(self) -> int | None:
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        if not self._done.wait(timeout):
            raise subprocess.TimeoutExpired(f"gateway {self.pid}", timeout or 0)
        assert self.returncode is not None
        return self.returncode

    def send_signal(self, sig: int) -> None:
        if self.returncode is None:
            os.kill(self.pid, sig)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)


class ForkedGateway(GatewayProcess):
    """A gateway the fork server started: a GatewayProcess whose `proc` is a `Forked`."""

    def __init__(self, proc: Forked, log_path: Path) -> None:
        self.log_path = log_path
        self.proc = proc

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
