"""A gateway running in-process for tests: its settings, its tokens, clients to talk to it.

`run_gateway` starts a `Gateway` on the test's loop (keyword arguments such as `clock`,
`spool` or `upstream` go straight to it) and yields a `Running` with an SMTP sender and
an ops API client; `advance` moves a `ManualClock` given as its clock past a retry,
max-age or lease window. Scenario helpers that drive such a gateway live here too. Fixtures stay
in conftest.py; this module holds no state between tests.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import shutil
import smtplib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
from prometheus_client import CollectorRegistry

from gateway import settings as settings_mod
from gateway.metrics import Metrics
from gateway.ops.auth import token_hash
from gateway.service import Addresses, Gateway
from gateway.spool import Spool, create_spool
from tests import postgres
from tests.clock import ManualClock
from tests.mail import message

POLICIES = Path(__file__).resolve().parent.parent / "policies"

# API tokens every test gateway knows (as config-file hashes): name -> (token, roles).
TOKENS = {
    "admin": ("sb_test_admin", ["admin"]),
    "alice": ("sb_test_alice", ["operator"]),
    "bob": ("sb_test_bob", ["operator"]),
    "viewer": ("sb_test_viewer", ["viewer"]),
    "platform": ("sb_test_platform", ["submitter"]),
}
# Tokens bound to a protected identity (signature policy): name -> (token, roles, identity).
IDENTITY_TOKENS = {"jane": ("sb_test_jane", ["viewer"], "ceo")}


def spool_url(tmp_path: Path) -> str:
    """The test's spool: a file in its folder, or its own PostgreSQL schema (tests/postgres)."""
    if postgres.BACKEND == "postgres":
        return postgres.schema_url(str(tmp_path))
    return f"sqlite:///{tmp_path}/spool.db"


def make_settings(
    tmp_path: Path, upstream_port: int | None = None, **sections: dict[str, Any]
) -> settings_mod.Settings:
    """Settings for a test gateway: ports 0, spool in tmp_path, quick retries."""
    raw: dict[str, Any] = {
        # SMTP in the gateway process: tests may talk to it with smtplib on the loop's own
        # thread; tests of the ingress processes ask for them.
        "smtp": {"listen": "127.0.0.1:0", "hostname": "gw.test", "processes": 0},
        # Content analysis on threads, as tests inject deciders and registries; tests of the
        # analysis processes ask for them.
        "policies": {"dir": str(POLICIES), "content_processes": 0},
        "ops": {
            "tokens": [
                *(
                    {"name": name, "sha256": token_hash(token), "roles": roles}
                    for name, (token, roles) in TOKENS.items()
                ),
                *(
                    {"name": n, "sha256": token_hash(t), "roles": r, "identity": i}
                    for n, (t, r, i) in IDENTITY_TOKENS.items()
                ),
            ]
        },
        "http": {"listen": "127.0.0.1:0"},
        "spool": {"url": spool_url(tmp_path)},
        # In the gateway process, as tests inject fakes; tests of the separate one ask for it.
        "upstream": {"kind": "capture", "outbox": str(tmp_path / "outbox"), "process": "gateway"},
        "relay": {
            "retry_base": "50ms",
            "retry_max_delay": "200ms",
            "poll_interval": "100ms",
            "drain_timeout": "5s",
        },
    }
    if upstream_port is not None:
        raw["upstream"] = {
            "kind": "smtp",
            "host": "127.0.0.1",
            "port": upstream_port,
            "connect_timeout": "2s",
            "command_timeout": "2s",
            "pool_size": 4,
            "process": "gateway",
        }
    for section, values in sections.items():
        raw.setdefault(section, {}).update(values)
    return settings_mod.Settings.model_validate(raw)


class Running:
    """A gateway running on the test's loop, with helpers to talk to it."""

    def __init__(self, gateway: Gateway, addresses: Addresses) -> None:
        self.gateway = gateway
        self.addresses = addresses
        self.spool = gateway.spool

    @property
    def http_url(self) -> str:
        host, port = self.addresses.http
        return f"http://{host}:{port}"

    @property
    def esp_url(self) -> str:
        """The HTTP send API's base URL (settings with esp.listen set)."""
        assert self.addresses.esp is not None, "this gateway's esp.listen is off"
        host, port = self.addresses.esp
        return f"http://{host}:{port}"

    def smtp(self) -> smtplib.SMTP:
        host, port = self.addresses.smtp
        return smtplib.SMTP(host, port, timeout=10)

    def api(self, who: str | None = "alice") -> Api:
        """An HTTP client for the ops API, authenticated as one of TOKENS (or nobody)."""
        known = {**TOKENS, **IDENTITY_TOKENS}
        return Api(self.http_url, known[who][0] if who else None)

    async def send(self, mail_from: str, rcpts: list[str], content: bytes) -> Any:
        """Send one message with smtplib in a thread; return sendmail's refusals."""

        def work() -> Any:
            with self.smtp() as client:
                return client.sendmail(mail_from, rcpts, content)

        return await asyncio.to_thread(work)


class Api:
    """Minimal JSON client: each call returns (status, parsed body)."""

    def __init__(self, base: str, token: str | None) -> None:
        self.base = base
        self.headers = {"Authorization": f"Bearer {token}"} if token else {}

    async def call(
        self, method: str, path: str, body: Any = None, **kwargs: Any
    ) -> tuple[int, Any]:
        async with (
            aiohttp.ClientSession(headers=self.headers) as http,
            http.request(method, self.base + path, json=body, **kwargs) as response,
        ):
            text = await response.text()
            try:
                return response.status, json.loads(text)
            except ValueError:
                return response.status, text

    async def get(self, path: str, **kwargs: Any) -> tuple[int, Any]:
        return await self.call("GET", path, **kwargs)

    async def post(self, path: str, body: Any = None, **kwargs: Any) -> tuple[int, Any]:
        return await self.call("POST", path, body, **kwargs)

    async def put(self, path: str, body: Any = None, **kwargs: Any) -> tuple[int, Any]:
        return await self.call("PUT", path, body, **kwargs)


@contextlib.asynccontextmanager
async def run_gateway(settings: settings_mod.Settings, **kwargs: Any) -> AsyncIterator[Running]:
    gateway = Gateway(settings, metrics=Metrics.create(CollectorRegistry()), **kwargs)
    task = asyncio.create_task(gateway.run())
    ready = asyncio.create_task(gateway.wait_ready())
    done, _ = await asyncio.wait({task, ready}, return_when=asyncio.FIRST_COMPLETED)
    if task in done:
        ready.cancel()
        task.result()  # raises the startup error
    try:
        yield Running(gateway, ready.result())
    finally:
        gateway.stop()
        await task


@contextlib.asynccontextmanager
async def opened_spool(tmp_path: Path) -> AsyncIterator[Spool]:
    """Open the spool a test gateway in `tmp_path` used (after it stopped), as a restart would."""
    spool = create_spool(make_settings(tmp_path).spool)
    await spool.open()
    try:
        yield spool
    finally:
        await spool.close()


def advance(gw: Running, clock: ManualClock, seconds: float) -> None:
    """Move the gateway's injected clock on and wake its relay, so what fell due is claimed."""
    clock.advance(seconds)
    gw.gateway.relay.wake()


def docs_policies(tmp_path: Path) -> Path:
    """The shipped policy plus the example signature policy (identities to sign for)."""
    folder = tmp_path / "policies"
    folder.mkdir()
    shutil.copy(POLICIES / "default.yaml", folder)
    for path in (POLICIES / "examples" / "signature").glob("*.*"):
        shutil.copy(path, folder)
    return folder


async def held_campaign(gw: Running, recipients: int, *, declared: int = 5) -> str:
    """Send one message that trips the blast-radius rule (limit 55 for 5 declared): all held."""
    content = message(X_Campaign_ID="promo", X_Declared_Size=str(declared))
    await gw.send("news@shop.test", [f"r{i}@example.org" for i in range(recipients)], content)
    status, body = await gw.api().get("/api/v1/campaigns?state=held")
    assert status == 200
    return body["items"][0]["id"]


async def send_campaign(
    gw: Running, key: str, rcpts: list[str], declared: int | None = None
) -> str:
    """Send one message of campaign `key` (optionally declaring its size); return its id."""
    headers = {"X_Campaign_ID": key}
    if declared is not None:
        headers["X_Declared_Size"] = str(declared)
    assert await gw.send("news@shop.test", rcpts, message(subject=key, **headers)) == {}
    status, page = await gw.api().get("/api/v1/campaigns")
    assert status == 200
    return next(c["id"] for c in page["items"] if c["key"] == key)


async def upload_segment(api: Api, name: str, addresses: list[str], *, csv: bool = False) -> dict:
    """Load a segment over the API (`api`: an operator's client) as operators do."""
    text = ("email\n" if csv else "") + "".join(f"{a}\n" for a in addresses)
    status, body = await api.call(
        "PUT",
        f"/api/v1/segments/{name}?reason=test",
        data=text.encode(),
        headers={"Content-Type": "text/csv" if csv else "text/plain"},
    )
    assert status == 200, body
    return body
