"""A PostgreSQL spool that goes away and comes back: /readyz and SMTP say so, and recover.

The gateway reaches PostgreSQL through a TCP proxy in the test; stopping the proxy (and
cutting its connections) is the database becoming unreachable, as a failover or a network
partition makes it. Nothing is restarted: the gateway must recover by itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import smtplib
from urllib.parse import urlsplit

import aiohttp
import pytest

from tests.harness import run_gateway
from tests.helpers import eventually
from tests.mail import message
from tests.postgres import private_schema

pytestmark = pytest.mark.own_spool  # always PostgreSQL, behind the proxy


class Proxy:
    """Forwards 127.0.0.1:port to the PostgreSQL server until stopped."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.port = 0
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", self.port)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        assert self._server is not None
        self._server.close()
        for writer in list(self._writers):
            writer.close()
        await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection(*self.target)
        self._writers |= {writer, up_writer}
        await asyncio.gather(self._pipe(reader, up_writer), self._pipe(up_reader, writer))

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError, OSError):
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        writer.close()
        self._writers.discard(writer)


async def readiness(url: str) -> int:
    async with aiohttp.ClientSession() as http, http.get(f"{url}/readyz") as response:
        return response.status


async def ready(url: str) -> bool:
    return await readiness(url) == 200


async def test_readyz_fails_while_the_database_is_unreachable_and_recovers_by_itself(
    settings_for, upstream
):
    with private_schema() as url:
        parts = urlsplit(url)
        proxy = Proxy((parts.hostname or "127.0.0.1", parts.port or 5432))
        await proxy.start()
        via_proxy = parts._replace(netloc=f"{parts.username}@127.0.0.1:{proxy.port}").geturl()
        settings = settings_for(upstream.port, spool={"url": via_proxy, "connect_timeout": "1s"})
        async with run_gateway(settings) as gw:
            assert await readiness(gw.http_url) == 200
            await gw.send("news@shop.test", ["a@example.org"], message())
            # Delivered first: a claim whose commit the outage cut could not be told from a
            # failed one, and its recipient would wait for its lease (300 s) to run out.
            await eventually(lambda: upstream.recipients == ["a@example.org"])

            await proxy.stop()
            assert await readiness(gw.http_url) == 503
            with pytest.raises(smtplib.SMTPDataError) as refused:
                await gw.send("news@shop.test", ["b@example.org"], message())
            assert refused.value.smtp_code == 451  # temporary: the platform retries

            await proxy.start()  # the same port: the database is back
            await eventually(lambda: ready(gw.http_url), timeout=30, message="never ready again")
            await gw.send("news@shop.test", ["b@example.org"], message())
            await eventually(
                lambda: sorted(upstream.recipients) == ["a@example.org", "b@example.org"]
            )
