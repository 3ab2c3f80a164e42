"""One measurement per function: a target (Postfix, bare aiosmtpd, sendbrake) in a scenario.

Every function starts what it needs in a fresh temporary folder (sink, relay, spool,
queue), measures, checks what arrived, and stops everything it started before returning
plain numbers. Postfix and sendbrake are measured the same way: the clock starts when
smtp-source starts; "accept" ends when smtp-source has its last 250; "end to end" ends
when the same smtp-sink has counted the last transaction.
"""

from __future__ import annotations

import math
import signal
import time
import uuid
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gateway_process import DELIVERED, RECEIVED, Gateway, GatewayCode
from harness import (
    Background,
    Load,
    Sink,
    Tools,
    free_port,
    port_open,
    send,
    start,
    wait_until,
    write_message,
)
from latency_client import measure_latency
from postfix import PostfixRelay

BARE_SINK = Path(__file__).resolve().parent / "bare_sink.py"


@dataclass(frozen=True)
class Context:
    """What every measurement needs: tools, the gateway code, and run-wide options."""

    tools: Tools
    code: GatewayCode
    size: int
    timeout: float
    settings: dict[str, str] = field(default_factory=dict)
    pyspy: str | None = None
    profile_dir: Path | None = None


@dataclass(frozen=True)
class Shape:
    """The traffic of a throughput scenario."""

    name: str
    messages: int
    recipients: int
    sessions: int

    @property
    def total_recipients(self) -> int:
        return self.messages * self.recipients


def _message(tmp: Path, ctx: Context, shape: Shape, declared: int | None = None) -> Path:
    key = f"bench-{shape.name}-{uuid.uuid4().hex[:12]}"
    return write_message(
        tmp / "message.txt",
        campaign=key,
        declared=shape.total_recipients if declared is None else declared,
        size=ctx.size,
        subject=f"sendbrake bench {shape.name}",
    )


def bare(ctx: Context, shape: Shape, tmp: Path) -> dict[str, Any]:
    """smtp-source against the bare aiosmtpd server: accept rate only."""
    with ExitStack() as stack:
        port = _bare_server(stack, ctx, tmp)
        load = Load(shape.messages, shape.recipients, shape.sessions, _message(tmp, ctx, shape))
        accept_s = send(ctx.tools, port, load)
    return {
        "accept_s": accept_s,
        "accept_rate": shape.messages / accept_s,
        "accept_recipient_rate": shape.total_recipients / accept_s,
    }


def _bare_server(stack: ExitStack, ctx: Context, tmp: Path) -> int:
    port = free_port()
    proc = start(stack, [ctx.code.python, str(BARE_SINK), str(port)], tmp / "bare.log")
    wait_until(lambda: port_open(port), "bare aiosmtpd", proc=proc)
    return port


def relay(target: str, ctx: Context, shape: Shape, tmp: Path, run: int) -> dict[str, Any]:
    """smtp-source -> Postfix or sendbrake -> smtp-sink: accept and end-to-end times."""
    multi = shape.recipients > 1
    with ExitStack() as stack:
        sink = Sink(stack, ctx.tools, tmp, dump=tmp / "dump" if multi else None)
        if target == "postfix":
            mta = PostfixRelay(stack, ctx.tools, tmp / "postfix", sink.port)
            port, alive, per_transaction = mta.port, mta.alive, mta.recipient_limit()
        else:
            gw = Gateway(stack, ctx.code, tmp, sink_port=sink.port, settings=ctx.settings)
            gw.wait_ready()
            if ctx.pyspy:
                profile(stack, ctx, gw, tmp, f"{shape.name}-run{run}")
            # sendbrake relays all recipients of a message in one transaction (the spool
            # claims them together); the recipient count at the sink checks that.
            port, alive, per_transaction = gw.smtp_port, gw.check, shape.recipients
        expected = shape.messages * math.ceil(shape.recipients / per_transaction)
        load = Load(shape.messages, shape.recipients, shape.sessions, _message(tmp, ctx, shape))
        before = gw.cpu_sample() if target == "sendbrake" else None
        started = time.perf_counter()
        accept_s = send(ctx.tools, port, load)
        at_accept = sink.count()
        done_at = sink.wait_for(expected, ctx.timeout, alive)
        result: dict[str, Any] = {
            "accept_s": accept_s,
            "accept_rate": shape.messages / accept_s,
            "accept_recipient_rate": shape.total_recipients / accept_s,
            "transactions_at_accept_end": at_accept,
            "transactions_expected": expected,
        }
        if multi:
            done_at = _all_recipients(sink, shape, started, ctx.timeout, alive) or done_at
            result["sink_recipients"] = sink.recipients()
        e2e_s = done_at - started
        result |= {
            "e2e_s": e2e_s,
            "e2e_rate": shape.messages / e2e_s,
            "e2e_recipient_rate": shape.total_recipients / e2e_s,
            "sink_transactions": sink.count(),
        }
        if target == "postfix":
            result["maillog_sent"] = mta.sent()
        elif before is not None:
            result |= _gateway_checks(gw, shape)
            result |= before.per_message(gw.cpu_sample(), shape.messages)
    return result


def _all_recipients(
    sink: Sink, shape: Shape, started: float, timeout: float, alive: Any
) -> float | None:
    """If transactions arrived but recipients are missing, wait for the recipients."""
    if sink.recipients() >= shape.total_recipients:
        return None
    deadline = started + timeout
    while time.perf_counter() < deadline:
        alive()
        if sink.recipients() >= shape.total_recipients:
            return time.perf_counter()
        time.sleep(0.5)
    raise RuntimeError(f"smtp-sink has {sink.recipients()} of {shape.total_recipients} recipients")


def _settled(gw: Gateway, recipients: int, seconds: float = 60) -> dict[str, float]:
    """The gateway's metrics once it counts `recipients` delivered (or `seconds` passed)."""
    deadline = time.monotonic() + seconds
    while (metrics := gw.metrics()).get(DELIVERED, 0) < recipients:
        if time.monotonic() > deadline:
            break
        time.sleep(0.1)
    return metrics


def _gateway_checks(gw: Gateway, shape: Shape) -> dict[str, Any]:
    """The gateway's own counts must match (it settles just after the sink's 250)."""
    metrics = _settled(gw, shape.total_recipients)
    received = metrics.get(RECEIVED, 0)
    delivered = metrics.get(DELIVERED, 0)
    if received != shape.messages or delivered != shape.total_recipients:
        raise RuntimeError(
            f"gateway counted {received} messages received and {delivered} recipients"
            f" delivered; sent {shape.messages} x {shape.recipients}"
        )
    return {
        "ingest_mean_ms": 1000 * _mean(metrics, "sendbrake_ingest_duration_seconds"),
        "relay_mean_ms": 1000 * _mean(metrics, "sendbrake_relay_duration_seconds"),
        "held_campaigns": metrics.get("sendbrake_held_campaigns", 0),
        "gateway_warnings": len(gw.warnings()),
        "rss_kb": gw.rss(),
    }


def _mean(metrics: dict[str, float], name: str) -> float:
    count = metrics.get(f"{name}_count", 0)
    return metrics.get(f"{name}_sum", 0) / count if count else 0.0


def profile(stack: ExitStack, ctx: Context, gw: Gateway, tmp: Path, label: str) -> None:
    assert ctx.profile_dir is not None  # noqa: S101 - set together with pyspy
    out = ctx.profile_dir / f"profile-{label}.txt"
    argv = [ctx.pyspy, "record", "--format", "raw", "--threads", "--rate", "100"]
    start(stack, [*argv, "-o", str(out), "--pid", str(gw.pid)], tmp / "pyspy.log", signal.SIGINT)


# --- reply latency ------------------------------------------------------------------


def latency(
    target: str, ctx: Context, shape: Shape, tmp: Path, settings: dict[str, str] | None = None
) -> dict[str, Any]:
    """Time each reply to the end of DATA with our own client (relaying runs meanwhile)."""
    with ExitStack() as stack:
        text = _message(tmp, ctx, shape).read_text()
        if target == "bare":
            port = _bare_server(stack, ctx, tmp)
        else:
            sink = Sink(stack, ctx.tools, tmp)
            if target == "postfix":
                port = PostfixRelay(stack, ctx.tools, tmp / "postfix", sink.port).port
            else:
                gw = Gateway(
                    stack,
                    ctx.code,
                    tmp,
                    sink_port=sink.port,
                    settings=ctx.settings | (settings or {}),
                )
                gw.wait_ready()
                port = gw.smtp_port
        result = measure_latency(port, text, shape.messages, shape.sessions)
    return result.summary()


# --- held campaign at scale ------------------------------------------------------------


class RssSampler(Background):
    """Samples a process's VmRSS every 0.25 s in a thread; keeps the peak per phase."""

    def __init__(self, gw: Gateway) -> None:
        self._gw = gw
        self.phase = "idle"
        self.peaks: dict[str, int] = {}
        super().__init__()

    def _run(self) -> None:
        while not self._stop.wait(0.25):
            try:
                rss = self._gw.rss()["VmRSS"]
            except (OSError, KeyError):
                return
            self.peaks[self.phase] = max(rss, self.peaks.get(self.phase, 0))


def held(ctx: Context, recipients: int, sessions: int, tmp: Path) -> dict[str, Any]:
    """A campaign declared at 100 receives `recipients`; it is held, then released."""
    per_message = 1000
    shape = Shape("held", recipients // per_message, per_message, sessions)
    with ExitStack() as stack:
        sink = Sink(stack, ctx.tools, tmp)
        gw = Gateway(stack, ctx.code, tmp, sink_port=sink.port, settings=ctx.settings)
        gw.wait_ready()
        rss: dict[str, Any] = {"start": gw.rss()}
        with RssSampler(gw) as sampler:
            sampler.phase = "ingest"
            load = Load(shape.messages, per_message, sessions, _message(tmp, ctx, shape, 100))
            accept_s = send(ctx.tools, gw.smtp_port, load)
            sampler.phase = "holding"
            time.sleep(2)
            rss["holding"] = gw.rss()
            campaign = _held_campaign(gw)
            if sink.count() or campaign["counters"]["held"] != shape.total_recipients:
                raise RuntimeError(
                    f"expected {shape.total_recipients} held and nothing relayed; campaign"
                    f" counters {campaign['counters']}, sink {sink.count()} transactions"
                )
            sampler.phase = "release"
            released_at = time.perf_counter()
            _release(gw, campaign["id"])
            release_call_s = time.perf_counter() - released_at
            done_at = sink.wait_for(shape.messages, ctx.timeout, gw.alive)
            release_s = done_at - released_at
            sampler.phase = "after"
            time.sleep(1)
            rss["after"] = gw.rss()
        # The sink has every transaction; the gateway settles each just after its 250.
        delivered = _settled(gw, shape.total_recipients).get(DELIVERED, 0)
        if delivered != shape.total_recipients:
            raise RuntimeError(f"released {shape.total_recipients}, delivered {delivered}")
    return {
        "recipients": shape.total_recipients,
        "ingest_s": accept_s,
        "ingest_recipient_rate": shape.total_recipients / accept_s,
        "release_call_s": release_call_s,
        "release_s": release_s,
        "release_recipient_rate": shape.total_recipients / release_s,
        "rss_kb": rss,
        "rss_peak_kb_by_phase": sampler.peaks,
    }


def _held_campaign(gw: Gateway) -> dict[str, Any]:
    status, page = gw.api("GET", "/campaigns?state=held")
    if status != 200 or len(page["items"]) != 1:
        raise RuntimeError(f"expected one held campaign, got {status}: {str(page)[:500]}")
    return page["items"][0]  # type: ignore[no-any-return]


def _release(gw: Gateway, campaign_id: str) -> None:
    """Two operators release it (over ops.two_person_release_above recipients)."""
    body = {"reason": "bench: held-scale scenario"}
    status, answer = gw.api("POST", f"/campaigns/{campaign_id}/release", 0, body)
    if status == 202:
        status, answer = gw.api("POST", f"/campaigns/{campaign_id}/release", 1, body)
    if status != 200 or answer.get("state") != "released":
        raise RuntimeError(f"release answered {status}: {str(answer)[:500]}")
