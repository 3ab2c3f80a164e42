"""Issue 18's scenarios with personalised mail: every body its own name and link tokens.

`measure` sends the same workload (bench/personal_client.py: one legitimate newsletter
campaign, multipart/alternative, about 5 KB, pipelined) to the bare aiosmtpd sink, to a
private Postfix and to sendbrake (every default rule on) back to back in one run, and
reports the client's rate against the bare sink (the generator must not be the limit),
end-to-end rates at the upstream smtp-sink, CPU per message of the gateway and of each of
its child processes, and the reply latency to the end of DATA.

`busy` runs sendbrake alone at many sessions (several legitimate campaigns, one client
process each) while CPU-bound processes (`python -c 'while True: pass'`) keep the machine
busy: any held campaign fails it.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
import uuid
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from gateway_process import DELIVERED, RECEIVED, Gateway, describe_cpu
from harness import Sink, cpu_seconds, start
from postfix import PostfixRelay
from scenarios import Context, _bare_server, _settled
from stats import fmt, ratio, spread, verdict

CLIENT = Path(__file__).resolve().parent / "personal_client.py"
TARGETS = ("bare", "postfix", "sendbrake")


def _client(
    ctx: Context, port: int, messages: int, sessions: int, *, campaign: str, local: str
) -> subprocess.Popen:
    argv = [ctx.code.python, str(CLIENT), "--port", str(port), "--messages", str(messages)]
    argv += ["--sessions", str(sessions), "--campaign", campaign, "--local", local]
    return subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _finish(proc: subprocess.Popen, timeout: float) -> dict[str, Any]:
    out, err = proc.communicate(timeout=timeout)
    if proc.returncode != 0:
        raise RuntimeError(f"load client failed ({proc.returncode}): {err[-2000:]}")
    return json.loads(out.strip().splitlines()[-1])  # type: ignore[no-any-return]


def one(ctx: Context, target: str, messages: int, sessions: int, tmp: Path) -> dict[str, Any]:
    """The personalised workload against one target; figures of the client and the target."""
    campaign = f"bench-personal-{uuid.uuid4().hex[:12]}"
    with ExitStack() as stack:
        gw = None
        if target == "bare":
            port, alive = _bare_server(stack, ctx, tmp), lambda: None
        else:
            sink = Sink(stack, ctx.tools, tmp)
            if target == "postfix":
                mta = PostfixRelay(stack, ctx.tools, tmp / "postfix", sink.port)
                port, alive = mta.port, mta.alive
            else:
                gw = Gateway(stack, ctx.code, tmp, sink_port=sink.port, settings=ctx.settings)
                gw.wait_ready()
                port, alive = gw.smtp_port, gw.check
                if ctx.pyspy:
                    from scenarios import profile  # noqa: PLC0415

                    profile(stack, ctx, gw, tmp, f"personal-s{sessions}")
        before = gw.cpu_sample() if gw else None
        started = time.perf_counter()
        client = _client(ctx, port, messages, sessions, campaign=campaign, local="p")
        result = _finish(client, ctx.timeout)
        result["accept_rate"] = result["rate"]
        if target != "bare":
            done = sink.wait_for(messages, ctx.timeout, alive)
            result["e2e_s"] = done - started
            result["e2e_rate"] = messages / (done - started)
        if gw is not None and before is not None:
            metrics = _settled(gw, messages)
            if metrics.get(RECEIVED, 0) != messages or metrics.get(DELIVERED, 0) != messages:
                raise RuntimeError(
                    f"gateway counted {metrics.get(RECEIVED)} received,"
                    f" {metrics.get(DELIVERED)} delivered; sent {messages}"
                )
            gw.check()
            result |= before.per_message(gw.cpu_sample(), messages)
            result["held_campaigns"] = metrics.get("sendbrake_held_campaigns", 0)
            result["gateway_warnings"] = len(gw.warnings())
        result["client_cpu_ms_per_message"] = 1000 * result["cpu_s"] / messages
    return result


def measure(ctx: Context, messages: int, sessions: int, args: Any) -> dict[str, Any]:
    """Bare aiosmtpd, Postfix and sendbrake back to back, `runs` times; ratios per run."""
    from relay_bench import run_dir, sub  # noqa: PLC0415 - the runner owns the folders

    rows = []
    for run in range(1, args.runs + 1):
        row = {}
        with run_dir(args, f"personal-s{sessions}") as tmp:
            for target in TARGETS:
                row[target] = one(ctx, target, messages, sessions, sub(tmp, target))
        rows.append(row)
        sb, pf, bare = row["sendbrake"], row["postfix"], row["bare"]
        print(
            f"  personal-s{sessions} run {run}: sendbrake end to end {sb['e2e_rate']:,.0f} msg/s"
            f" (accept {sb['accept_rate']:,.0f}; CPU {describe_cpu(sb)};"
            f" p50 {sb['p50_ms']:.1f} ms,"
            f" p99 {sb['p99_ms']:.1f} ms) | Postfix {pf['e2e_rate']:,.0f} msg/s (p50"
            f" {pf['p50_ms']:.1f}, p99 {pf['p99_ms']:.1f} ms) | generator to bare aiosmtpd"
            f" {bare['rate']:,.0f} msg/s (p50 {bare['p50_ms']:.1f} ms; client CPU"
            f" {bare['client_cpu_ms_per_message']:.2f} ms per message)",
            flush=True,
        )
    return summarise(messages, sessions, rows)


def summarise(messages: int, sessions: int, rows: list[dict[str, Any]]) -> dict[str, Any]:
    def col(target: str, key: str) -> list[float]:
        return [r[target][key] for r in rows]

    out: dict[str, Any] = {"messages": messages, "sessions": sessions, "runs": rows}
    for target in TARGETS:
        for key in ("accept_rate", "p50_ms", "p99_ms"):
            out[f"{target}_{key}"] = spread(col(target, key))
    for target in ("postfix", "sendbrake"):
        out[f"{target}_e2e"] = spread(col(target, "e2e_rate"))
    for key in ("gateway_cpu_ms_per_message", "children_cpu_ms_per_message", "machine_cores_busy"):
        out[key] = spread(col("sendbrake", key))
    kinds = sorted({k for r in rows for k in r["sendbrake"]["child_cpu_ms_per_message"]})
    out["child_cpu_ms_per_message"] = {
        k: spread([r["sendbrake"]["child_cpu_ms_per_message"].get(k, 0.0) for r in rows])
        for k in kinds
    }
    children = "".join(
        f" + {k} {fmt(v, ' ms', 2)}" for k, v in out["child_cpu_ms_per_message"].items()
    )
    out["e2e_ratio_to_postfix"] = ratio(col("sendbrake", "e2e_rate"), col("postfix", "e2e_rate"))
    out["accept_ratio_to_bare"] = ratio(col("sendbrake", "accept_rate"), col("bare", "rate"))
    out["generator_over_sendbrake"] = ratio(col("bare", "rate"), col("sendbrake", "e2e_rate"))
    p99 = out["sendbrake_p99_ms"]["median"]
    out["line"] = (
        f"{'personal-s' + str(sessions):<14} {messages:,} personalised x 1 rcpt, {sessions}"
        f" sessions: end-to-end sendbrake {fmt(out['sendbrake_e2e'], ' msg/s')} vs Postfix"
        f" {fmt(out['postfix_e2e'], ' msg/s')} {verdict(out['e2e_ratio_to_postfix'], 1.2)};"
        f" accept sendbrake {fmt(out['sendbrake_accept_rate'], ' msg/s')} vs bare aiosmtpd"
        f" {fmt(out['bare_accept_rate'], ' msg/s')} {verdict(out['accept_ratio_to_bare'], 0.7)};"
        f" generator / sendbrake {verdict(out['generator_over_sendbrake'], 2.0)};"
        f" CPU per message: gateway {fmt(out['gateway_cpu_ms_per_message'], ' ms', 2)}{children}"
        f" (machine {fmt(out['machine_cores_busy'], ' cores', 2)} busy); end of DATA to 250"
        f" sendbrake p50 {fmt(out['sendbrake_p50_ms'], ' ms', 1)}, p99"
        f" {fmt(out['sendbrake_p99_ms'], ' ms', 1)}"
        + (f" (target p99 <= 50 ms: {'met' if p99 <= 50 else 'NOT met'})" if sessions >= 50 else "")
        + f"; Postfix p50 {fmt(out['postfix_p50_ms'], ' ms', 1)}, p99"
        f" {fmt(out['postfix_p99_ms'], ' ms', 1)}"
    )
    return out


# --- the busy machine ----------------------------------------------------------------------


def busy(
    ctx: Context, messages: int, sessions: int, *, campaigns: int, burners: int, tmp: Path
) -> dict[str, Any]:
    """sendbrake at `sessions` sessions over `campaigns` legitimate campaigns, machine busy.

    `burners` processes spin on the CPU all along. Fails (an "error" in the result, a FAIL
    line) if any campaign is held or a message is not delivered.
    """
    per = messages // campaigns
    total = per * campaigns
    with ExitStack() as stack:
        sink = Sink(stack, ctx.tools, tmp)
        gw = Gateway(stack, ctx.code, tmp, sink_port=sink.port, settings=ctx.settings)
        gw.wait_ready()
        spin = [sys.executable, "-c", "while True: pass"]
        hogs = [start(stack, spin, tmp / f"burner{i}.log") for i in range(burners)]
        before = gw.cpu_sample()
        hog_cpu = sum(cpu_seconds(h.pid) for h in hogs)
        started = time.perf_counter()
        run = uuid.uuid4().hex[:8]
        clients = [
            _client(
                ctx,
                gw.smtp_port,
                per,
                sessions // campaigns,
                campaign=f"bench-busy-{run}-{i}",
                local=f"b{i}x",
            )
            for i in range(campaigns)
        ]
        results = [_finish(c, ctx.timeout) for c in clients]
        accept_s = time.perf_counter() - started
        done = sink.wait_for(total, ctx.timeout, gw.alive)
        metrics = _settled(gw, total)
        hog_share = (sum(cpu_seconds(h.pid) for h in hogs) - hog_cpu) / (done - started)
        status, page = gw.api("GET", "/campaigns?state=held&limit=100")
        held = page["items"] if status == 200 else [{"key": f"(ops API answered {status})"}]
        cpu = before.per_message(gw.cpu_sample(), total)
        over = [w for w in gw.warnings() if "over_budget" in w or "over its" in w]
    out: dict[str, Any] = {
        "messages": total,
        "sessions": sessions,
        "campaigns": campaigns,
        "burners": burners,
        "burners_cores_busy": hog_share,
        "accept_rate": total / accept_s,
        "e2e_rate": total / (done - started),
        "p50_ms": max(r["p50_ms"] for r in results),
        "p99_ms": max(r["p99_ms"] for r in results),
        **cpu,
        "received": metrics.get(RECEIVED, 0),
        "delivered": metrics.get(DELIVERED, 0),
        "held": [{"key": h.get("key"), "findings": h.get("findings")} for h in held],
        "over_budget_log_lines": over[:5],
    }
    failures = []
    if held:
        failures.append(f"{len(held)} legitimate campaign(s) held: {str(out['held'])[:600]}")
    if out["delivered"] != total:
        failures.append(f"delivered {out['delivered']:.0f} of {total}")
    what = (
        f"{'busy-s' + str(sessions):<14} {total:,} personalised in {campaigns} legitimate"
        f" campaigns, {sessions} sessions, {burners} CPU burners ({hog_share:.2f} cores):"
        f" accept {out['accept_rate']:,.0f} msg/s, end to end {out['e2e_rate']:,.0f} msg/s,"
        f" worst client's p50 {out['p50_ms']:.0f} ms p99 {out['p99_ms']:.0f} ms; CPU"
        f" {describe_cpu(cpu)};"
    )
    if failures:
        out["error"] = "; ".join(failures)
        out["line"] = f"{what} FAIL: {out['error']}"
    else:
        out["line"] = f"{what} nothing held (target: met)"
    return out


def describe_busy(r: dict[str, Any]) -> str:
    return r["line"]


def summarise_busy(runs: list[dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {"runs": runs}
    failed = [r for r in runs if "error" in r]
    rates = spread([r["e2e_rate"] for r in runs])
    held = sum(len(r["held"]) for r in runs)
    head = (
        f"{'busy-s' + str(runs[0]['sessions']):<14} {len(runs)} run(s), end to end"
        f" {fmt(rates, ' msg/s')}, p99 (worst client) {max(r['p99_ms'] for r in runs):.0f} ms:"
    )
    if failed:
        out["error"] = "; ".join(r["error"] for r in failed)
        out["line"] = f"{head} FAIL: {out['error']}"[:800]
    else:
        out["line"] = f"{head} {held} campaigns held (target none: met)"
    return out
