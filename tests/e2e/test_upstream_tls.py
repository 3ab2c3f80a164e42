"""TLS and AUTH towards the upstream provider, against a real TLS server (trustme CA)."""

from __future__ import annotations

import ssl

import pytest
import trustme

from gateway.states import RecipientState
from tests.harness import run_gateway
from tests.helpers import eventually
from tests.mail import message


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
def ca_file(ca, tmp_path):
    path = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(path))
    return path


def server_context(ca: trustme.CA) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1", "localhost").configure_cert(context)
    return context


@pytest.mark.parametrize("process", ["gateway", "separate"])
@pytest.mark.parametrize("mode", ["starttls", "implicit"])
async def test_relay_over_tls_with_auth(settings_for, upstream, ca, ca_file, mode, process):  # noqa: PLR0917
    await upstream.stop()
    upstream.tls = server_context(ca)
    upstream.implicit_tls = mode == "implicit"
    upstream.credentials = {"relay-user": "s3cret"}
    await upstream.start()
    settings = settings_for(
        upstream.port,
        upstream={
            "host": "127.0.0.1",
            "tls": mode,
            "ca_file": str(ca_file),
            "username": "relay-user",
            "password": "s3cret",  # secret: it must still reach the upstream process
            "process": process,
        },
    )
    async with run_gateway(settings) as gw:
        await gw.send("news@shop.test", ["a@example.org"], message())
        await eventually(lambda: upstream.transactions)
    [txn] = upstream.transactions
    assert txn.tls
    assert txn.user == "relay-user"


async def test_wrong_password_defers_instead_of_losing_mail(settings_for, upstream, ca, ca_file):
    await upstream.stop()
    upstream.tls = server_context(ca)
    upstream.credentials = {"relay-user": "s3cret"}
    await upstream.start()
    settings = settings_for(
        upstream.port,
        upstream={
            "host": "127.0.0.1",
            "tls": "starttls",
            "ca_file": str(ca_file),
            "username": "relay-user",
            "password": "wrong",
        },
    )
    async with run_gateway(settings) as gw:
        await gw.send("news@shop.test", ["a@example.org"], message())
        [row] = await eventually(lambda: gw.spool.recipients(state=RecipientState.DEFERRED))
    assert "535" in row.last_reply or "auth" in row.last_reply.lower()
    assert upstream.transactions == []


async def test_an_untrusted_certificate_is_refused(settings_for, upstream, ca):
    await upstream.stop()
    upstream.tls = server_context(ca)
    await upstream.start()
    # No ca_file: the trustme CA is not in the system store, so verification fails.
    settings = settings_for(upstream.port, upstream={"host": "127.0.0.1", "tls": "starttls"})
    async with run_gateway(settings) as gw:
        await gw.send("news@shop.test", ["a@example.org"], message())
        [row] = await eventually(lambda: gw.spool.recipients(state=RecipientState.DEFERRED))
    assert "certificate" in row.last_reply.lower()
    assert upstream.transactions == []
