"""Plumbing shared by the benchmarks: tools, ports, child processes, the sink, the load.

Owns what every scenario needs and nothing scenario-specific: installing Debian's postfix
when its tools are missing, free loopback ports, children that are stopped when an
ExitStack closes (only the processes started here, by their own handle), smtp-sink with
its message counter, smtp-source runs and the message file they send. Only 127.0.0.1 is
ever used.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Self

SBIN = Path("/usr/sbin")
HOST = "127.0.0.1"
SENDER = "sender@bench.test"
RCPT_DOMAIN = "bench.test"  # smtp-source -N numbers the local part: 1rcpt@, 2rcpt@, ...
BODY_LINE = 78  # payload lines of 78 characters plus CRLF
_COUNTER = re.compile(rb"sess=\d+ quit=\d+ mesg=(\d+)$")


# --- tools ------------------------------------------------------------------------------


class Background:
    """A daemon thread running `_run` while a `with` block lasts; `_stop` says when to end."""

    def __init__(self) -> None:
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        self._thread.join()


@dataclass(frozen=True)
class Tools:
    """Where Postfix's programs live."""

    source: str
    sink: str
    postfix: str
    postconf: str


def ensure_postfix() -> Tools:
    """Return Postfix's tools, installing Debian's postfix (not started) if any is missing."""
    names = ("smtp-source", "smtp-sink", "postfix", "postconf")
    found = [shutil.which(n) or shutil.which(n, path=str(SBIN)) for n in names]
    if not all(found):
        print(
            "installing Debian's postfix (debconf: No configuration; the system daemon stays off)"
        )
        sudo = [] if os.geteuid() == 0 else ["sudo"]
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        seed = "postfix postfix/main_mailer_type select No configuration\n"
        subprocess.run([*sudo, "debconf-set-selections"], input=seed, text=True, check=True)
        subprocess.run([*sudo, "apt-get", "update", "-qq"], check=True, env=env)
        subprocess.run([*sudo, "apt-get", "install", "-y", "-qq", "postfix"], check=True, env=env)
        found = [str(SBIN / n) for n in names]
    return Tools(*found)  # type: ignore[arg-type]


def postfix_version(tools: Tools) -> str:
    out = subprocess.run(
        [tools.postconf, "-d", "-h", "mail_version"], capture_output=True, text=True, check=False
    )
    return out.stdout.strip() or "unknown"


# --- ports and processes ----------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def port_open(port: int) -> bool:
    with socket.create_connection((HOST, port), timeout=1):
        return True


def wait_until(
    check: Callable[[], Any],
    what: str,
    timeout: float = 30.0,
    proc: subprocess.Popen | None = None,
    interval: float = 0.05,
) -> Any:
    """Call `check` until it returns a true value; fail early if `proc` exits."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"{what}: process exited with {proc.returncode}")
        try:
            result = check()
        except OSError:
            result = None
        if result:
            return result
        time.sleep(interval)
    raise RuntimeError(f"{what}: not ready after {timeout:.0f}s")


def start(
    stack: ExitStack, argv: list[str], log: Path, sig: int = signal.SIGTERM, **kw: Any
) -> subprocess.Popen:
    """Start a process whose output goes to `log`; it is stopped when `stack` closes."""
    with log.open("wb") as out:
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, **kw)
    stack.callback(stop, proc, sig)
    return proc


def stop(proc: subprocess.Popen, sig: int = signal.SIGTERM, grace: float = 40.0) -> None:
    if proc.poll() is None:
        proc.send_signal(sig)
        try:
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def tail(path: Path, lines: int = 30) -> str:
    if not path.exists():
        return f"({path} does not exist)"
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time a process (all its threads) has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def machine_cpu() -> tuple[float, float]:
    """CPU seconds the whole machine has been busy so far (every process), and stolen.

    From /proc/stat: user, nice, system, irq and softirq are busy; steal is time the
    hypervisor gave to another guest while this one wanted to run.
    """
    fields = [int(f) for f in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    user, nice, system, _idle, _iowait, irq, softirq, steal = fields[:8]
    tick = os.sysconf("SC_CLK_TCK")
    return (user + nice + system + irq + softirq) / tick, steal / tick


def rss_kb(pid: int) -> dict[str, int]:
    """VmRSS and VmHWM (peak) of a process, in KiB."""
    out = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in {"VmRSS", "VmHWM"}:
            out[key] = int(value.split()[0])
    return out


# --- the sink ---------------------------------------------------------------------------


class Sink:
    """A fresh smtp-sink on a free port, the upstream of both Postfix and sendbrake.

    `-c` makes it print `sess=N quit=N mesg=N` (carriage-return separated, flushed) each
    time a transaction ends; `count()` reads the newest counter from the end of its log.
    With `dump`, every transaction is also written to a file there (X-Rcpt-Args lines),
    which is how multi-recipient runs count recipients at the sink.
    """

    def __init__(self, stack: ExitStack, tools: Tools, tmp: Path, dump: Path | None = None):
        self.port = free_port()
        self.log = tmp / f"smtp-sink-{self.port}.log"
        self.dump = dump
        argv = [tools.sink, "-c", "-u", "nobody"]
        if dump is not None:
            dump.mkdir(parents=True, exist_ok=True)
            dump.chmod(0o777)  # smtp-sink writes as nobody
            argv += ["-d", f"{dump}/%H%M%S."]
        self.proc = start(stack, [*argv, f"{HOST}:{self.port}", "1000"], self.log)
        wait_until(lambda: port_open(self.port), "smtp-sink", proc=self.proc)

    def count(self) -> int:
        """Transactions (messages) the sink has received so far."""
        with self.log.open("rb") as handle:
            handle.seek(0, os.SEEK_END)
            handle.seek(max(0, handle.tell() - 200))
            chunk = handle.read()
        # Only records ended by their carriage return are complete; the last may be half
        # written.
        complete = chunk.split(b"\r")[:-1]
        counts = [int(m[1]) for r in complete if (m := _COUNTER.search(r))]
        return counts[-1] if counts else 0

    def recipients(self) -> int:
        """Recipients in the dumped transactions (only with `dump`)."""
        if self.dump is None:
            raise RuntimeError("this sink does not dump transactions")
        total = 0
        for path in self.dump.iterdir():
            total += path.read_bytes().count(b"\nX-Rcpt-Args: ")
        return total

    def wait_for(self, expected: int, timeout: float, alive: Callable[[], None]) -> float:
        """Poll until `expected` transactions arrived; return the perf_counter time."""
        deadline = time.perf_counter() + timeout
        while (now := time.perf_counter()) < deadline:
            if self.count() >= expected:
                return now
            alive()
            time.sleep(0.02)
        raise RuntimeError(
            f"smtp-sink has {self.count()} of {expected} transactions after {timeout:.0f}s"
        )


# --- the load ---------------------------------------------------------------------------


# A plain English newsletter paragraph: the content rules (language, test markers, merge
# tags, seasonal phrases) have something real to read and nothing to object to.
PROSE = (
    "Thank you for reading our monthly product letter. This issue covers the new reporting"
    " screens, faster exports for large accounts and a simpler way to invite colleagues to"
    " a shared workspace. Our support team answered more questions than ever this month,"
    " and the most common ones are now covered in the help centre with short videos. If"
    " you manage several teams, the new permission presets save a lot of clicking. As"
    " always, reply to this message if something is unclear or missing; every answer is"
    " read by a person on the product team. "
)


def body_lines(size: int) -> list[str]:
    """Lines of up to 78 characters that, each with the CRLF smtp-source adds, make `size`."""
    text = PROSE * (size // len(PROSE) + 2)
    lines, used, pos = [], 0, 0
    while size - used >= 2:
        take = min(BODY_LINE, size - used - 2)
        piece = text[pos : pos + take]
        cut = piece.rfind(" ") if take == BODY_LINE else -1
        piece = piece[: cut + 1] if cut > 0 else piece  # break after a word's space
        lines.append(piece)
        pos += len(piece)
        used += len(piece) + 2
    return lines


def write_message(path: Path, *, campaign: str, declared: int, size: int, subject: str) -> Path:
    """Write the message smtp-source sends with -F: declaration headers and `size` bytes.

    smtp-source appends CRLF to every line, so the body is lines of up to 78 characters
    that add up (with their CRLFs) to `size` bytes. The campaign key is unique per
    measurement, the declared size is the true recipient count and the declared locale is
    the body's language, so the default policy has no reason to hold the traffic while
    every rule still runs (see bench/README.md).
    """
    body = "\n".join(body_lines(size))
    path.write_text(
        f"From: Bench <{SENDER}>\n"
        f"To: Bench list <list@{RCPT_DOMAIN}>\n"
        f"Subject: {subject}\n"
        f"X-Campaign-ID: {campaign}\n"
        f"X-Declared-Size: {declared}\n"
        "X-Campaign-Locale: en\n"
        "\n"
        f"{body}\n"
    )
    return path


@dataclass(frozen=True)
class Load:
    """One smtp-source invocation: messages × recipients over sessions, from a file."""

    messages: int
    recipients: int
    sessions: int
    message_file: Path
    # Local part the numbers are put before; loads sent at once into one campaign need
    # different ones (rcpt, rcptb, ...) or their recipients would repeat.
    local: str = "rcpt"

    def argv(self, tools: Tools, port: int) -> list[str]:
        # -N numbers every recipient across the whole run (1rcpt@, 2rcpt@, ...), so no
        # mailbox repeats within the campaign; -d reuses connections.
        return [
            tools.source, "-4", "-d", "-N", "-s", str(self.sessions), "-m", str(self.messages),
            "-r", str(self.recipients), "-F", str(self.message_file), "-f", SENDER,
            "-t", f"{self.local}@{RCPT_DOMAIN}", "-M", "bench.test", f"{HOST}:{port}",
        ]  # fmt: skip


def send(tools: Tools, port: int, load: Load) -> float:
    """Run smtp-source against 127.0.0.1:port; return its wall time in seconds."""
    return send_all(tools, [(port, load)])[0]


def send_all(tools: Tools, targets: Sequence[tuple[int, Load]]) -> list[float]:
    """Run one smtp-source per (port, load), all at once; return each one's wall time."""
    started = time.perf_counter()
    ended = [0.0] * len(targets)
    runs: list[tuple[subprocess.Popen, Any]] = []
    try:
        for port, load in targets:
            err = tempfile.TemporaryFile()  # noqa: SIM115 - closed below, after the wait
            argv = load.argv(tools, port)
            runs.append((subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=err), err))
        pending = set(range(len(runs)))
        while pending:  # polled, so each one's end is known within a few milliseconds
            for i in list(pending):
                if runs[i][0].poll() is not None:
                    ended[i] = time.perf_counter()
                    pending.discard(i)
            time.sleep(0.005)
    finally:  # interrupted (SIGTERM, Ctrl-C): stop the ones still sending
        for proc, _ in runs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    failures = []
    for proc, err in runs:
        err.seek(0)
        said = err.read().decode(errors="replace").strip()
        err.close()
        if proc.returncode != 0 or said:
            failures.append(f"smtp-source failed ({proc.returncode}): {said[:2000]}")
    if failures:
        raise RuntimeError("; ".join(failures))
    return [end - started for end in ended]
