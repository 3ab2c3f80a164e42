"""Submission from the network: STARTTLS, AUTH and never an open relay, over real sockets.

Every unauthenticated path is tried (before TLS, without AUTH, bad credentials, outside
the allowed networks, a sender domain the user may not use) and must be refused with its
exact reply; an authenticated user's mail is its own campaign (tenants never share one).
Each test runs twice: SMTP in the gateway process, and in two ingress processes
(`smtp.processes`), where TLS is the child's and AUTH is checked by the gateway.
"""

from __future__ import annotations

import asyncio
import smtplib
import ssl
from pathlib import Path

import pytest
from click.testing import CliRunner

from gateway.cli import main
from gateway.errors import ConfigError
from gateway.ingress.auth import hash_password
from gateway.model import SmtpUser
from tests.harness import run_gateway
from tests.helpers import eventually
from tests.leaks import PASSWORDS
from tests.mail import message

PASSWORD = PASSWORDS["submission"]


@pytest.fixture(params=[0, 2], ids=["in-process", "ingress-processes"])
def processes(request) -> int:
    """SMTP in the gateway process (0), or in that many ingress processes."""
    return request.param


@pytest.fixture
def tls(tmp_path: Path) -> dict[str, str]:
    """A certificate made by `sendbrake tls self-signed`, as an operator would make one."""
    folder = tmp_path / "tls"
    made = CliRunner().invoke(main, ["tls", "self-signed", str(folder), "--host", "127.0.0.1"])
    assert made.exit_code == 0, made.output
    assert (folder / "key.pem").stat().st_mode & 0o077 == 0  # the key is the owner's alone
    return {"cert": str(folder / "cert.pem"), "key": str(folder / "key.pem")}


def trusting(tls: dict[str, str]) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=tls["cert"])


async def add_users(gw) -> None:
    await gw.spool.add_user(SmtpUser("shop", hash_password(PASSWORD), ("shop.test",)))
    await gw.spool.add_user(SmtpUser("outlet", hash_password(PASSWORD)))


def session(gw, tls: dict[str, str], *, secure: bool = True, user: str | None = None):
    client = gw.smtp()
    client.ehlo("platform.test")
    if secure:
        client.starttls(context=trusting(tls))
        client.ehlo("platform.test")
    if user is not None:
        client.login(user, PASSWORD)
    return client


def reply(client: smtplib.SMTP, command: str) -> tuple[int, str]:
    code, text = client.docmd(command)
    return code, text.decode()


async def in_thread(fn, *args):
    return await asyncio.to_thread(fn, *args)


async def test_with_auth_required_every_unauthenticated_path_is_refused(
    settings_for, upstream, tls, processes
):
    smtp = {"auth": "required", "tls": tls, "processes": processes}
    settings = settings_for(upstream.port, smtp=smtp)
    async with run_gateway(settings) as gw:
        await add_users(gw)

        def before_tls() -> dict:
            with session(gw, tls, secure=False) as client:
                features = dict(client.esmtp_features)
                return {
                    "features": features,
                    "mail": reply(client, "MAIL FROM:<news@shop.test>"),
                    "auth": reply(client, "AUTH PLAIN AHNob3AAYQ=="),
                }

        plain = await in_thread(before_tls)
        assert "starttls" in plain["features"]
        assert "auth" not in plain["features"]  # never offered in the clear
        assert plain["mail"] == (530, "5.7.0 Must issue a STARTTLS command first")
        assert plain["auth"] == (530, "5.7.0 Must issue a STARTTLS command first")

        def after_tls() -> dict:
            with session(gw, tls) as client:
                return {
                    "features": dict(client.esmtp_features),
                    "mail": reply(client, "MAIL FROM:<news@shop.test>"),
                }

        secure = await in_thread(after_tls)
        assert secure["features"]["auth"].split() == ["LOGIN", "PLAIN"]
        assert secure["mail"] == (530, "5.7.0 Authentication required")

        def bad_credentials(user: str, password: str) -> tuple[int, bytes]:
            with session(gw, tls) as client, pytest.raises(smtplib.SMTPAuthenticationError) as bad:
                client.login(user, password)
            return bad.value.smtp_code, bad.value.smtp_error

        assert await in_thread(bad_credentials, "shop", "wrong") == (
            535,
            b"5.7.8 Authentication credentials invalid",
        )
        assert (await in_thread(bad_credentials, "nobody", PASSWORD))[0] == 535

        def foreign_sender() -> tuple[int, str]:
            with session(gw, tls, user="shop") as client:
                return reply(client, "MAIL FROM:<news@elsewhere.test>")

        assert await in_thread(foreign_sender) == (
            554,
            "5.7.1 Sender <news@elsewhere.test> is not allowed for user shop",
        )
    assert upstream.recipients == []


async def test_a_user_authenticated_after_starttls_relays_as_its_own_tenant(
    settings_for, upstream, tls, processes
):
    smtp = {"auth": "required", "tls": tls, "processes": processes}
    settings = settings_for(upstream.port, smtp=smtp)
    async with run_gateway(settings) as gw:
        await add_users(gw)

        def send(user: str, rcpt: str, login_mechanism: str) -> dict:
            with session(gw, tls) as client:
                client.user, client.password = user, PASSWORD
                code, _ = client.auth(
                    login_mechanism,
                    getattr(client, f"auth_{login_mechanism.lower()}"),
                    initial_response_ok=False,
                )
                assert code == 235
                return client.sendmail("news@shop.test", [rcpt], message(X_Campaign_ID="spring"))

        assert await in_thread(send, "shop", "a@example.org", "PLAIN") == {}
        assert await in_thread(send, "outlet", "b@example.org", "LOGIN") == {}
        await eventually(lambda: len(upstream.recipients) == 2)
        shop = await gw.spool.find_campaign("shop", "spring")
        outlet = await gw.spool.find_campaign("outlet", "spring")
    assert shop is not None
    assert outlet is not None
    assert shop.id != outlet.id  # one key, two tenants, two campaigns
    assert (shop.counters.received, outlet.counters.received) == (1, 1)


async def test_outside_the_allowed_networks_only_an_authenticated_user_may_relay(
    settings_for, upstream, tls, processes
):
    smtp = {"auth": "optional", "tls": tls, "allowed_networks": ["10.0.0.0/8"]}
    smtp["processes"] = processes
    async with run_gateway(settings_for(upstream.port, smtp=smtp)) as gw:
        await add_users(gw)

        def anonymous() -> tuple[int, str]:
            with session(gw, tls) as client:
                return reply(client, "MAIL FROM:<news@shop.test>")

        def authenticated() -> dict:
            with session(gw, tls, user="outlet") as client:
                return client.sendmail("news@shop.test", ["c@example.org"], message())

        assert await in_thread(anonymous) == (
            554,
            "5.7.1 Client host not allowed to relay through this gateway",
        )
        assert await in_thread(authenticated) == {}
        await eventually(lambda: upstream.recipients == ["c@example.org"])


async def test_an_address_that_keeps_failing_must_wait_even_with_the_right_password(
    settings_for, upstream, tls, processes
):
    smtp = {"auth": "required", "tls": tls, "auth_max_failures": 3, "processes": processes}
    async with run_gateway(settings_for(upstream.port, smtp=smtp)) as gw:
        await add_users(gw)

        def attempts() -> list[int]:
            codes = []
            with session(gw, tls) as client:
                for password in ["x", "y", "z", PASSWORD]:
                    try:
                        client.user, client.password = "shop", password
                        codes.append(client.auth("PLAIN", client.auth_plain)[0])
                    except smtplib.SMTPAuthenticationError as exc:
                        codes.append(exc.smtp_code)
            return codes

        assert await in_thread(attempts) == [535, 535, 535, 454]


async def test_a_listener_beyond_loopback_without_tls_does_not_start(settings_for):
    settings = settings_for(smtp={"listen": "0.0.0.0:0"})
    with pytest.raises(ConfigError, match=r"smtp.tls.cert.*beyond loopback"):
        async with run_gateway(settings):
            pass
