"""Shared fixtures: fresh settings, registry, log config and spool folder per test."""

from __future__ import annotations

import asyncio
import contextlib
import json
import smtplib
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import structlog
from prometheus_client import CollectorRegistry

from gateway import settings as settings_mod
from gateway.log import configure
from gateway.metrics import Metrics
from gateway.ops.auth import token_hash
from gateway.service import Addresses, Gateway
from tests.fakes.upstream import CapturingUpstream

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


@pytest.fixture(autouse=True)
def _reset_logging() -> Iterator[None]:
    structlog.reset_defaults()
    configure("json", "warning")
    yield
    structlog.reset_defaults()


def make_settings(
    tmp_path: Path, upstream_port: int | None = None, **sections: dict[str, Any]
) -> settings_mod.Settings:
    """Settings for a test gateway: ports 0, spool in tmp_path, quick retries."""
    raw: dict[str, Any] = {
        "smtp": {"listen": "127.0.0.1:0", "hostname": "gw.test"},
        "policies": {"dir": str(POLICIES)},
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
        "spool": {"url": f"sqlite:///{tmp_path}/spool.db"},
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


@pytest.fixture
async def upstream() -> AsyncIterator[CapturingUpstream]:
    up = CapturingUpstream()
    await up.start()
    yield up
    await up.stop()


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


@pytest.fixture
def settings_for(tmp_path: Path) -> Callable[..., settings_mod.Settings]:
    def build(
        upstream_port: int | None = None, **sections: dict[str, Any]
    ) -> settings_mod.Settings:
        return make_settings(tmp_path, upstream_port, **sections)

    return build
