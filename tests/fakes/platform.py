"""The platform's own webhook endpoint: a real aiohttp server that can be told to fail.

`fail_next(n, status)` answers the next n POSTs with `status` (500 by default) without
keeping them, until `recover()`; every other POST is kept in `accepted` (body, headers) and answered 200.
`attempts` counts every POST, failed ones included; `arrived` is set at each one.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from aiohttp import web


class FakePlatform:
    """A webhook receiver on 127.0.0.1, port chosen by the system."""

    def __init__(self) -> None:
        self.accepted: list[tuple[bytes, dict[str, str]]] = []
        self.attempts = 0
        self.arrived = asyncio.Event()
        self._failures: list[int] = []
        self._runner: web.AppRunner | None = None
        self.url = ""

    def fail_next(self, count: int, status: int = 500) -> None:
        """Answer the next `count` POSTs with `status`."""
        self._failures += [status] * count

    def recover(self) -> None:
        """Accept every POST from now on."""
        self._failures.clear()

    @property
    def events(self) -> list[dict[str, Any]]:
        """Every event accepted so far, in the order they arrived."""
        return [event for body, _ in self.accepted for event in json.loads(body)]

    async def _receive(self, request: web.Request) -> web.Response:
        body = await request.read()
        self.attempts += 1
        self.arrived.set()
        if self._failures:
            return web.Response(status=self._failures.pop(0), text="platform down for maintenance")
        self.accepted.append((body, dict(request.headers)))
        return web.Response(status=200, text="ok")

    async def start(self) -> FakePlatform:
        app = web.Application()
        app.router.add_post("/hooks/sendgrid", self._receive)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        host, port = self._runner.addresses[0][:2]
        self.url = f"http://{host}:{port}/hooks/sendgrid"
        return self

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
