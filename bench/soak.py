"""The soak scenario (security/faults issue): minutes of 200 busy sessions, memory watched.

One gateway on its default settings and the shipped policies (enforced), smtp-sink as its
upstream, and the load client (bench/soak_client.py) keeping `sessions` SMTP sessions busy
for `duration` seconds with bench/soak_traffic.py's mix: legitimate campaigns, plus five
campaigns built to be held that keep sending all along. A thread samples every
SAMPLE_EVERY seconds the resident memory of the gateway and all its descendants (the
upstream child), the spool's files, the sink's count and the client's; every METRICS_EVERY
seconds it also scrapes /metrics, as Prometheus would. When the load ends the relay
drains, and then the run is checked:

- the client saw no error and kept every session open until the deadline;
- the gateway counted every message the client had answered 250, and the sink, the
  gateway's delivered counter and the campaigns' relayed counters agree;
- every legitimate campaign is open, without findings, all of its mail relayed;
- every bad campaign is held by the rule it was built for, with no more mail out than
  that rule lets through before it fires;
- memory is flat: after the first third of the load (warm-up), the mean resident memory
  of the last third is within `tolerance` of the middle third's.

A failed check does not stop the run: it is listed under "failures" beside the figures.
"""

from __future__ import annotations

import statistics
import subprocess
import time
import uuid
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from gateway_process import DELIVERED, RECEIVED, Gateway
from harness import Background, Sink, cpu_seconds, machine_cpu
from scenarios import Context, profile
from soak_client import SoakLoad, percentiles
from soak_traffic import BAD, Traffic
from stats import fmt, spread

SAMPLE_EVERY = 2.0  # seconds between two memory samples
METRICS_EVERY = 10.0  # seconds between two scrapes of /metrics
BUCKET = 10.0  # seconds per bucket of the latency and rate time series
SPOOL_STATES = ("queued", "sending", "deferred", "held", "relayed", "failed")
MAY_RELAY = dict(BAD)  # bad campaign -> recipients its rule lets out before it holds


# --- what is sampled ------------------------------------------------------------------


def tree(pid: int) -> list[int]:
    """`pid` and all its descendants, from /proc (each one's parent in its stat line)."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            parent = int(stat.read_text().rsplit(")", 1)[1].split()[1])
        except (FileNotFoundError, ProcessLookupError, IndexError):
            continue
        children.setdefault(parent, []).append(int(stat.parent.name))
    out, todo = [], [pid]
    while todo:
        out.append(p := todo.pop())
        todo += children.get(p, [])
    return out


def memory(pid: int) -> dict[str, Any]:
    """Resident memory of a process tree in KiB: totals and each process's own figures.

    RSS counts shared pages (the interpreter, libraries) once per process; PSS shares them
    out, so the tree's PSS is what it really costs. Both are kept.
    """
    total = dict.fromkeys(("VmRSS", "RssAnon", "RssFile", "RssShmem", "VmHWM", "Pss"), 0)
    each = []
    for p in tree(pid):
        try:
            status = Path(f"/proc/{p}/status").read_text()
            rollup = Path(f"/proc/{p}/smaps_rollup").read_text()
            cmd = Path(f"/proc/{p}/cmdline").read_bytes().replace(b"\0", b" ").decode()
        except (FileNotFoundError, ProcessLookupError):
            continue
        figures: dict[str, int] = {}
        for line in [*status.splitlines(), *rollup.splitlines()]:
            key, _, value = line.partition(":")
            if key in total:
                figures[key] = int(value.split()[0])
        for key, kib in figures.items():
            total[key] += kib
        name = "gateway" if p == pid else ("upstream" if "upstream_process" in cmd else cmd[:60])
        each.append({"pid": p, "name": name, **figures})
    return {**total, "processes": each}


def spool_bytes(tmp: Path) -> int:
    """Bytes of the SQLite spool on disk: the database and its WAL and shared-memory files."""
    return sum(p.stat().st_size for p in tmp.glob("spool.db*") if p.is_file())


def uptime() -> str:
    return subprocess.run(["uptime"], capture_output=True, text=True, check=False).stdout.strip()


class Sampler(Background):
    """Samples memory, spool and counts every SAMPLE_EVERY s in a thread; scrapes metrics."""

    def __init__(self, gw: Gateway, sink: Sink, load: SoakLoad, tmp: Path) -> None:
        self._gw, self._sink, self._load, self._tmp = gw, sink, load, tmp
        self.samples: list[dict[str, Any]] = []
        self.scrapes: list[dict[str, Any]] = []
        super().__init__()

    def _run(self) -> None:
        scraped = 0.0
        while True:
            now = time.perf_counter()
            mem = memory(self._gw.pid)
            self.samples.append(
                {
                    "at": now,
                    "rss_kb": mem["VmRSS"],
                    "anon_kb": mem["RssAnon"],
                    "file_kb": mem["RssFile"] + mem["RssShmem"],
                    "pss_kb": mem["Pss"],
                    "by_process_kb": {p["name"]: p.get("VmRSS", 0) for p in mem["processes"]},
                    "spool_bytes": spool_bytes(self._tmp),
                    "sink": self._sink.count(),
                    "accepted": self._load.accepted,
                    "open_sessions": self._load.open,
                }
            )
            if now - scraped >= METRICS_EVERY:
                scraped = now
                self._scrape(now)
            if self._stop.wait(SAMPLE_EVERY):
                return

    def _scrape(self, now: float) -> None:
        try:
            metrics = self._gw.metrics()
        except OSError as exc:
            self.scrapes.append({"at": now, "error": repr(exc)})
            return
        self.scrapes.append(
            {
                "at": now,
                "scrape_s": time.perf_counter() - now,
                "received": metrics.get(RECEIVED, 0),
                "delivered": metrics.get(DELIVERED, 0),
                "spool": {
                    s: metrics.get(f"sendbrake_spool_recipients:{s}", 0) for s in SPOOL_STATES
                },
                "campaigns_held": metrics.get("sendbrake_campaigns_held", 0),
            }
        )


# --- one run ----------------------------------------------------------------------------


def measure(
    ctx: Context, tmp: Path, *, duration: float, sessions: int, tolerance: float
) -> dict[str, Any]:
    """One soak from a fresh spool: load, drain, then the checks (listed, not raised)."""
    with ExitStack() as stack:
        sink = Sink(stack, ctx.tools, tmp)
        gw = Gateway(stack, ctx.code, tmp, sink_port=sink.port, settings=ctx.settings)
        gw.wait_ready()
        if ctx.pyspy:
            profile(stack, ctx, gw, tmp, f"soak-{tmp.name}")
        traffic = Traffic(run_label=uuid.uuid4().hex[:8])
        load = SoakLoad(gw.smtp_port, sessions, duration, traffic.next, traffic.accepted)
        before: dict[str, Any] = {"uptime": uptime(), "memory": memory(gw.pid), **_cpu(gw, sink)}
        with Sampler(gw, sink, load, tmp) as sampler:
            load.run()
            sink_at_end = sink.count()
            drained_at, metrics = _drain(gw, sink, ctx.timeout)
            time.sleep(SAMPLE_EVERY)  # one more sample of the idle, drained gateway
        after: dict[str, Any] = {"uptime": uptime(), "memory": memory(gw.pid), **_cpu(gw, sink)}
        campaigns = _campaigns(gw)
        # Holding the bad campaigns is logged at warning level; anything else is news.
        bad_keys = [c.key for c in traffic.campaigns.values() if not c.legitimate]
        logged = gw.warnings()
        warnings = [w for w in logged if not any(k in w for k in bad_keys)]
        expected_warnings = len(logged) - len(warnings)
        sink_total = sink.count()
        spool_end = spool_bytes(tmp)
    result: dict[str, Any] = {
        "duration_s": duration,
        "load": load.summary(),
        "uptime_before": before["uptime"],
        "uptime_after": after["uptime"],
        "campaigns": {k: traffic.kinds[k] for k in sorted(traffic.kinds)},
        "sink_at_load_end": sink_at_end,
        "sink_total": sink_total,
        "drain_s": drained_at - load.ended,
    }
    window = load.ended - load.started
    result |= _rates(load, sampler.samples, sink_at_end, sink_total, drained_at)
    result["latency_ms_by_third"] = _by_third(load, window)
    result["latency_series"] = _series(load)
    result["gateway_ingest_mean_ms"] = 1000 * _mean(metrics, "sendbrake_ingest_duration_seconds")
    result["client_latency_mean_ms"] = 1000 * statistics.fmean(load.latency or [0.0])
    result |= _cpu_used(before, after, load, window)
    result |= _memory(sampler.samples, load, before["memory"], after["memory"], tolerance)
    result |= {
        "spool_bytes_start": sampler.samples[0]["spool_bytes"],
        "spool_bytes_end": spool_end,
        "recipients_held_end": metrics.get("sendbrake_recipients_held", 0),
        "gateway_warnings_about_bad_campaigns": expected_warnings,
        "gateway_warnings": len(warnings),
        "gateway_warning_samples": [w[:500] for w in warnings[:10]],
        "samples": [_rounded(s, load.started) for s in sampler.samples],
        "scrapes": [_rounded(s, load.started) for s in sampler.scrapes],
    }
    result["checks"], failures = _checks(traffic, load, campaigns, metrics, sink_total)
    if result["rss_flatness"] > 1 + tolerance:
        failures.append(
            f"memory grew: mean RSS of the last third is x{result['rss_flatness']:.3f} the"
            f" middle third's (tolerance {tolerance:.0%})"
        )
    result["failures"] = failures
    return result


def _drain(gw: Gateway, sink: Sink, timeout: float) -> tuple[float, dict[str, float]]:
    """Wait until nothing is queued or in delivery and the sink has what was delivered."""
    deadline = time.perf_counter() + timeout
    while True:
        gw.alive()
        metrics = gw.metrics()
        waiting = sum(metrics.get(f"sendbrake_spool_recipients:{s}", 0) for s in SPOOL_STATES[:2])
        now = time.perf_counter()
        if (waiting == 0 and sink.count() == metrics.get(DELIVERED, 0)) or now > deadline:
            return now, metrics
        time.sleep(0.2)


def _campaigns(gw: Gateway) -> dict[str, dict[str, Any]]:
    """Every campaign in the spool, by key (the list API, page by page)."""
    out: dict[str, dict[str, Any]] = {}
    cursor = ""
    while True:
        status, page = gw.api("GET", f"/campaigns?limit=1000{cursor}")
        if status != 200:
            raise RuntimeError(f"GET /campaigns answered {status}: {str(page)[:500]}")
        out |= {c["key"]: c for c in page["items"]}
        if not page.get("next"):
            return out
        cursor = f"&cursor={page['next']}"


def _cpu(gw: Gateway, sink: Sink) -> dict[str, float]:
    busy, stolen = machine_cpu()
    return {
        "at": time.perf_counter(),
        "machine": busy,
        "stolen": stolen,
        "gateway": gw.cpu(),
        "upstream_process": gw.helpers_cpu(),
        "smtp_sink": cpu_seconds(sink.proc.pid),
        "client": time.process_time(),  # this process: the load client and the sampler
    }


def _cpu_used(
    before: dict[str, Any], after: dict[str, Any], load: SoakLoad, window: float
) -> dict[str, Any]:
    parts = ("gateway", "upstream_process", "smtp_sink", "client")
    used = {k: after[k] - before[k] for k in parts}
    span = after["at"] - before["at"]  # load, drain and the last sample
    return {
        "cpu_ms_per_message": {k: 1000 * v / max(load.accepted, 1) for k, v in used.items()},
        "cpu_span_s": span,
        "busy_cores": {k: v / span for k, v in used.items()},
        "machine_busy_cores": (after["machine"] - before["machine"]) / span,
        "stolen_cores": (after["stolen"] - before["stolen"]) / span,
        "load_window_s": window,
    }


def _rates(
    load: SoakLoad, samples: list[dict[str, Any]], sink_end: int, total: int, drained: float
) -> dict[str, Any]:
    """Accepted and delivered messages/s over the load, overall and per third."""
    window = load.ended - load.started
    sink = [(s["at"] - load.started, s["sink"]) for s in samples]
    thirds = []
    for i in range(3):
        lo, hi = window * i / 3, window * (i + 1) / 3
        accepted = sum(1 for t in load.done_at if lo <= t < hi)
        inside = [n for t, n in sink if lo <= t <= hi]
        delivered = (inside[-1] - inside[0]) if len(inside) > 1 else 0
        span = [t for t, _ in sink if lo <= t <= hi]
        thirds.append(
            {
                "accepted_rate": accepted / (hi - lo),
                "delivered_rate": delivered / (span[-1] - span[0]) if len(span) > 1 else 0.0,
            }
        )
    return {
        "accept_rate": load.accepted / window,
        "delivered_rate_during_load": sink_end / window,
        "delivered_rate_until_drained": total / (drained - load.started),
        "rates_by_third": thirds,
    }


def _by_third(load: SoakLoad, window: float) -> list[dict[str, float]]:
    out = []
    for i in range(3):
        lo, hi = window * i / 3, window * (i + 1) / 3
        chosen = [lat for t, lat in zip(load.done_at, load.latency, strict=True) if lo <= t < hi]
        out.append(percentiles(chosen))
    return out


def _series(load: SoakLoad) -> list[dict[str, float]]:
    """Per BUCKET seconds: messages answered, p50 and p99 of their reply times."""
    buckets: dict[int, list[float]] = {}
    for t, lat in zip(load.done_at, load.latency, strict=True):
        buckets.setdefault(int(t // BUCKET), []).append(lat)
    return [{"from_s": b * BUCKET, **percentiles(v)} for b, v in sorted(buckets.items())]


def _memory(
    samples: list[dict[str, Any]],
    load: SoakLoad,
    idle: dict[str, Any],
    end: dict[str, Any],
    tolerance: float,
) -> dict[str, Any]:
    """Peak, flatness (mean of the last third / the middle third) and slope after warm-up."""
    window = load.ended - load.started
    during = [(s["at"] - load.started, s) for s in samples if load.started <= s["at"] <= load.ended]
    middle = [s for t, s in during if window / 3 <= t < 2 * window / 3]
    last = [s for t, s in during if t >= 2 * window / 3]

    def mean(rows: list[dict[str, Any]], key: str) -> float:
        return statistics.fmean(r[key] for r in rows) / 1024 if rows else float("nan")

    warm = [(t, s["rss_kb"] / 1024) for t, s in during if t >= window / 3]
    slope = statistics.linear_regression(*zip(*warm, strict=True)).slope if len(warm) > 2 else 0.0
    return {
        "rss_idle_mib": idle["VmRSS"] / 1024,
        "rss_end_mib": end["VmRSS"] / 1024,
        "rss_peak_sampled_mib": max(s["rss_kb"] for s in samples) / 1024,
        "rss_hwm_by_process_mib": {p["name"]: p["VmHWM"] / 1024 for p in end["processes"]},
        "pss_peak_sampled_mib": max(s["pss_kb"] for s in samples) / 1024,
        "rss_middle_third_mib": mean(middle, "rss_kb"),
        "rss_last_third_mib": mean(last, "rss_kb"),
        "anon_middle_third_mib": mean(middle, "anon_kb"),
        "anon_last_third_mib": mean(last, "anon_kb"),
        "rss_flatness": mean(last, "rss_kb") / mean(middle, "rss_kb"),
        "rss_slope_mib_per_min": 60 * slope,
        "rss_tolerance": tolerance,
        "memory_samples_in_load": len(during),
        "processes": sorted({name for s in samples for name in s["by_process_kb"]}),
    }


def _checks(
    traffic: Traffic,
    load: SoakLoad,
    campaigns: dict[str, dict[str, Any]],
    metrics: dict[str, float],
    sink_total: int,
) -> tuple[dict[str, Any], list[str]]:
    """Counts and campaign states: what must hold for the run to pass."""
    bad: list[str] = []
    if load.errors:
        bad.append(f"the client saw {load.errors} errors: {load.error_samples[:3]}")
    if load.min_open != load.sessions:
        bad.append(f"sessions open: {load.min_open} at the fewest, of {load.sessions}")
    received = metrics.get(RECEIVED, 0)
    rcpts = metrics.get("sendbrake_recipients_received_total", 0)
    if received != load.accepted or rcpts != load.accepted:
        bad.append(
            f"the gateway counted {received:.0f} messages and {rcpts:.0f} recipients received;"
            f" the client had {load.accepted} answered 250 (one recipient each)"
        )
    relayed = sum(c["counters"]["relayed"] for c in campaigns.values())
    delivered = metrics.get(DELIVERED, 0)
    if not sink_total == delivered == relayed:
        bad.append(
            f"delivered: sink {sink_total}, gateway counter {delivered:.0f}, campaigns"
            f" relayed {relayed}"
        )
    for outcome in ("deferred", "failed"):
        n = metrics.get(f"sendbrake_recipients_relayed_total:{outcome}", 0)
        if n:
            bad.append(f"{n:.0f} recipients {outcome} by the upstream")
    legit_held, bad_missed = _campaign_checks(traffic, campaigns, bad)
    legit = [c for c in traffic.campaigns.values() if c.legitimate and c.accepted]
    held = [c for c in traffic.campaigns.values() if not c.legitimate]
    checks = {
        "legitimate_campaigns": len(legit),
        "legitimate_messages": sum(c.accepted for c in legit),
        "legitimate_held": legit_held,
        "bad_campaigns": {
            c.key: {
                "rule": c.kind,
                "state": campaigns.get(c.key, {}).get("state"),
                "rules": sorted({f["rule"] for f in campaigns.get(c.key, {}).get("findings", [])}),
                **campaigns.get(c.key, {}).get("counters", {}),
            }
            for c in held
        },
        "bad_not_held": bad_missed,
        "gateway_received": received,
        "gateway_delivered": delivered,
        "campaigns_relayed": relayed,
    }
    return checks, bad


def _campaign_checks(
    traffic: Traffic, campaigns: dict[str, dict[str, Any]], bad: list[str]
) -> tuple[list[str], list[str]]:
    """Each campaign's state against what it was built to be; return the wrong ones."""
    unknown = set(campaigns) - set(traffic.campaigns)
    if unknown:
        bad.append(f"campaigns the load never sent: {sorted(unknown)[:5]}")
    legit_held, bad_missed = [], []
    for key, mine in traffic.campaigns.items():
        if mine.accepted == 0:
            continue  # a legitimate campaign opened at the very end; nothing was sent
        got = campaigns.get(key)
        if got is None:
            bad.append(f"campaign {key} is not in the spool")
            continue
        counters, rules = got["counters"], {f["rule"] for f in got["findings"]}
        if counters["received"] != mine.accepted:
            bad.append(f"{key}: received {counters['received']}, sent {mine.accepted}")
        if mine.legitimate:
            clean = got["state"] == "open" and not rules and counters["relayed"] == mine.accepted
            if not clean:
                legit_held.append(key)
                bad.append(
                    f"legitimate {key} is {got['state']}, findings {got['findings']},"
                    f" counters {counters}"
                )
        elif got["state"] != "held" or mine.kind not in rules:
            bad_missed.append(key)
            bad.append(f"bad {key} is {got['state']} with rules {sorted(rules)}: not held by it")
        elif counters["relayed"] > MAY_RELAY[mine.kind]:
            bad.append(f"bad {key}: {counters['relayed']} relayed, more than its rule allows")
        elif counters["relayed"] + counters["held"] != mine.accepted:
            bad.append(f"bad {key}: counters {counters} do not add up to {mine.accepted}")
    return legit_held, bad_missed


def _mean(metrics: dict[str, float], name: str) -> float:
    count = metrics.get(f"{name}_count", 0)
    return metrics.get(f"{name}_sum", 0) / count if count else 0.0


def _rounded(sample: dict[str, Any], started: float) -> dict[str, Any]:
    return {**sample, "at": round(sample["at"] - started, 2)}


# --- over the runs --------------------------------------------------------------------


def describe(r: dict[str, Any]) -> str:
    """One run on one line, for the progress output."""
    lat, checks = r["load"]["latency_ms"], r["checks"]
    return (
        f"accepted {r['accept_rate']:,.0f} msg/s, delivered {r['delivered_rate_during_load']:,.0f}"
        f" msg/s during the load ({r['load']['accepted']:,} messages, {checks['legitimate_campaigns']}"
        f" legitimate campaigns); reply p50 {lat['p50']:.0f} p99 {lat['p99']:.0f} max"
        f" {lat['max']:.0f} ms; RSS idle {r['rss_idle_mib']:.0f}, middle third"
        f" {r['rss_middle_third_mib']:.1f}, last third {r['rss_last_third_mib']:.1f} MiB"
        f" (x{r['rss_flatness']:.3f}), peak {r['rss_peak_sampled_mib']:.0f} MiB; spool"
        f" {r['spool_bytes_end'] / 2**20:,.0f} MiB; {len(checks['bad_campaigns'])} bad campaigns,"
        f" not held: {checks['bad_not_held'] or 'none'}; legitimate held:"
        f" {checks['legitimate_held'] or 'none'}; failures: {len(r['failures'])}"
    )


def summarise(runs: list[dict[str, Any]], sessions: int, duration: float) -> dict[str, Any]:
    def col(key: str, *path: str) -> list[float]:
        values = []
        for r in runs:
            v: Any = r[key]
            for p in path:
                v = v[p]
            values.append(v)
        return values

    out: dict[str, Any] = {
        "accept_rate": spread(col("accept_rate")),
        "delivered_rate": spread(col("delivered_rate_during_load")),
        "p50_ms": spread(col("load", "latency_ms", "p50")),
        "p99_ms": spread(col("load", "latency_ms", "p99")),
        "max_ms": spread(col("load", "latency_ms", "max")),
        "rss_peak_mib": spread(col("rss_peak_sampled_mib")),
        "rss_flatness": spread(col("rss_flatness")),
        "runs": runs,
    }
    failures = [f for r in runs for f in r["failures"]]
    what = f"{sessions} sessions x {duration:.0f} s"
    out["line"] = (
        f"{'soak':<14} {what}: accepted {fmt(out['accept_rate'], ' msg/s')}, delivered"
        f" {fmt(out['delivered_rate'], ' msg/s')}; reply p50 {fmt(out['p50_ms'], ' ms')} p99"
        f" {fmt(out['p99_ms'], ' ms')}; RSS peak {fmt(out['rss_peak_mib'], ' MiB')}, last/middle"
        f" third x{out['rss_flatness']['max']:.3f} at most;"
        + (f" FAILED: {'; '.join(failures)[:600]}" if failures else " every check passed")
    )
    if failures:
        out["error"] = "; ".join(failures)
    return out
