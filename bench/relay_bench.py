"""Relay throughput benchmark: Postfix's smtp-source -> sendbrake -> Postfix's smtp-sink.

For every session count (default 10 and 50) and every run (default 3) it:

* starts a bare aiosmtpd server that answers 250 without storing anything and times
  smtp-source against it: the ceiling of the SMTP library the gateway is built on;
* starts a fresh smtp-sink (the upstream), a fresh gateway (`sendbrake serve`, SQLite
  spool in a new temporary folder) and times smtp-source against the gateway:
  "accept" is smtp-source's wall time (every 250 follows a durable spool commit),
  "end-to-end" runs from the start of sending until /metrics counts every recipient
  as delivered to the sink.

Only 127.0.0.1 is used; ports are found free by binding port 0. The script installs
Debian's postfix (for the two tools only, the daemon is never started) when they are
missing, stops only the processes it started and removes its temporary folders.

    make bench
    .venv/bin/python bench/relay_bench.py --runs 1 --messages 2000 --sessions 10
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from contextlib import ExitStack
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "bench" / "out"
SBIN = Path("/usr/sbin")
SENDER, RECIPIENT, SUBJECT = "sender@bench.test", "rcpt@bench.test", "sendbrake bench"
# `name{label="value"} number` lines of the Prometheus text format (one label at most).
RELAYED, RECEIVED = "sendbrake_recipients_relayed_total:", "sendbrake_messages_received_total"
METRIC = re.compile(r'^(sendbrake_\w+?)(\{\w+="(\w+)"\})? ([0-9.e+-]+)$', re.MULTILINE)


# --- tools and processes ------------------------------------------------------------


def ensure_postfix_tools() -> tuple[str, str]:
    """Return the paths of smtp-source and smtp-sink, installing postfix if needed."""
    found = [
        shutil.which(t) or shutil.which(t, path=str(SBIN)) for t in ("smtp-source", "smtp-sink")
    ]
    if all(found):
        return found[0], found[1]  # type: ignore[return-value]
    print("installing Debian's postfix for smtp-source/smtp-sink (the daemon is not started)")
    sudo = [] if os.geteuid() == 0 else ["sudo"]
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    seed = "postfix postfix/main_mailer_type select No configuration\n"
    subprocess.run([*sudo, "debconf-set-selections"], input=seed, text=True, check=True)
    subprocess.run([*sudo, "apt-get", "update", "-qq"], check=True, env=env)
    subprocess.run([*sudo, "apt-get", "install", "-y", "-qq", "postfix"], check=True, env=env)
    return str(SBIN / "smtp-source"), str(SBIN / "smtp-sink")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_until(check, what: str, timeout: float = 30.0, proc: subprocess.Popen | None = None):
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
        time.sleep(0.05)
    raise RuntimeError(f"{what}: not ready after {timeout:.0f}s")


def port_open(port: int) -> bool:
    with socket.create_connection(("127.0.0.1", port), timeout=1):
        return True


def start(
    stack: ExitStack, argv: list[str], log: Path, sig=signal.SIGTERM, **kw
) -> subprocess.Popen:
    """Start a process whose output goes to `log`; it is stopped when `stack` closes."""
    with log.open("wb") as out:
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, **kw)
    stack.callback(stop, proc, sig)
    return proc


def stop(proc: subprocess.Popen, sig: signal.Signals, grace: float = 40.0) -> None:
    if proc.poll() is None:
        proc.send_signal(sig)
        try:
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def tail(path: Path, lines: int = 30) -> str:
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


# --- one measurement ----------------------------------------------------------------


def send(source: str, port: int, args: argparse.Namespace, sessions: int, on_done=None) -> float:
    """Run smtp-source against 127.0.0.1:port and return its wall time in seconds."""
    argv = [
        source, "-4", "-d", "-s", str(sessions), "-m", str(args.messages), "-l", str(args.size),
        "-f", SENDER, "-t", RECIPIENT, "-S", SUBJECT, "-M", "bench.test", f"127.0.0.1:{port}",
    ]  # fmt: skip
    started = time.perf_counter()
    done = subprocess.run(argv, capture_output=True, text=True, check=False)
    elapsed = time.perf_counter() - started
    if on_done is not None:
        on_done()
    if done.returncode != 0 or done.stderr.strip():
        raise RuntimeError(f"smtp-source failed ({done.returncode}): {done.stderr.strip()[:2000]}")
    return elapsed


def bare_run(source: str, args: argparse.Namespace, sessions: int, tmp: Path) -> float:
    """Time smtp-source against a bare aiosmtpd server (250, nothing stored)."""
    port = free_port()
    with ExitStack() as stack:
        proc = start(stack, [sys.executable, __file__, "--bare-sink", str(port)], tmp / "bare.log")
        wait_until(lambda: port_open(port), "bare aiosmtpd", proc=proc)
        return send(source, port, args, sessions)


def sink_run(source: str, sink: str, args: argparse.Namespace, sessions: int, tmp: Path) -> float:
    """Time smtp-source straight into smtp-sink: the load generator's own ceiling."""
    port = free_port()
    with ExitStack() as stack:
        proc = start(stack, [sink, "-u", "nobody", f"127.0.0.1:{port}", "1000"], tmp / "sink0.log")
        wait_until(lambda: port_open(port), "smtp-sink", proc=proc)
        return send(source, port, args, sessions)


def scrape(http_port: int) -> dict[str, float]:
    url = f"http://127.0.0.1:{http_port}/metrics"
    with urllib.request.urlopen(url, timeout=5) as resp:
        text = resp.read().decode()
    return {f"{m[1]}:{m[3]}" if m[3] else m[1]: float(m[4]) for m in METRIC.finditer(text)}


def gateway_run(source: str, sink: str, args: argparse.Namespace, sessions: int, tmp: Path) -> dict:
    """Time smtp-source into a fresh gateway and until the sink has every message."""
    smtp_port, http_port, sink_port = free_port(), free_port(), free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("SENDBRAKE_")}
    env |= {
        "SENDBRAKE_SMTP__LISTEN": f"127.0.0.1:{smtp_port}",
        "SENDBRAKE_SMTP__HOSTNAME": "gateway.bench.test",
        "SENDBRAKE_SMTP__MAX_RECIPIENTS": "1000",
        "SENDBRAKE_HTTP__LISTEN": f"127.0.0.1:{http_port}",
        "SENDBRAKE_SPOOL__URL": f"sqlite:///{tmp / 'spool.db'}",
        "SENDBRAKE_UPSTREAM__KIND": "smtp",
        "SENDBRAKE_UPSTREAM__HOST": "127.0.0.1",
        "SENDBRAKE_UPSTREAM__PORT": str(sink_port),
        "SENDBRAKE_UPSTREAM__HELO_NAME": "gateway.bench.test",
        "SENDBRAKE_UPSTREAM__OUTBOX": str(tmp / "outbox"),
        "SENDBRAKE_LOG__LEVEL": "warning",
        "SENDBRAKE_LOG__FORMAT": "json",
    }
    env |= dict(item.split("=", 1) for item in args.set)
    if args.snapshot:
        env["PYTHONPATH"] = args.snapshot
    with ExitStack() as stack:
        sink_argv = [sink, "-c", "-u", "nobody", f"127.0.0.1:{sink_port}", "1000"]
        sink_proc = start(stack, sink_argv, tmp / "sink.log")
        wait_until(lambda: port_open(sink_port), "smtp-sink", proc=sink_proc)
        gateway_log = tmp / "gateway.log"
        serve = [sys.executable, "-m", "gateway", "serve"]
        gw = start(stack, serve, gateway_log, env=env, cwd=tmp)
        try:
            ready = f"http://127.0.0.1:{http_port}/readyz"
            wait_until(
                lambda: urllib.request.urlopen(ready, timeout=1).status == 200, "gateway", proc=gw
            )
            if args.pyspy:
                profile = OUT / f"profile-s{sessions}.txt"
                spy = [args.pyspy, "record", "--format", "raw", "-o", str(profile)]
                start(stack, [*spy, "--pid", str(gw.pid)], tmp / "pyspy.log", sig=signal.SIGINT)
            ports = (smtp_port, http_port)
            accepted_s, delivered_s, backlog, metrics = measure(source, args, sessions, ports, gw)
        except BaseException:
            print(f"--- gateway log tail ({gateway_log}):\n{tail(gateway_log)}", file=sys.stderr)
            raise
    sink_counts = tail(tmp / "sink.log", 1).strip()
    received = sum(v for k, v in metrics.items() if k.startswith(RECEIVED))
    if received != args.messages:
        raise RuntimeError(f"gateway counted {received} messages received, {args.messages} sent")
    return {
        "accept_s": accepted_s,
        "e2e_s": delivered_s,
        "accept_rate": args.messages / accepted_s,
        "e2e_rate": args.messages / delivered_s,
        "backlog_at_accept": backlog,
        "received": received,
        "relayed": {k.split(":")[1]: v for k, v in metrics.items() if k.startswith(RELAYED)},
        "ingest_mean_ms": 1000 * _mean(metrics, "sendbrake_ingest_duration_seconds"),
        "relay_mean_ms": 1000 * _mean(metrics, "sendbrake_relay_duration_seconds"),
        "smtp_sink": sink_counts,
        "gateway_warnings": sum(1 for _ in gateway_log.open(errors="replace")),
    }


def measure(
    source: str,
    args: argparse.Namespace,
    sessions: int,
    ports: tuple[int, int],
    gateway: subprocess.Popen,
) -> tuple[float, float, float, dict[str, float]]:
    """Send in a thread; once all are delivered return accept s, end-to-end s, backlog, metrics."""
    smtp_port, http_port = ports
    accepted_at: list[float] = []
    errors: list[BaseException] = []

    def sender() -> None:
        try:
            send(source, smtp_port, args, sessions, lambda: accepted_at.append(time.perf_counter()))
        except BaseException as exc:  # handed to the main thread
            errors.append(exc)

    started = time.perf_counter()
    thread = threading.Thread(target=sender, daemon=True)
    thread.start()
    backlog = None  # recipients not yet delivered when smtp-source finished
    while not errors:
        metrics = scrape(http_port)
        if accepted_at and backlog is None:
            backlog = args.messages - metrics.get(f"{RELAYED}delivered", 0)
        if metrics.get(f"{RELAYED}delivered", 0) >= args.messages:
            delivered_at = time.perf_counter()
            thread.join()
            break
        if gateway.poll() is not None:
            errors.append(RuntimeError(f"gateway exited with {gateway.returncode}"))
        elif time.perf_counter() - started > args.timeout:
            errors.append(RuntimeError(f"not everything delivered after {args.timeout:.0f}s"))
        time.sleep(0.05)
    if errors:
        raise errors[0]
    return accepted_at[0] - started, delivered_at - started, backlog or 0.0, metrics


def _mean(metrics: dict[str, float], name: str) -> float:
    count = metrics.get(f"{name}_count", 0)
    return metrics.get(f"{name}_sum", 0) / count if count else 0.0


# --- the bare aiosmtpd sink (run as a child process by bare_run) ---------------------


def serve_bare_sink(port: int) -> None:
    from aiosmtpd.smtp import SMTP  # noqa: PLC0415 - only the child needs it

    class Handler:
        async def handle_DATA(self, *_hook_args) -> str:  # noqa: N802 - aiosmtpd's hook name
            return "250 2.0.0 OK"

    async def main() -> None:
        loop = asyncio.get_running_loop()
        server = await loop.create_server(
            lambda: SMTP(
                Handler(), decode_data=False, enable_SMTPUTF8=True, hostname="bare", loop=loop
            ),
            host="127.0.0.1",
            port=port,
        )
        stopped = asyncio.Event()
        loop.add_signal_handler(signal.SIGTERM, stopped.set)
        async with server:
            await stopped.wait()

    asyncio.run(main())


# --- report -------------------------------------------------------------------------


def summary(rates: list[float]) -> dict:
    median = statistics.median(rates)
    spread = (max(rates) - min(rates)) / median * 100 if median else 0.0
    return {
        "median": median,
        "min": min(rates),
        "max": max(rates),
        "spread_pct": spread,
        "runs": rates,
    }


def fmt(s: dict) -> str:
    return f"{s['median']:7.0f} msg/s [{s['min']:.0f}-{s['max']:.0f}, ±{s['spread_pct'] / 2:.1f}%]"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3, help="runs per scenario (default 3)")
    parser.add_argument(
        "--messages", type=int, default=20_000, help="messages per run (default 20000)"
    )
    parser.add_argument(
        "--sessions",
        type=int,
        nargs="+",
        default=[10, 50],
        help="parallel SMTP sessions (default 10 50)",
    )
    parser.add_argument(
        "--size", type=int, default=5120, help="payload bytes per message (default 5120)"
    )
    parser.add_argument(
        "--timeout", type=float, default=900, help="seconds allowed per gateway run"
    )
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="SENDBRAKE_X__Y=V",
        help="extra gateway setting",
    )
    parser.add_argument(
        "--tmpdir", help="where the spool lives (default: the system's temp folder)"
    )
    parser.add_argument(
        "--pyspy", help="py-spy binary: profile the gateway into bench/out (skews the figures)"
    )
    parser.add_argument(
        "--no-json", action="store_true", help="do not write bench/out/relay_bench-*.json"
    )
    parser.add_argument(
        "--commit", help="run the gateway from `git archive COMMIT` (default: the working tree)"
    )
    parser.add_argument("--bare-sink", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.bare_sink:
        serve_bare_sink(args.bare_sink)
        return 0
    source, sink = ensure_postfix_tools()
    OUT.mkdir(parents=True, exist_ok=True)
    with ExitStack() as stack:
        args.snapshot = None
        git = ["git", "-C", str(ROOT)]
        if args.commit:
            args.commit = subprocess.check_output(
                [*git, "rev-parse", "--short", args.commit], text=True
            )
            args.snapshot = stack.enter_context(
                tempfile.TemporaryDirectory(prefix="sendbrake-src-")
            )
            archive = subprocess.check_output([*git, "archive", args.commit.strip(), "gateway"])
            subprocess.run(["tar", "-x", "-C", args.snapshot], input=archive, check=True)
        else:
            dirty = subprocess.run([*git, "diff", "--quiet", "HEAD", "--", "gateway"], check=False)
            head = subprocess.check_output(
                [*git, "rev-parse", "--short", "HEAD"], text=True
            ).strip()
            args.commit = head + ("+dirty" if dirty.returncode else "")
        args.commit = args.commit.strip()
        return bench(args, source, sink)


def bench(args: argparse.Namespace, source: str, sink: str) -> int:
    print(f"gateway code: {args.commit}{' (git archive)' if args.snapshot else ''}")
    print(f"{args.messages} messages of {args.size} B, 1 recipient each, {args.runs} run(s) each")
    results = []
    for sessions in args.sessions:
        bare, upper, runs = [], [], []
        for run in range(1, args.runs + 1):
            with tempfile.TemporaryDirectory(prefix="sendbrake-bench-", dir=args.tmpdir) as tmp:
                upper.append(args.messages / sink_run(source, sink, args, sessions, Path(tmp)))
                bare.append(args.messages / bare_run(source, args, sessions, Path(tmp)))
                runs.append(gateway_run(source, sink, args, sessions, Path(tmp)))
            r = runs[-1]
            print(
                f"  s={sessions} run {run}: accept {r['accept_rate']:.0f}/s,"
                f" end-to-end {r['e2e_rate']:.0f}/s, bare aiosmtpd {bare[-1]:.0f}/s,"
                f" source->smtp-sink {upper[-1]:.0f}/s, ingest mean {r['ingest_mean_ms']:.1f} ms,"
                f" relay mean {r['relay_mean_ms']:.1f} ms, relayed {r['relayed']},"
                f" undelivered when sending ended {r['backlog_at_accept']:.0f},"
                f" upstream smtp-sink: {r['smtp_sink']}",
                flush=True,
            )
        accept = summary([r["accept_rate"] for r in runs])
        e2e = summary([r["e2e_rate"] for r in runs])
        base, ceiling = summary(bare), summary(upper)
        ratio = accept["median"] / base["median"]
        results.append({
            "sessions": sessions, "accept": accept, "end_to_end": e2e, "bare_aiosmtpd": base,
            "smtp_sink": ceiling, "accept_ratio": ratio, "runs": runs,
        })  # fmt: skip
        print(
            f"sessions={sessions:<3} accept {fmt(accept)}  end-to-end {fmt(e2e)}"
            f"  bare aiosmtpd {fmt(base)}  ratio {ratio:.2f}"
            f"  (smtp-source->smtp-sink {ceiling['median']:.0f} msg/s)"
        )
    if not args.no_json:
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
        path = OUT / f"relay_bench-{stamp}.json"
        meta = {
            "date": stamp,
            "commit": args.commit,
            "messages": args.messages,
            "size": args.size,
            "runs": args.runs,
            "set": args.set,
        }
        path.write_text(json.dumps({**meta, "scenarios": results}, indent=2) + "\n")
        print(f"wrote {path.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
