"""The SMTP upstream against a provider that hangs, is slow, drops mid-DATA or fails TLS,
and against recipients an older spool holds that cannot be sent, over real sockets.

Each fault is tried where it is classified (`SmtpUpstream.deliver` against the fake
provider) and, where the relay's answer matters, through a running gateway, which must
deliver other mail afterwards. Retries wait for a `ManualClock`; timeouts are the loop's.
"""

from __future__ import annotations

import asyncio
import io
import json
import ssl
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import trustme
from click.testing import CliRunner

from gateway.cli.users import tls_self_signed
from gateway.log import configure
from gateway.model import DeliveryIds, Outcome
from gateway.relay.upstream import SmtpUpstream, tagged
from gateway.states import RecipientState
from tests.clock import ManualClock
from tests.fakes.upstream import CapturingUpstream
from tests.harness import advance, make_settings, opened_spool, run_gateway
from tests.helpers import eventually
from tests.mail import message
from tests.spool.records import accept, pass_all, submission

BODY = b"Subject: Spring\r\n\r\nThe spring letter.\r\n"
IDS = DeliveryIds("01MSG", "01CAMPAIGN")


def smtp_upstream(tmp_path: Path, upstream: CapturingUpstream, **options: Any) -> SmtpUpstream:
    """An `SmtpUpstream` towards the fake, with the test settings and `options` over them."""
    return SmtpUpstream(make_settings(tmp_path, upstream.port, upstream=options).upstream)


@pytest.fixture
async def relay(tmp_path, upstream) -> AsyncIterator[SmtpUpstream]:
    up = smtp_upstream(tmp_path, upstream)
    yield up
    await up.close()


async def restart(upstream: CapturingUpstream, **knobs: Any) -> None:
    """Stop the fake provider, turn its knobs, and bring it back on the same port."""
    await upstream.stop()
    for name, value in knobs.items():
        setattr(upstream, name, value)
    await upstream.start()


def events(log: io.StringIO, name: str) -> list[dict[str, Any]]:
    return [e for e in map(json.loads, log.getvalue().splitlines()) if e["event"] == name]


async def _one_in(spool, state: RecipientState):
    rows = await spool.recipients(state=state)
    return rows[0] if len(rows) == 1 else None


async def _count_in(spool, state: RecipientState, count: int):
    rows = await spool.recipients(state=state)
    return rows if len(rows) == count else None


# --- hanging and slow ---------------------------------------------------------------------


async def test_an_upstream_that_never_greets_is_transient_within_the_connect_timeout(
    tmp_path, upstream
):
    await restart(upstream, hang=True)
    up = smtp_upstream(tmp_path, upstream, connect_timeout="300ms", command_timeout="5s")
    loop = asyncio.get_running_loop()
    try:
        started = loop.time()
        [result] = await up.deliver("news@shop.test", ["a@example.org"], BODY, IDS)
        waited = loop.time() - started
        assert result.outcome is Outcome.TRANSIENT
        assert result.reply == (
            "upstream unreachable: Timed out waiting for server ready message"
            " (upstream.connect_timeout 0.3s)"
        )
        assert 0.3 <= waited < 2.0  # the connect timeout, not the command timeout
        await restart(upstream, hang=False)
        [again] = await up.deliver("news@shop.test", ["a@example.org"], BODY, IDS)
    finally:
        await up.close()
    assert again.outcome is Outcome.DELIVERED
    assert upstream.recipients == ["a@example.org"]


async def test_a_slow_upstream_within_the_timeouts_delivers_each_message_once(
    settings_for, upstream
):
    # Every reply waits 150 ms: one message takes about six replies, longer than the
    # command timeout in total, which bounds each reply, not the conversation.
    upstream.reply_delay = 0.15
    settings = settings_for(
        upstream.port, upstream={"connect_timeout": "500ms", "command_timeout": "500ms"}
    )
    async with run_gateway(settings) as gw:
        await gw.send("news@shop.test", ["a@example.org"], message())
        await gw.send("news@shop.test", ["b@example.org"], message())
        relayed = await eventually(lambda: _count_in(gw.spool, RecipientState.RELAYED, 2))
    assert [r.attempts for r in relayed] == [1, 1]
    assert sorted(upstream.recipients) == ["a@example.org", "b@example.org"]
    assert upstream.attempts == 2


async def test_no_reply_to_the_end_of_data_defers_and_the_retry_may_send_it_twice(
    settings_for, upstream
):
    # The provider takes the message and answers after the command timeout: the gateway
    # cannot know whether it was accepted, so it defers, and the retry duplicates it. This
    # is the one fault that duplicates (docs/architecture.md, "Durability and duplicates").
    upstream.ack_delay = 2.0
    settings = settings_for(
        upstream.port,
        upstream={"command_timeout": "5s", "data_timeout": "300ms"},
        relay={"retry_base": "100ms", "retry_jitter": 0},
    )
    clock = ManualClock()
    async with run_gateway(settings, clock=clock) as gw:
        await gw.send("news@shop.test", ["a@example.org"], message())
        deferred = await eventually(lambda: _one_in(gw.spool, RecipientState.DEFERRED))
        assert deferred.last_reply.startswith(
            "upstream timed out waiting for the reply to DATA (upstream.data_timeout 0.3s)"
        )
        assert "may have accepted the message" in deferred.last_reply
        assert upstream.recipients == ["a@example.org"]  # the provider has it already
        upstream.ack_delay = 0.0
        advance(gw, clock, 0.1)
        relayed = await eventually(lambda: _one_in(gw.spool, RecipientState.RELAYED))
        await gw.send("news@shop.test", ["b@example.org"], message())
        await eventually(lambda: _count_in(gw.spool, RecipientState.RELAYED, 2))
    assert relayed.attempts == 2
    assert upstream.recipients == ["a@example.org", "a@example.org", "b@example.org"]


async def test_a_provider_slower_to_commit_than_a_command_timeout_delivers_once(
    settings_for, upstream
):
    # The end of DATA has its own, longer timeout (RFC 5321: 10 minutes): a provider that
    # takes longer to commit than any other command gets no duplicate for it.
    upstream.ack_delay = 0.6
    settings = settings_for(upstream.port, upstream={"command_timeout": "300ms"})
    async with run_gateway(settings) as gw:
        await gw.send("news@shop.test", ["a@example.org"], message())
        relayed = await eventually(lambda: _one_in(gw.spool, RecipientState.RELAYED))
    assert relayed.attempts == 1
    assert upstream.recipients == ["a@example.org"]


# --- dropped mid-DATA ---------------------------------------------------------------------


async def test_a_connection_dropped_mid_data_is_discarded_and_the_retry_delivers_once(
    upstream, relay
):
    content = BODY + (b"x" * 70 + b"\r\n") * 1000  # far more than arrives before the drop
    [first] = await relay.deliver("news@shop.test", ["a@example.org"], BODY, IDS)
    assert first.outcome is Outcome.DELIVERED
    upstream.drop_next_data(1, after=1000)  # on the pooled connection
    [dropped] = await relay.deliver("news@shop.test", ["b@example.org"], content, IDS)
    assert dropped.outcome is Outcome.TRANSIENT
    assert dropped.reply.startswith("upstream connection lost during DATA")
    assert upstream.dropped == 1
    assert upstream.recipients == ["a@example.org"]  # the partial message was not taken
    [retried] = await relay.deliver("news@shop.test", ["b@example.org"], content, IDS)
    assert retried.outcome is Outcome.DELIVERED
    assert upstream.connections == 2  # the dropped one was not reused
    assert upstream.recipients == ["a@example.org", "b@example.org"]
    assert upstream.transactions[1].content == tagged(content, IDS)


async def test_the_gateway_defers_a_message_dropped_mid_data_and_relays_it_once(
    settings_for, upstream
):
    upstream.drop_next_data(1, after=1000)
    body = ("x" * 70 + "\r\n") * 1000
    settings = settings_for(upstream.port, relay={"retry_base": "100ms", "retry_jitter": 0})
    clock = ManualClock()
    async with run_gateway(settings, clock=clock) as gw:
        await gw.send("news@shop.test", ["a@example.org"], message(body=body))
        deferred = await eventually(lambda: _one_in(gw.spool, RecipientState.DEFERRED))
        assert deferred.last_reply.startswith("upstream connection lost during DATA")
        campaign = await gw.spool.campaign(deferred.campaign_id)
        assert (campaign.counters.relayed, campaign.counters.deferred) == (0, 1)
        advance(gw, clock, 0.1)
        relayed = await eventually(lambda: _one_in(gw.spool, RecipientState.RELAYED))
        await gw.send("news@shop.test", ["b@example.org"], message())
        await eventually(lambda: _count_in(gw.spool, RecipientState.RELAYED, 2))
        campaign = await gw.spool.campaign(relayed.campaign_id)
    assert relayed.attempts == 2
    assert upstream.recipients == ["a@example.org", "b@example.org"]
    assert upstream.transactions[0].content.endswith(body.encode() + b"\r\n")
    assert campaign.counters.relayed == 2


# --- failing TLS --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


def trusted_context(ca: trustme.CA) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1", "localhost").configure_cert(context)
    return context


def self_signed_context(folder: Path) -> ssl.SSLContext:
    """A server context with a certificate from `sendbrake tls self-signed`."""
    done = CliRunner().invoke(tls_self_signed, [str(folder), "--host", "127.0.0.1"])
    assert done.exit_code == 0, done.output
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(folder / "cert.pem", folder / "key.pem")
    return context


# (gateway's upstream.tls, what the provider does wrong, what the reply must say)
TLS_FAULTS = [
    ("starttls", "no_starttls", "upstream does not offer STARTTLS"),
    ("starttls", "self_signed", "handshake failed: [SSL: CERTIFICATE_VERIFY_FAILED]"),
    ("implicit", "plain", "handshake failed: [SSL: "),
]


@pytest.mark.parametrize(("mode", "fault", "says"), TLS_FAULTS)
async def test_a_failing_tls_upstream_defers_sends_nothing_in_clear_and_delivers_once_fixed(  # noqa: PLR0917
    settings_for, upstream, ca, tmp_path, mode, fault, says
):
    ca_file = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    broken = None if fault in {"no_starttls", "plain"} else self_signed_context(tmp_path / "tls")
    await restart(upstream, tls=broken, implicit_tls=False)
    log = io.StringIO()
    configure("json", "warning", stream=log)
    settings = settings_for(
        upstream.port,
        upstream={"host": "127.0.0.1", "tls": mode, "ca_file": str(ca_file)},
        relay={"retry_base": "100ms", "retry_jitter": 0},
    )
    clock = ManualClock()
    async with run_gateway(settings, clock=clock) as gw:
        await gw.send("news@shop.test", ["a@example.org"], message())
        deferred = await eventually(lambda: _one_in(gw.spool, RecipientState.DEFERRED))
        assert deferred.last_reply.startswith(f"upstream TLS failed ({mode}): ")
        assert says in deferred.last_reply
        [event] = events(log, "upstream_tls_failed")
        assert event["level"] == "error"
        assert event["tls"] == mode
        # Nothing of the mail went out in clear: at most the greeting's EHLO and STARTTLS.
        if mode == "implicit":
            assert upstream.cleartext[:1] == b"\x16"  # a TLS ClientHello, not SMTP
            assert b"MAIL FROM" not in upstream.cleartext
        else:
            assert set(upstream.cleartext_commands) <= {"EHLO", "STARTTLS", "QUIT"}
        assert upstream.transactions == []
        # The provider is fixed (a blip, or the operator's change): the retry goes out.
        await restart(upstream, tls=trusted_context(ca), implicit_tls=mode == "implicit")
        advance(gw, clock, 0.1)
        relayed = await eventually(lambda: _one_in(gw.spool, RecipientState.RELAYED))
    assert relayed.attempts == 2
    [txn] = upstream.transactions
    assert txn.rcpt_tos == ["a@example.org"]
    assert txn.tls


# --- recipients an older spool holds ------------------------------------------------------

# Ingress refuses all of these now (gateway/mail/addresses.py); a spool written before may
# hold them. The client library would refuse some and quietly rewrite others.
UNSENDABLE = {
    "a\x00b@x.test": "contains a control character",
    "tab\t@x.test": "contains a control character",  # aiosmtplib would send tab@x.test
    "": "has no @domain",  # aiosmtplib would send RCPT TO:<>
    "a<b@x.test": "has a local part that is not valid (RFC 5321 4.1.2)",  # aiosmtplib would send b@x.test
    "x\udcff@x.test": "is not valid UTF-8",
}


@pytest.mark.parametrize("bad", list(UNSENDABLE), ids=repr)
async def test_a_recipient_that_cannot_be_sent_fails_alone_and_the_rest_go_in_one_transaction(
    upstream, relay, bad
):
    rcpts = ["a@example.org", bad, "b@example.org"]
    results = await relay.deliver("news@shop.test", rcpts, BODY, IDS)
    assert [r.outcome for r in results] == [
        Outcome.DELIVERED,
        Outcome.PERMANENT,
        Outcome.DELIVERED,
    ]
    assert results[1].address == bad
    assert results[1].reply == f"not sent: the recipient address {UNSENDABLE[bad]}"
    assert [t.rcpt_tos for t in upstream.transactions] == [["a@example.org", "b@example.org"]]
    # The connection is still good for the next message.
    [after] = await relay.deliver("news@shop.test", ["c@example.org"], BODY, IDS)
    assert after.outcome is Outcome.DELIVERED
    assert upstream.connections == 1


async def test_a_message_whose_recipients_all_cannot_be_sent_fails_without_a_transaction(
    upstream, relay
):
    results = await relay.deliver("news@shop.test", ["tab\t@x.test", ""], BODY, IDS)
    assert [r.outcome for r in results] == [Outcome.PERMANENT, Outcome.PERMANENT]
    assert upstream.connections == 0
    [after] = await relay.deliver("news@shop.test", ["c@example.org"], BODY, IDS)
    assert after.outcome is Outcome.DELIVERED


async def test_a_sender_that_cannot_be_sent_fails_every_recipient(upstream, relay):
    results = await relay.deliver("news\r\nRSET@shop.test", ["a@example.org"], BODY, IDS)
    assert [(r.outcome, r.reply) for r in results] == [
        (Outcome.PERMANENT, "not sent: the sender address contains a control character")
    ]
    assert upstream.connections == 0


@pytest.mark.parametrize("null", ["", "<>"])
async def test_the_null_sender_goes_out_as_mail_from_empty_path_as_either_spool_held_it(
    upstream, relay, null
):
    [result] = await relay.deliver(null, ["a@example.org"], BODY, IDS)
    assert result.outcome is Outcome.DELIVERED
    assert b"\r\nMAIL FROM:<>\r\n" in upstream.cleartext


async def test_without_smtputf8_upstream_only_the_non_ascii_recipients_fail(upstream, relay):
    await restart(upstream, smtputf8=False)
    rcpts = ["a@example.org", "jürgen@exämple.org", "b@example.org"]
    results = await relay.deliver("news@shop.test", rcpts, BODY, IDS)
    assert [(r.outcome, r.reply[:10]) for r in results] == [
        (Outcome.DELIVERED, "250 2.0.0 "),
        (Outcome.PERMANENT, "not sent: "),
        (Outcome.DELIVERED, "250 2.0.0 "),
    ]
    assert "upstream does not offer SMTPUTF8" in results[1].reply
    [txn] = upstream.transactions
    assert txn.rcpt_tos == ["a@example.org", "b@example.org"]
    assert "SMTPUTF8" not in txn.mail_options


async def test_without_smtputf8_upstream_a_non_ascii_sender_fails_every_recipient(upstream, relay):
    await restart(upstream, smtputf8=False)
    results = await relay.deliver(
        "jürgen@exämple.org", ["a@example.org", "b@example.org"], BODY, IDS
    )
    assert {r.outcome for r in results} == {Outcome.PERMANENT}
    assert all("upstream does not offer SMTPUTF8" in r.reply for r in results)
    assert upstream.transactions == []
    [after] = await relay.deliver("news@shop.test", ["c@example.org"], BODY, IDS)
    assert after.outcome is Outcome.DELIVERED
    assert upstream.connections == 1  # nothing was begun on it: it stayed usable


@pytest.mark.own_spool  # PostgreSQL text cannot hold the NUL this spool row carries
async def test_an_old_spool_row_with_bad_recipients_relays_the_good_ones_and_fails_the_rest(
    settings_for, upstream, tmp_path
):
    await restart(upstream, smtputf8=False)
    rcpts = ["a@example.org", "a\x00b@x.test", "tab\t@x.test", "jürgen@exämple.org", "b@x.test"]
    # Written straight into the spool, as a version without the address check did.
    async with opened_spool(tmp_path) as spool:
        await accept(spool, submission(rcpts, at=time.time()), pass_all)
    async with run_gateway(settings_for(upstream.port)) as gw:
        await eventually(lambda: _count_in(gw.spool, RecipientState.RELAYED, 2))
        failed = await eventually(lambda: _count_in(gw.spool, RecipientState.FAILED, 3))
        campaign = await gw.spool.campaign(failed[0].campaign_id)
        await gw.send("news@shop.test", ["c@example.org"], message())
        await eventually(lambda: _count_in(gw.spool, RecipientState.RELAYED, 3))
    assert {r.address: r.last_reply for r in failed} == {
        "a\x00b@x.test": "not sent: the recipient address contains a control character",
        "tab\t@x.test": "not sent: the recipient address contains a control character",
        "jürgen@exämple.org": (
            "not sent: upstream does not offer SMTPUTF8, which the recipient address needs"
        ),
    }
    assert all(r.attempts == 1 for r in failed)
    assert [t.rcpt_tos for t in upstream.transactions] == [
        ["a@example.org", "b@x.test"],
        ["c@example.org"],
    ]
    assert (campaign.counters.relayed, campaign.counters.failed, campaign.counters.queued) == (
        2,
        3,
        0,
    )
