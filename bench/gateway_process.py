"""The sendbrake gateway as a child process: which code, which settings, and how to ask it.

`GatewayCode` says what runs: the working tree with the project's .venv, or a commit
exported with `git archive` and installed (with that commit's own dependencies) into a
virtualenv cached under bench/out/venvs, so a bench of another engineer's commit never
touches their worktree. `Gateway` starts one process on free loopback ports with a fresh
SQLite spool (or the spool URL it is given), the commit's own default policy folder and
two operator tokens, and reads /metrics, resident memory and the ops API.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import secrets
import subprocess
import sys
import tempfile
import time
import urllib.request
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness import HOST, cpu_seconds, free_port, machine_cpu, rss_kb, start, tail, wait_until

ROOT = Path(__file__).resolve().parent.parent
VENVS = ROOT / "bench" / "out" / "venvs"
# `name{label="value"} number` lines of the Prometheus text format (one label at most).
METRIC = re.compile(r'^(sendbrake_\w+?)(\{\w+="(\w+)"\})? ([0-9.e+-]+)$', re.MULTILINE)
DELIVERED = "sendbrake_recipients_relayed_total:delivered"
RECEIVED = "sendbrake_messages_received_total:smtp"


CHILD_KINDS = {
    "gateway.relay.upstream_process": "upstream",
    "gateway.policy.analysis_process": "analysis",
    "gateway.ingress.smtp_process": "smtp",
}


@dataclass(frozen=True)
class CpuSample:
    """CPU seconds used so far: the gateway, its children by kind, the whole machine."""

    at: float
    gateway: float
    children: dict[str, float]
    machine: float

    def per_message(self, later: CpuSample, messages: int) -> dict[str, Any]:
        """CPU per message between this sample and `later`, and the machine's cores busy."""
        kinds = sorted(set(self.children) | set(later.children))
        child = {
            k: 1000 * (later.children.get(k, 0) - self.children.get(k, 0)) / messages for k in kinds
        }
        return {
            "gateway_cpu_ms_per_message": 1000 * (later.gateway - self.gateway) / messages,
            "child_cpu_ms_per_message": child,
            "children_cpu_ms_per_message": sum(child.values()),
            "machine_cores_busy": (later.machine - self.machine) / (later.at - self.at),
        }


def describe_cpu(result: dict[str, Any]) -> str:
    """'gateway 2.1 + upstream 0.4 + analysis 3.0 ms per message, 1.9 cores busy'."""
    parts = [f"gateway {result['gateway_cpu_ms_per_message']:.2f}"]
    parts += [f"{k} {v:.2f}" for k, v in result.get("child_cpu_ms_per_message", {}).items()]
    busy = result.get("machine_cores_busy")
    return (
        " + ".join(parts) + " ms per message" + (f", machine {busy:.2f} cores busy" if busy else "")
    )


@dataclass(frozen=True)
class GatewayCode:
    """The gateway code under test and the interpreter that runs it."""

    label: str  # short commit of the gateway code, `+dirty` when the working tree differs
    python: str
    policies: Path
    from_archive: bool

    @classmethod
    def working_tree(cls) -> GatewayCode:
        git = ["git", "-C", str(ROOT)]
        head = subprocess.check_output([*git, "rev-parse", "--short", "HEAD"], text=True).strip()
        dirty = subprocess.run(
            [*git, "diff", "--quiet", "HEAD", "--", "gateway", "policies", "pyproject.toml"],
            check=False,
        ).returncode
        python = str(ROOT / ".venv" / "bin" / "python")
        # The newest commit that changed what runs: HEAD may be a bench-only commit.
        code = subprocess.check_output(
            [
                *git,
                "log",
                "-1",
                "--format=%h",
                "HEAD",
                "--",
                "gateway",
                "policies",
                "pyproject.toml",
            ],
            text=True,
        ).strip()
        label = f"{code} (HEAD {head})" if code != head else head
        label += "+dirty" if dirty else ""
        return cls(label, python, ROOT / "policies", from_archive=False)

    @classmethod
    def commit(cls, rev: str, stack: ExitStack) -> GatewayCode:
        """Export `rev` with git archive and install it into a venv of its own (cached)."""
        git = ["git", "-C", str(ROOT)]
        full = subprocess.check_output([*git, "rev-parse", f"{rev}^{{commit}}"], text=True).strip()
        short = full[:7]
        src = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="sendbrake-src-")))
        archive = subprocess.check_output([*git, "archive", full])
        subprocess.run(["tar", "-x", "-C", str(src)], input=archive, check=True)
        venv = VENVS / full
        python = venv / "bin" / "python"
        if not (venv / ".installed").exists():
            print(f"installing commit {short} into {venv.relative_to(ROOT)} (once per commit)")
            subprocess.run([sys.executable, "-m", "venv", "--clear", str(venv)], check=True)
            pip = [str(python), "-m", "pip", "install", "--quiet"]
            subprocess.run([*pip, "--upgrade", "pip"], check=True)
            # Not editable: the archive goes away. The postgres extra (psycopg) lets the
            # postgres scenario run the commit too; pip only warns where it has none.
            subprocess.run([*pip, f"{src}[postgres]"], check=True)
            (venv / ".installed").touch()
        return cls(short, str(python), src / "policies", from_archive=True)

    def version_of(self, module: str) -> str:
        code = f"import importlib.metadata as m; print(m.version({module!r}))"
        out = subprocess.run([self.python, "-c", code], capture_output=True, text=True, check=False)
        return out.stdout.strip() or "?"


@dataclass
class Tokens:
    """Two operator tokens (a release of over 10,000 recipients needs two people)."""

    secrets: list[str] = field(
        default_factory=lambda: [f"sb_bench_{secrets.token_urlsafe(24)}" for _ in range(2)]
    )

    def env(self) -> str:
        items = [
            f"{{name: bench-operator-{i + 1}, sha256: {hashlib.sha256(s.encode()).hexdigest()},"
            " roles: [operator]}"
            for i, s in enumerate(self.secrets)
        ]
        return "[" + ", ".join(items) + "]"


class Gateway:
    """One `sendbrake serve` on free ports with a fresh spool; stopped when `stack` closes."""

    def __init__(
        self,
        stack: ExitStack,
        code: GatewayCode,
        tmp: Path,
        *,
        sink_port: int,
        settings: dict[str, str],
        spool_url: str | None = None,
    ) -> None:
        self.smtp_port, self.http_port = free_port(), free_port()
        self.tokens = Tokens()
        self.log = tmp / "gateway.log"
        env = {k: v for k, v in os.environ.items() if not k.startswith("SENDBRAKE_")}
        env.pop("PYTHONPATH", None)
        env |= {
            "SENDBRAKE_SMTP__LISTEN": f"{HOST}:{self.smtp_port}",
            "SENDBRAKE_SMTP__HOSTNAME": "gateway.bench.test",
            "SENDBRAKE_HTTP__LISTEN": f"{HOST}:{self.http_port}",
            "SENDBRAKE_SPOOL__URL": spool_url or f"sqlite:///{tmp / 'spool.db'}",
            "SENDBRAKE_POLICIES__DIR": str(code.policies),
            "SENDBRAKE_UPSTREAM__KIND": "smtp",
            "SENDBRAKE_UPSTREAM__HOST": HOST,
            "SENDBRAKE_UPSTREAM__PORT": str(sink_port),
            "SENDBRAKE_UPSTREAM__HELO_NAME": "gateway.bench.test",
            "SENDBRAKE_UPSTREAM__OUTBOX": str(tmp / "outbox"),
            "SENDBRAKE_OPS__TOKENS": self.tokens.env(),
            "SENDBRAKE_LOG__FORMAT": "json",
        }
        env |= settings
        self.proc = start(
            stack, [code.python, "-m", "gateway", "serve"], self.log, env=env, cwd=tmp
        )
        self.pid = self.proc.pid
        self._checked = 0.0

    def wait_ready(self, timeout: float = 60.0) -> None:
        url = f"http://{HOST}:{self.http_port}/readyz"
        try:
            wait_until(
                lambda: urllib.request.urlopen(url, timeout=1).status == 200,
                "gateway",
                timeout=timeout,
                proc=self.proc,
            )
        except RuntimeError as exc:
            raise RuntimeError(f"{exc}\n--- gateway log:\n{tail(self.log)}") from None

    def alive(self) -> None:
        """Raise if the gateway exited."""
        if self.proc.poll() is not None:
            raise RuntimeError(
                f"gateway exited with {self.proc.returncode}\n--- log:\n{tail(self.log)}"
            )

    def check(self) -> None:
        """Raise if the gateway exited or held a campaign (benchmark traffic must pass)."""
        self.alive()
        if time.monotonic() - self._checked < 2:
            return
        self._checked = time.monotonic()
        status, page = self.api("GET", "/campaigns?state=held&limit=1")
        if status == 200 and page["items"]:
            held = page["items"][0]
            raise RuntimeError(f"the gateway held campaign {held['key']}: {held['findings']}")

    def metrics(self) -> dict[str, float]:
        url = f"http://{HOST}:{self.http_port}/metrics"
        with urllib.request.urlopen(url, timeout=60) as resp:
            text = resp.read().decode()
        return {f"{m[1]}:{m[3]}" if m[3] else m[1]: float(m[4]) for m in METRIC.finditer(text)}

    def rss(self) -> dict[str, int]:
        return rss_kb(self.pid)

    def cpu(self) -> float:
        """CPU seconds the gateway has used so far, all threads."""
        return cpu_seconds(self.pid)

    def children_cpu(self) -> dict[str, float]:
        """CPU seconds each kind of its running child processes has used so far.

        Kinds by module: "upstream" (gateway.relay.upstream_process), "analysis"
        (gateway.policy.analysis_process); a child that exited is no longer counted.
        """
        kinds: dict[str, float] = {}
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                if int(stat.read_text().rsplit(")", 1)[1].split()[1]) != self.pid:
                    continue
                argv = (stat.parent / "cmdline").read_bytes().split(b"\0")
                module = argv[2].decode() if len(argv) > 2 else "?"
                kind = CHILD_KINDS.get(module, module)
                kinds[kind] = kinds.get(kind, 0.0) + cpu_seconds(int(stat.parent.name))
            except (FileNotFoundError, ProcessLookupError):
                continue
        return kinds

    def cpu_sample(self) -> CpuSample:
        """What the gateway, its children and the machine have used so far."""
        return CpuSample(time.perf_counter(), self.cpu(), self.children_cpu(), machine_cpu()[0])

    def helpers_cpu(self) -> float:
        """CPU seconds all its running child processes have used so far."""
        return sum(self.children_cpu().values())

    def api(self, method: str, path: str, token: int = 0, body: Any = None) -> tuple[int, Any]:
        """Call the ops API as operator `token` (0 or 1); return (status, JSON)."""
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(
            f"http://{HOST}:{self.http_port}/api/v1{path}",
            data=data,
            method=method,
            headers={
                "Authorization": f"Bearer {self.tokens.secrets[token]}",
                "Content-Type": "application/json",
            },
        )
        try:
            with urllib.request.urlopen(request, timeout=600) as resp:  # noqa: S310
                return resp.status, json.loads(resp.read() or b"null")
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read() or b"null")

    def warnings(self) -> list[str]:
        """Log lines at warning level or above (the log is JSON lines)."""
        lines = self.log.read_text(errors="replace").splitlines()
        bad = ('"level": "warning"', '"level": "error"')
        return [line for line in lines if not line.startswith("{") or any(b in line for b in bad)]
