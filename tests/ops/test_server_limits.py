"""The HTTP server's own limits, over real sockets: header-read timeout, line and header sizes.

A connection whose request never finishes is closed after `http.header_timeout`; a
request line, header field or header count past its limit is refused with 400.
"""

from __future__ import annotations

import asyncio
import time

import pytest

from tests.harness import run_gateway

TIMEOUT = 0.5


@pytest.fixture
def settings(settings_for):
    return settings_for(
        http={
            "header_timeout": TIMEOUT,
            "max_line_size": 1024,
            "max_field_size": 1024,
            "max_headers": 16,
        }
    )


async def closed_after(gw, sent: bytes) -> tuple[float, bytes]:
    """Send `sent`, then wait for the server to close; return the wait and what it sent."""
    host, port = gw.addresses.http
    reader, writer = await asyncio.open_connection(host, port)
    try:
        writer.write(sent)
        await writer.drain()
        start = time.monotonic()
        answer = await asyncio.wait_for(reader.read(), timeout=TIMEOUT * 10)
        return time.monotonic() - start, answer
    finally:
        writer.close()


@pytest.mark.parametrize(
    "partial",
    [b"", b"GET /hea", b"GET /healthz HTTP/1.1\r\nHost: gw\r\nX-Slow: "],
    ids=["nothing", "half a request line", "headers never finish"],
)
async def test_a_connection_whose_headers_never_finish_is_closed(settings, partial):
    async with run_gateway(settings) as gw:
        waited, answer = await closed_after(gw, partial)
    assert answer == b""
    assert waited < TIMEOUT * 4


async def test_an_idle_kept_alive_connection_is_closed_too(settings):
    async with run_gateway(settings) as gw:
        waited, answer = await closed_after(gw, b"GET /healthz HTTP/1.1\r\nHost: gw\r\n\r\n")
    assert answer.startswith(b"HTTP/1.1 200")
    assert waited < TIMEOUT * 4


@pytest.mark.parametrize(
    "request_bytes",
    [
        b"GET /api/v1/campaigns?limit=" + b"1" * 2000 + b" HTTP/1.1\r\nHost: gw\r\n\r\n",
        b"GET /healthz HTTP/1.1\r\nHost: gw\r\nX-Big: " + b"a" * 2000 + b"\r\n\r\n",
        b"GET /healthz HTTP/1.1\r\nHost: gw\r\n"
        + b"".join(b"X-%d: 1\r\n" % i for i in range(40))
        + b"\r\n",
    ],
    ids=["long request line", "long header field", "too many headers"],
)
async def test_requests_past_the_size_limits_are_refused(settings, request_bytes):
    async with run_gateway(settings) as gw:
        _, answer = await closed_after(gw, request_bytes)
    status_line = answer.split(b"\r\n", 1)[0]
    assert status_line.split(b" ")[1] in {b"400", b"414", b"431"}, status_line
