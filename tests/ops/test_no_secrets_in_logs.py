"""No secret is ever in a log line: tokens and passwords, used, mistyped and refused.

A gateway runs with every log line (structlog's and the standard library's, debug and
up) captured; tokens are created (config-file hashes and spool tokens), used, revoked,
mistyped, sent where they do not belong and pushed past the failed-token limit; SMTP
passwords log in, fail and lock out. No captured line may contain any of them.
"""

from __future__ import annotations

import asyncio
import io
import smtplib
import ssl
from pathlib import Path

import aiohttp
from click.testing import CliRunner

from gateway.cli import main
from gateway.ingress.auth import hash_password
from gateway.log import configure
from gateway.model import Role, SmtpUser, Token
from gateway.ops.auth import new_token, token_hash
from tests.harness import IDENTITY_TOKENS, TOKENS, held_campaign, run_gateway
from tests.leaks import PASSWORDS
from tests.mail import message

PASSWORD = PASSWORDS["logs"]


def self_signed(tmp_path: Path) -> dict[str, str]:
    folder = tmp_path / "tls"
    made = CliRunner().invoke(main, ["tls", "self-signed", str(folder), "--host", "127.0.0.1"])
    assert made.exit_code == 0, made.output
    return {"cert": str(folder / "cert.pem"), "key": str(folder / "key.pem")}


def smtp_login(gw, cert: str, user: str, password: str) -> int:
    with gw.smtp() as client:
        client.starttls(context=ssl.create_default_context(cafile=cert))
        try:
            client.login(user, password)
        except smtplib.SMTPException as exc:
            return getattr(exc, "smtp_code", 0)
        return 235


async def test_no_token_or_password_reaches_a_log_line(settings_for, tmp_path):
    tls = self_signed(tmp_path)
    settings = settings_for(
        smtp={"tls": tls, "auth": "optional", "auth_max_failures": 5},
        ops={"auth_max_failures": 10},
        log={"level": "debug"},
    )
    captured = io.StringIO()
    configure("json", "debug", stream=captured)
    added = {"ci": new_token(), "later": new_token()}
    secrets = [t for t, *_ in (*TOKENS.values(), *IDENTITY_TOKENS.values())]
    secrets += [*added.values(), PASSWORD, PASSWORD + "!"]
    async with run_gateway(settings) as gw, aiohttp.ClientSession() as http:
        for name, token in added.items():
            await gw.spool.add_token(Token(name, token_hash(token), frozenset({Role.OPERATOR})))
        await gw.spool.add_user(SmtpUser("shop", hash_password(PASSWORD)))
        campaign_id = await held_campaign(gw, 60)
        base = f"{gw.http_url}/api/v1"

        async def call(method: str, path: str, token: str | None, **kw) -> int:
            headers = kw.pop("headers", {})
            if token is not None:
                headers["Authorization"] = f"Bearer {token}"
            async with http.request(method, base + path, headers=headers, **kw) as response:
                await response.read()
                return response.status

        ci = added["ci"]
        assert await call("GET", "/campaigns", ci) == 200
        assert await call("POST", f"/campaigns/{campaign_id}/hold", ci, json={"reason": "x"}) == 200
        assert await call("POST", "/relay/pause", ci, json={"reason": "freeze"}) == 200
        assert await call("POST", "/relay/pause", ci, data="{" + ci) == 415
        assert await call("POST", "/relay/pause", ci, data="{" + ci, headers=json_type()) == 400
        assert await call("POST", "/relay/resume", ci, json={"reason": ci * 40}) == 422
        assert await call("GET", f"/campaigns/{ci}", ci) == 404
        assert await call("GET", f"/campaigns?cursor={ci}", ci) == 422
        await gw.spool.revoke_token("later", 0.0)
        assert await call("GET", "/campaigns", added["later"]) == 401  # revoked
        for wrong in (ci + "x", ci[:-1], ci.upper(), f"{ci}\u00e9"):
            assert await call("POST", "/relay/pause", wrong, json={"reason": "x"}) == 401
        assert await call("GET", f"/campaigns?token={ci}", None) == 401
        assert await call("GET", "/campaigns", None, headers={"X-Api-Key": ci}) == 401
        assert await call("GET", "/campaigns", ci + "y" * 10_000) == 400  # header too long
        statuses = [await call("GET", "/campaigns", f"sb_{i}{ci}") for i in range(10)]
        assert statuses[-1] == 429
        assert await call("POST", "/relay/resume", ci, json={"reason": "x"}) == 429

        logins = [
            await asyncio.to_thread(smtp_login, gw, tls["cert"], "shop", PASSWORD),
            await asyncio.to_thread(smtp_login, gw, tls["cert"], "shop", PASSWORD + "!"),
            await asyncio.to_thread(smtp_login, gw, tls["cert"], "nobody", PASSWORD),
            *[
                await asyncio.to_thread(smtp_login, gw, tls["cert"], "shop", PASSWORD + "!")
                for _ in range(4)
            ],
        ]
        assert logins[:3] == [235, 535, 535]
        assert logins[-1] == 454  # locked out
        await gw.send("news@shop.test", ["b@example.org"], message(X_Campaign_ID="after"))
    lines = captured.getvalue().splitlines()
    assert any('"listening"' in line for line in lines)  # the capture saw the gateway
    assert any("campaign_held" in line for line in lines)
    leaks = [(secret, line) for line in lines for secret in secrets if secret in line]
    assert leaks == []


def json_type() -> dict[str, str]:
    return {"Content-Type": "application/json"}
