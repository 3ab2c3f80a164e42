"""The postgres scenario (issue 14): one gateway on SQLite, one on PostgreSQL, two on one.

Each measurement sends the throughput scenario's legitimate traffic (one campaign whose
declared size is the whole measurement, unique recipients, 5 KB of prose, one recipient
per message) to one of three set-ups, in a fresh temporary folder and, on PostgreSQL, a
fresh private schema (CREATE SCHEMA, named in the spool URL's `options`, dropped after):

  sqlite      one gateway on its default SQLite spool
  postgres-1  one gateway on PostgreSQL
  postgres-2  two gateway processes on the same schema, the load split between them: one
              smtp-source per replica, each with half the sessions and half the messages,
              all into the one campaign (the replicas count it together)

The clock starts when smtp-source starts; "accept" ends when the last smtp-source has its
last 250, "end to end" when the one sink has every message. CPU time comes from /proc
over the same window (until the gateways have settled every recipient): every process of
every replica (gateway and upstream child), PostgreSQL's server processes (all of them;
a backend that exits is counted through the postmaster's children time), the backends of
this measurement alone, the smtp-source processes, the sink, and the whole machine
(/proc/stat), so whatever else ran shows as the difference. On PostgreSQL a sampler
reads what this measurement's backends are doing (pg_stat_activity) ten times a second.
Then the same gateways answer the latency client (end of DATA to reply), its sessions
dealt out among the replicas.
"""

from __future__ import annotations

import os
import resource
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager, nullcontext
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Self

import psycopg
from gateway_process import DELIVERED, RECEIVED, Gateway
from harness import Background, Load, Sink, cpu_seconds, machine_cpu, send_all, write_message
from latency_client import measure_latency
from scenarios import Context, Shape
from stats import fmt, ratio, spread, verdict

SERVER = "postgresql://postgres@127.0.0.1:5432/test"  # trust auth, as CI has it
SAMPLE_EVERY = 0.1  # seconds between two looks at pg_stat_activity
TARGET = 1.5  # issue 14: two replicas accept at least 1.5 x one replica's rate


@dataclass(frozen=True)
class Variant:
    """One set-up of the scenario."""

    name: str
    backend: str  # sqlite or postgres
    replicas: int


VARIANTS = (
    Variant("sqlite", "sqlite", 1),
    Variant("postgres-1", "postgres", 1),
    Variant("postgres-2", "postgres", 2),
)


# --- the PostgreSQL server ------------------------------------------------------------


class PgServer:
    """The server the scenario makes its private schemas on (never touches other schemas)."""

    def __init__(self, url: str) -> None:
        self.url = url

    def version(self) -> str:
        with psycopg.connect(self.url, autocommit=True, connect_timeout=5) as conn:
            return str(conn.execute("SELECT version()").fetchone()[0])  # type: ignore[index]

    @contextmanager
    def schema(self) -> Iterator[tuple[str, str]]:
        """Create a private schema; yield its name and a spool URL whose connections use it.

        The URL's application_name is the schema's name too, which tells this
        measurement's backends apart from everyone else's in pg_stat_activity.
        """
        name = f"sendbrake_bench_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(self.url, autocommit=True) as conn:
            conn.execute(f"CREATE SCHEMA {name}")
        joiner = "&" if "?" in self.url else "?"
        url = f"{self.url}{joiner}options=-csearch_path%3D{name}&application_name={name}"
        try:
            yield name, url
        finally:
            with psycopg.connect(self.url, autocommit=True) as conn:
                conn.execute(f"DROP SCHEMA IF EXISTS {name} CASCADE")

    def deadlocks(self) -> int:
        """Deadlocks PostgreSQL has detected in this database so far (anyone's).

        A backend reports its statistics when it exits or after a while idle, so read this
        once the gateways have stopped.
        """
        with psycopg.connect(self.url, autocommit=True) as conn:
            row = conn.execute(
                "SELECT deadlocks FROM pg_stat_database WHERE datname = current_database()"
            ).fetchone()
        return int(row[0])  # type: ignore[index]

    def table_bytes(self, schema: str, table: str) -> dict[str, int]:
        """On-disk size of one of a schema's tables: its heap, and with its indexes."""
        with psycopg.connect(self.url, autocommit=True) as conn:
            heap, total = conn.execute(
                "SELECT pg_relation_size(%s::regclass), pg_total_relation_size(%s::regclass)",
                (f"{schema}.{table}",) * 2,
            ).fetchone()  # type: ignore[misc]
        return {"heap": int(heap), "with_indexes": int(total)}

    def backends_cpu(self, name: str) -> dict[int, float]:
        """CPU seconds so far of each live backend whose application_name is `name`."""
        with psycopg.connect(self.url, autocommit=True) as conn:
            rows = conn.execute(
                "SELECT pid FROM pg_stat_activity WHERE application_name = %s", (name,)
            ).fetchall()
        out = {}
        for (pid,) in rows:
            try:
                out[pid] = cpu_seconds(pid)
            except (FileNotFoundError, ProcessLookupError):
                continue  # it just exited
        return out


def server_cpu() -> float:
    """CPU seconds all PostgreSQL server processes have used so far, exited ones included.

    Every live `postgres` process counts its own time plus its reaped children's: a
    backend that exits moves its time into the postmaster's children time, so the sum
    only grows, and two readings bracket what the server did in between (for anyone).
    """
    total = 0.0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except (FileNotFoundError, ProcessLookupError):
            continue
        name, _, rest = text.partition("(")[2].rpartition(")")
        if name != "postgres":
            continue
        fields = rest.split()
        total += sum(int(f) for f in fields[11:15])  # utime stime cutime cstime
    return total / os.sysconf("SC_CLK_TCK")


class WaitSampler(Background):
    """Counts what one measurement's backends are doing, from pg_stat_activity."""

    def __init__(self, server: PgServer, name: str) -> None:
        self._server, self._name = server, name
        self.counts: Counter[str] = Counter()
        self.samples = 0
        super().__init__()

    def __enter__(self) -> Self:
        self._conn = psycopg.connect(
            self._server.url, autocommit=True, application_name="sendbrake-bench-sampler"
        )
        return super().__enter__()

    def __exit__(self, *exc: object) -> None:
        super().__exit__(*exc)
        self._conn.close()

    def _run(self) -> None:
        query = (
            "SELECT state, wait_event_type, wait_event FROM pg_stat_activity"
            " WHERE application_name = %s"
        )
        while not self._stop.wait(SAMPLE_EVERY):
            for state, kind, event in self._conn.execute(query, (self._name,)).fetchall():
                if state == "active":
                    self.counts[f"active, {kind}:{event}" if kind else "active, running"] += 1
                else:  # idle / idle in transaction: waiting for the gateway (ClientRead)
                    self.counts[str(state)] += 1
            self.samples += 1

    def shares(self) -> dict[str, float]:
        """Of all backend samples, the share in each state, largest first."""
        total = sum(self.counts.values()) or 1
        return {k: round(v / total, 4) for k, v in self.counts.most_common()}


class SinkProgress(Background):
    """Records the sink's count once a second: how the rate changes during a run."""

    def __init__(self, sink: Sink, started: float) -> None:
        self._sink, self._started = sink, started
        self.points: list[tuple[float, int]] = []
        super().__init__()

    def _run(self) -> None:
        while not self._stop.wait(1.0):
            self.points.append((round(time.perf_counter() - self._started, 2), self._sink.count()))

    def rates(self, total: int, e2e_s: float) -> dict[str, float]:
        """Delivery rate over the first and over the last quarter of the messages."""
        points = [*self.points, (e2e_s, total)]
        t25 = next(t for t, n in points if n >= total / 4)
        t75 = next(t for t, n in points if n >= total * 3 / 4)
        return {
            "first_quarter_rate": total / 4 / t25,
            "last_quarter_rate": total / 4 / max(e2e_s - t75, 1e-9),
        }


# --- one measurement ------------------------------------------------------------------


def split(shape: Shape, message: Path, replicas: int) -> list[Load]:
    """One smtp-source load per replica: its share of messages and sessions.

    Each numbers its recipients before another local part (rcpt, rcptb, ...), so the
    campaign they share never sees one address twice.
    """
    loads = []
    for i in range(replicas):
        messages = shape.messages // replicas + (i < shape.messages % replicas)
        sessions = shape.sessions // replicas + (i < shape.sessions % replicas)
        local = "rcpt" if i == 0 else f"rcpt{chr(ord('a') + i)}"
        loads.append(Load(messages, shape.recipients, sessions, message, local))
    return loads


def _message(path: Path, declared: int, size: int, label: str) -> Path:
    return write_message(
        path,
        campaign=f"bench-{label}-{uuid.uuid4().hex[:12]}",
        declared=declared,
        size=size,
        subject=f"sendbrake bench {label}",
    )


def _cpu(gws: list[Gateway], sink: Sink, server: PgServer, name: str) -> dict[str, Any]:
    children = resource.getrusage(resource.RUSAGE_CHILDREN)  # reaped: the smtp-sources
    busy, stolen = machine_cpu()
    return {
        "at": time.perf_counter(),
        "machine": busy,
        "stolen": stolen,
        "gateway": sum(gw.cpu() for gw in gws),
        "upstream_process": sum(gw.helpers_cpu() for gw in gws),
        "postgres_server": server_cpu(),
        "postgres_backends": server.backends_cpu(name) if name else {},
        "smtp_source": children.ru_utime + children.ru_stime,
        "smtp_sink": cpu_seconds(sink.proc.pid),
    }


def _cpu_used(before: dict[str, Any], after: dict[str, Any], messages: int) -> dict[str, Any]:
    """CPU milliseconds per message of each part between two readings, and cores busy."""
    skip = {"at", "postgres_backends", "machine", "stolen"}
    used = {k: after[k] - before[k] for k in before if k not in skip}
    old = before["postgres_backends"]
    used["postgres_backends"] = sum(
        cpu - old.get(pid, 0.0) for pid, cpu in after["postgres_backends"].items()
    )
    used["gateway_total"] = used["gateway"] + used["upstream_process"]
    window = after["at"] - before["at"]
    parts = ("gateway_total", "postgres_server", "smtp_source", "smtp_sink")
    return {
        "cpu_ms_per_message": {k: 1000 * v / messages for k, v in used.items()},
        "cpu_window_s": window,
        # Cores kept busy by what was measured: 2.0 is all of this machine.
        "busy_cores": sum(used[k] for k in parts) / window,
        # ... and by everything (the difference is anyone else), and stolen by the host.
        "machine_busy_cores": (after["machine"] - before["machine"]) / window,
        "stolen_cores": (after["stolen"] - before["stolen"]) / window,
    }


def _settled(gws: list[Gateway], shape: Shape, seconds: float = 60) -> dict[str, list[float]]:
    """Each replica's counts once together they count every recipient delivered."""
    deadline = time.monotonic() + seconds
    while True:
        metrics = [gw.metrics() for gw in gws]
        delivered = [m.get(DELIVERED, 0) for m in metrics]
        if sum(delivered) >= shape.total_recipients or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    received = [m.get(RECEIVED, 0) for m in metrics]
    if sum(received) != shape.messages or sum(delivered) != shape.total_recipients:
        raise RuntimeError(
            f"the replicas counted {received} messages received and {delivered} recipients"
            f" delivered; sent {shape.messages} x {shape.recipients}"
        )
    return {"received_by_replica": received, "delivered_by_replica": delivered}


def _nothing_held(gw: Gateway) -> None:
    status, page = gw.api("GET", "/campaigns?state=held&limit=1")
    if status != 200 or page["items"]:
        raise RuntimeError(f"a campaign was held (or the API failed, {status}): {str(page)[:500]}")


def measure(
    ctx: Context,
    variant: Variant,
    *,
    server: PgServer,
    shape: Shape,
    latency: Shape,
    tmp: Path,
    campaign_per_replica: bool = False,
) -> dict[str, Any]:
    """Throughput and then reply latency of one set-up, from a fresh spool.

    All replicas' mail is one campaign, declared at the whole measurement, unless
    `campaign_per_replica` (a diagnosis: each load its own campaign, declared at its share).
    """
    with ExitStack() as stack:
        name, url = "", None
        deadlocks: list[int] = []
        if variant.backend == "postgres":
            name, url = stack.enter_context(server.schema())
            deadlocks.append(server.deadlocks())
            # Runs once the gateways (entered later) have stopped, before the schema goes.
            stack.callback(lambda: deadlocks.append(server.deadlocks()))
        sink = Sink(stack, ctx.tools, tmp)
        gws = []
        for i in range(variant.replicas):
            folder = tmp / f"replica-{i + 1}"
            folder.mkdir()
            gw = Gateway(
                stack, ctx.code, folder, sink_port=sink.port, settings=ctx.settings, spool_url=url
            )
            gws.append(gw)
        for gw in gws:
            gw.wait_ready()

        def alive() -> None:
            for gw in gws:
                gw.alive()
            gws[0].check()  # one spool: any replica sees a held campaign

        # The declaration covers the whole measurement, across every replica.
        message = _message(tmp / "message.txt", shape.total_recipients, ctx.size, variant.name)
        loads = split(shape, message, variant.replicas)
        if campaign_per_replica and len(loads) > 1:
            for i, ld in enumerate(list(loads)):
                path, declared = tmp / f"message-{i + 1}.txt", ld.messages * ld.recipients
                own = _message(path, declared, ctx.size, f"{variant.name}-replica-{i + 1}")
                loads[i] = replace(ld, message_file=own)
        load_average = os.getloadavg()
        before = _cpu(gws, sink, server, name)
        sampler = WaitSampler(server, name) if name else None
        started = time.perf_counter()
        with sampler or nullcontext(), SinkProgress(sink, started) as progress:
            accepts = send_all(
                ctx.tools, [(gw.smtp_port, ld) for gw, ld in zip(gws, loads, strict=True)]
            )
            at_accept = sink.count()
            done_at = sink.wait_for(shape.messages, ctx.timeout, alive)
        # The one campaign row every admission and settlement updates: its row versions.
        campaigns = server.table_bytes(name, "campaigns") if name else {}
        counts = _settled(gws, shape)
        cpu = _cpu_used(before, _cpu(gws, sink, server, name), shape.messages)
        _nothing_held(gws[0])
        text = _message(
            tmp / "latency.txt", latency.total_recipients, ctx.size, f"{variant.name}-latency"
        )
        lat = measure_latency(
            [gw.smtp_port for gw in gws], text.read_text(), latency.messages, latency.sessions
        ).summary()
        _nothing_held(gws[0])
        accept_s, e2e_s = max(accepts), done_at - started
        result = {
            "replicas": variant.replicas,
            "backend": variant.backend,
            "campaigns": len({ld.message_file for ld in loads}),
            "load_average_before": load_average,
            "sessions_by_replica": [ld.sessions for ld in loads],
            "messages_by_replica": [ld.messages for ld in loads],
            "accept_s": accept_s,
            "accept_s_by_source": accepts,
            "accept_rate": shape.messages / accept_s,
            "transactions_at_accept_end": at_accept,
            "e2e_s": e2e_s,
            "e2e_rate": shape.messages / e2e_s,
            **progress.rates(shape.messages, e2e_s),
            "sink_progress": progress.points,
            "campaigns_table_bytes": campaigns,
            **counts,
            **cpu,
            "pg_wait_samples": sampler.samples if sampler else 0,
            "pg_backend_states": sampler.shares() if sampler else {},
            "latency": lat,
            "gateway_warnings": [len(gw.warnings()) for gw in gws],
            "rss_kb": [gw.rss() for gw in gws],
        }
    # Throughput and latency phases together, and anyone else's in this database meanwhile.
    result["pg_deadlocks"] = deadlocks[1] - deadlocks[0] if deadlocks else 0
    return result


def describe(name: str, r: dict[str, Any]) -> str:
    """One measurement on one line, for the progress output."""
    cpu = r["cpu_ms_per_message"]
    return (
        f"{name} accept {r['accept_rate']:,.0f}, end-to-end {r['e2e_rate']:,.0f} msg/s"
        f" (first quarter {r['first_quarter_rate']:,.0f}, last {r['last_quarter_rate']:,.0f})"
        f" (CPU ms/msg: gateway {cpu['gateway_total']:.2f}, PostgreSQL"
        f" {cpu['postgres_server']:.2f}, smtp-source {cpu['smtp_source']:.2f}, sink"
        f" {cpu['smtp_sink']:.2f}; cores busy {r['busy_cores']:.2f} of the machine's"
        f" {r['machine_busy_cores']:.2f}; latency p50"
        f" {r['latency']['p50_ms']:.1f} p99 {r['latency']['p99_ms']:.1f} ms;"
        f" {r['pg_deadlocks']} deadlocks; campaigns table"
        f" {r['campaigns_table_bytes'].get('heap', 0) / 1024:,.0f} KiB)"
    )


# --- over the runs --------------------------------------------------------------------


def summarise(shape: Shape, latency: Shape, runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Median and range of each set-up's figures; ratios taken pair by pair within a run."""

    def col(variant: str, *path: str) -> list[float]:
        values = []
        for run in runs:
            value: Any = run[variant]
            for key in path:
                value = value[key]
            values.append(value)
        return values

    by_variant = {
        v.name: {
            "e2e": spread(col(v.name, "e2e_rate")),
            "e2e_first_quarter": spread(col(v.name, "first_quarter_rate")),
            "e2e_last_quarter": spread(col(v.name, "last_quarter_rate")),
            "accept": spread(col(v.name, "accept_rate")),
            "gateway_cpu_ms_per_message": spread(
                col(v.name, "cpu_ms_per_message", "gateway_total")
            ),
            "postgres_cpu_ms_per_message": spread(
                col(v.name, "cpu_ms_per_message", "postgres_server")
            ),
            "busy_cores": spread(col(v.name, "busy_cores")),
            "machine_busy_cores": spread(col(v.name, "machine_busy_cores")),
            "p50_ms": spread(col(v.name, "latency", "p50_ms")),
            "p99_ms": spread(col(v.name, "latency", "p99_ms")),
            "pg_deadlocks": spread(col(v.name, "pg_deadlocks")),
        }
        for v in VARIANTS
    }
    out: dict[str, Any] = {
        "shape": vars(shape),
        "latency_shape": vars(latency),
        "unit": "msg/s",
        "by_variant": by_variant,
        "postgres_1_to_sqlite_e2e": ratio(col("postgres-1", "e2e_rate"), col("sqlite", "e2e_rate")),
        "postgres_1_to_sqlite_accept": ratio(
            col("postgres-1", "accept_rate"), col("sqlite", "accept_rate")
        ),
        "postgres_2_to_1_e2e": ratio(col("postgres-2", "e2e_rate"), col("postgres-1", "e2e_rate")),
        "postgres_2_to_1_accept": ratio(
            col("postgres-2", "accept_rate"), col("postgres-1", "accept_rate")
        ),
        "runs": runs,
    }
    parts = []
    for name, f in by_variant.items():
        parts.append(
            f"{name} end-to-end {fmt(f['e2e'], ' msg/s')}, accept {fmt(f['accept'], ' msg/s')},"
            f" gateway CPU {f['gateway_cpu_ms_per_message']['median']:.2f} ms/msg, PostgreSQL"
            f" CPU {f['postgres_cpu_ms_per_message']['median']:.2f} ms/msg, p50"
            f" {f['p50_ms']['median']:.1f} p99 {f['p99_ms']['median']:.1f} ms,"
            f" {f['pg_deadlocks']['median']:.0f} deadlocks"
        )
    what = f"{shape.messages:,} x 1 rcpt, {shape.sessions} sessions"
    out["line"] = (
        f"{'postgres':<14} {what}: " + "; ".join(parts) + "; PostgreSQL / SQLite (1 replica)"
        f" end-to-end x{out['postgres_1_to_sqlite_e2e']['median']:.2f}, accept"
        f" x{out['postgres_1_to_sqlite_accept']['median']:.2f}; 2 replicas / 1 end-to-end"
        f" x{out['postgres_2_to_1_e2e']['median']:.2f}, accept"
        f" {verdict(out['postgres_2_to_1_accept'], TARGET)}"
    )
    return out
