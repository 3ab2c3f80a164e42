"""A million-line segment uploaded over HTTP to a real gateway process: the body streams
through (resident memory does not grow by its size) and mail is checked against it."""

from __future__ import annotations

import os
import smtplib
from collections.abc import AsyncIterator

import aiohttp
import pytest

from gateway.ops.auth import token_hash
from tests.harness import TOKENS
from tests.helpers import eventually
from tests.mail import message
from tests.process import GatewayProcess

pytestmark = pytest.mark.own_spool  # its gateway process is configured with a SQLite spool

LINES = 1_000_000


async def body() -> AsyncIterator[bytes]:
    """The list, generated as it is sent, so the test itself holds none of it."""
    for start in range(0, LINES, 10_000):
        yield "".join(f"member{i:07d}@example.org\n" for i in range(start, start + 10_000)).encode()


@pytest.mark.slow
async def test_million_line_upload_streams_and_is_used_at_once(tmp_path):
    policies = tmp_path / "policies"
    policies.mkdir()
    (policies / "p.yaml").write_text(
        "version: 1\nrules:\n  - {id: no-members, kind: segment_exclude, segment: big}\n"
    )
    token, _ = TOKENS["alice"]
    env = {
        "PATH": os.environ.get("PATH", ""),
        "SENDBRAKE_SMTP__LISTEN": "127.0.0.1:0",
        "SENDBRAKE_HTTP__LISTEN": "127.0.0.1:0",
        "SENDBRAKE_SPOOL__URL": f"sqlite:///{tmp_path}/spool.db",
        "SENDBRAKE_UPSTREAM__OUTBOX": str(tmp_path / "outbox"),
        "SENDBRAKE_POLICIES__DIR": str(policies),
        "SENDBRAKE_LOG__FORMAT": "json",
        "SENDBRAKE_OPS__TOKENS": f"[{{name: alice, sha256: {token_hash(token)}, roles: [operator]}}]",
    }
    gateway = GatewayProcess(env, tmp_path / "gateway.log")
    try:
        url = await gateway.http_url()
        before = gateway.rss_bytes()
        peak = before
        headers = {"Authorization": f"Bearer {token}", "Content-Type": "text/plain"}
        async with aiohttp.ClientSession(headers=headers) as http:
            upload = http.put(f"{url}/api/v1/segments/big?reason=crm%20export", data=body())
            async with upload as response:
                report = await response.json()
                peak = max(peak, gateway.rss_bytes())
        size_of_body = sum(len(f"member{i:07d}@example.org\n") for i in range(LINES))
        assert response.status == 200, report
        assert (report["size"], report["invalid"], report["lines"]) == (LINES, 0, LINES)
        growth = gateway.rss_bytes() - before
        print(
            f"upload of {size_of_body / 1e6:.1f} MB: RSS {before / 1e6:.1f} -> "
            f"{gateway.rss_bytes() / 1e6:.1f} MB (growth {growth / 1e6:.1f} MB)"
        )
        assert growth < size_of_body / 2, f"RSS grew {growth} bytes for a {size_of_body}-byte body"

        host, port = await gateway.smtp_address()
        with smtplib.SMTP(host, port, timeout=10) as client:
            client.sendmail(
                "news@shop.test",
                ["member0500000@example.org", "outsider@example.org"],
                message(X_Campaign_ID="member-check"),
            )
        async with aiohttp.ClientSession(headers=headers) as http:

            async def held() -> dict | None:
                async with http.get(f"{url}/api/v1/campaigns?state=held") as response:
                    items = (await response.json())["items"]
                return items[0] if items else None

            campaign = await eventually(held, timeout=60)
        assert campaign["findings"][0]["evidence"]["sample"] == ["member0500000@example.org"]
    finally:
        gateway.close()
    assert not gateway.errors()
