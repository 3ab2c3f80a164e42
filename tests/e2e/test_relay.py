"""smtplib -> sendbrake -> a capturing aiosmtpd upstream, over real sockets."""

from __future__ import annotations

import asyncio
import smtplib
import sqlite3

import pytest

from gateway.mail.headers import HeaderBlock
from gateway.states import RecipientState
from tests.harness import run_gateway
from tests.helpers import eventually
from tests.mail import message


def untagged(content: bytes) -> bytes:
    """`content` without the ids the relay adds last in the header block (and checks so)."""
    block = HeaderBlock.parse(content)
    names = [name for name, _ in block.fields[-2:]]
    assert names == ["x-sendbrake-message", "x-sendbrake-campaign"]
    return HeaderBlock(block.fields[:-2], block.rest).to_bytes()


async def test_single_recipient_message_is_relayed_with_added_headers(settings_for, upstream):
    async with run_gateway(settings_for(upstream.port)) as gw:
        refused = await gw.send(
            "news@shop.test", ["a@example.org"], message(X_Campaign_ID="spring")
        )
        assert refused == {}
        await eventually(lambda: upstream.transactions, message="upstream got nothing")
        _, page = await gw.api().get("/api/v1/campaigns")
        _, campaign = await gw.api().get(f"/api/v1/campaigns/{page['items'][0]['id']}")
    [txn] = upstream.transactions
    assert txn.mail_from == "news@shop.test"
    assert txn.rcpt_tos == ["a@example.org"]
    assert b"\r\nSubject: Spring sale\r\n" in txn.content
    assert txn.content.startswith(b"Received: from ")
    assert b"\r\nDate: " in txn.content
    assert b"\r\nMessage-ID: <" in txn.content
    assert txn.content.endswith(b"\r\n\r\nHello!\r\n")
    # The message and campaign it is of, for a DSN that quotes the headers.
    headers = HeaderBlock.parse(txn.content)
    assert headers.get("X-Sendbrake-Campaign") == campaign["id"]
    assert headers.get("X-Sendbrake-Message") == campaign["sample"]["id"]


async def test_existing_date_and_message_id_are_kept_untouched(settings_for, upstream):
    original = message(Date="Tue, 01 Sep 2026 10:00:00 +0000", Message_ID="<abc@shop.test>")
    async with run_gateway(settings_for(upstream.port)) as gw:
        await gw.send("news@shop.test", ["a@example.org"], original)
        await eventually(lambda: upstream.transactions)
    content = upstream.transactions[0].content
    assert content.count(b"Date: ") == 1
    assert b"Message-ID: <abc@shop.test>\r\n" in content
    # Only the Received line and, last in the header block, the ids were added.
    assert untagged(content).split(b"\r\n", 1)[1] == original


async def test_multi_recipient_message_goes_upstream_in_one_transaction(settings_for, upstream):
    rcpts = [f"user{i}@example.org" for i in range(25)]
    async with run_gateway(settings_for(upstream.port)) as gw:
        await gw.send("news@shop.test", rcpts, message())
        await eventually(lambda: upstream.transactions)
        records = await eventually(
            lambda: _all_in(gw.spool, RecipientState.RELAYED, 25), message="not all relayed"
        )
    assert len(upstream.transactions) == 1
    assert upstream.transactions[0].rcpt_tos == rcpts
    assert {r.address for r in records} == set(rcpts)


async def _all_in(spool, state, count):
    rows = await spool.recipients(state=state)
    return rows if len(rows) == count else None


async def test_eight_bit_utf8_content_and_address_arrive_byte_exact(settings_for, upstream):
    body = "Grüße aus Köln — 東京でお会いしましょう"
    original = message(subject="Grüße", body=body)
    async with run_gateway(settings_for(upstream.port)) as gw:

        def send() -> None:
            with gw.smtp() as client:
                client.ehlo()
                assert client.has_extn("smtputf8")
                assert client.has_extn("8bitmime")
                client.sendmail(
                    "news@shop.test",
                    ["jürgen@exämple.org"],
                    original,
                    mail_options=["SMTPUTF8", "BODY=8BITMIME"],
                )

        await asyncio.to_thread(send)
        await eventually(lambda: upstream.transactions)
    txn = upstream.transactions[0]
    assert txn.rcpt_tos == ["jürgen@exämple.org"]
    assert untagged(txn.content).endswith(original)
    assert "SMTPUTF8" in txn.mail_options
    assert "BODY=8BITMIME" in txn.mail_options


async def test_message_of_exactly_the_size_limit_is_accepted_and_one_byte_more_gets_552(
    settings_for, upstream
):
    limit = 4096
    head = b"Subject: size\r\n\r\n"
    # aiosmtpd counts the DATA bytes including each line's CRLF.
    line = b"x" * 78 + b"\r\n"
    body = line * ((limit - len(head)) // len(line))
    exact = head + body + b"y" * (limit - len(head) - len(body) - 2) + b"\r\n"
    assert len(exact) == limit
    over = exact[:-2] + b"z\r\n"
    async with run_gateway(settings_for(upstream.port, smtp={"max_message_size": limit})) as gw:

        def send() -> tuple[tuple[int, bytes], tuple[int, bytes]]:
            with gw.smtp() as client:
                client.ehlo()
                assert client.esmtp_features["size"] == str(limit)
                client.mail("news@shop.test")
                client.rcpt("a@example.org")
                ok = client.data(exact)
                client.mail("news@shop.test")
                client.rcpt("b@example.org")
                too_big = client.data(over)
                return ok, too_big

        ok, too_big = await asyncio.to_thread(send)
        await eventually(lambda: upstream.transactions)
    assert ok[0] == 250
    assert ok[1].startswith(b"2.0.0 queued as ")
    assert too_big[0] == 552
    assert too_big[1].startswith(b"5.3.4")
    assert [t.rcpt_tos for t in upstream.transactions] == [["a@example.org"]]


async def test_declared_size_above_limit_in_mail_from_is_refused_up_front(settings_for):
    async with run_gateway(settings_for(smtp={"max_message_size": 1000})) as gw:

        def send() -> tuple[int, bytes]:
            with gw.smtp() as client:
                client.ehlo()
                return client.mail("news@shop.test", options=["SIZE=1001"])

        code, text = await asyncio.to_thread(send)
    assert code == 552
    assert text.startswith(b"5.3.4")


async def test_recipients_past_the_limit_get_452_and_the_rest_are_relayed(settings_for, upstream):
    async with run_gateway(settings_for(upstream.port, smtp={"max_recipients": 3})) as gw:

        def send() -> list[int]:
            with gw.smtp() as client:
                client.ehlo()
                client.mail("news@shop.test")
                codes = [client.rcpt(f"u{i}@example.org")[0] for i in range(5)]
                assert client.data(message())[0] == 250
                return codes

        codes = await asyncio.to_thread(send)
        await eventually(lambda: upstream.transactions)
    assert codes == [250, 250, 250, 452, 452]
    assert upstream.transactions[0].rcpt_tos == [
        "u0@example.org",
        "u1@example.org",
        "u2@example.org",
    ]


async def test_client_outside_allowed_networks_cannot_relay(settings_for):
    async with run_gateway(settings_for(smtp={"allowed_networks": ["192.0.2.0/24"]})) as gw:

        def send() -> tuple[int, bytes]:
            with gw.smtp() as client:
                client.ehlo()
                return client.mail("news@shop.test")

        code, text = await asyncio.to_thread(send)
    assert code == 554
    assert text.startswith(b"5.7.1")


@pytest.mark.own_spool  # fills SQLite's file to its page limit
async def test_a_failed_spool_commit_answers_451_keeps_nothing_and_the_gateway_recovers(
    settings_for, upstream
):
    async with run_gateway(settings_for(upstream.port)) as gw:
        await gw.send("news@shop.test", ["first@example.org"], message())
        await eventually(lambda: upstream.recipients == ["first@example.org"])
        # Make the real database full: every further commit fails like a full disk would.
        await gw.spool._writer.submit(
            lambda conn: conn.execute(
                "PRAGMA max_page_count = {}".format(conn.execute("PRAGMA page_count").fetchone()[0])
            )
        )

        def send() -> None:
            with gw.smtp() as client:
                client.sendmail(
                    "news@shop.test",
                    ["second@example.org"],
                    message(body=("x" * 70 + "\r\n") * 3000),
                )

        with pytest.raises(smtplib.SMTPDataError) as refused:
            await asyncio.to_thread(send)
        assert refused.value.smtp_code == 451
        assert refused.value.smtp_error.startswith(b"4.3.0")
        rows = await gw.spool.recipients()
        assert [r.address for r in rows] == ["first@example.org"]
        # Space again: the client's retry is accepted and relayed; nothing died meanwhile.
        await gw.spool._writer.submit(
            lambda conn: conn.execute("PRAGMA max_page_count = 1073741823")
        )
        await asyncio.to_thread(send)
        await eventually(lambda: upstream.recipients == ["first@example.org", "second@example.org"])


async def test_capture_upstream_writes_eml_files_with_the_envelope(settings_for, tmp_path):
    async with run_gateway(settings_for()) as gw:
        await gw.send("news@shop.test", ["a@example.org", "b@example.org"], message())
        files = await eventually(lambda: list((tmp_path / "outbox").glob("*.eml")))
    text = files[0].read_bytes()
    assert text.startswith(
        b"Return-Path: <news@shop.test>\r\nX-Envelope-To: a@example.org, b@example.org\r\n"
    )
    assert text.endswith(b"Hello!\r\n")


async def test_a_retry_after_a_lost_250_is_answered_with_the_stored_message_not_sent_twice(
    settings_for, upstream
):
    # A platform that lost the 250 (the gateway died after its commit) sends the same
    # transaction again: same envelope, same bytes, its own Message-ID.
    content = message(X_Campaign_ID="spring", Message_ID="<job-7.1@platform.test>")
    rcpts = ["a@example.org", "b@example.org"]
    async with run_gateway(settings_for(upstream.port)) as gw:

        def send_twice() -> list[tuple[int, bytes]]:
            with gw.smtp() as client:
                client.ehlo()
                replies = []
                for _ in range(2):
                    client.mail("news@shop.test")
                    for rcpt in rcpts:
                        client.rcpt(rcpt)
                    replies.append(client.data(content))
                return replies

        first, retry = await asyncio.to_thread(send_twice)
        await eventually(lambda: sorted(upstream.recipients) == rcpts)
        [campaign] = await gw.spool.campaigns()
        received = gw.gateway.metrics.registry.get_sample_value(
            "sendbrake_messages_received_total", {"ingress": "smtp"}
        )
    queued_as = first[1].decode().removeprefix("2.0.0 queued as ")
    assert retry == (250, f"2.0.0 queued as {queued_as} (received before)".encode())
    assert (campaign.state, campaign.counters.received, campaign.duplicates) == ("open", 2, 0)
    assert received == 1
    assert len(upstream.transactions) == 1


@pytest.mark.own_spool  # holds SQLite's write lock from another connection
async def test_a_spool_locked_past_its_busy_timeout_answers_451_and_the_retry_is_kept(
    settings_for, upstream, tmp_path
):
    settings = settings_for(upstream.port, spool={"busy_timeout": "200ms"})
    async with run_gateway(settings) as gw:
        await gw.send("news@shop.test", ["first@example.org"], message())
        await eventually(lambda: upstream.recipients == ["first@example.org"])
        # Another process (a CLI tool, a backup) holds the database's write lock.
        other = sqlite3.connect(tmp_path / "spool.db", isolation_level=None)
        other.execute("BEGIN IMMEDIATE")
        try:
            with pytest.raises(smtplib.SMTPDataError) as refused:
                await gw.send("news@shop.test", ["second@example.org"], message())
        finally:
            other.execute("ROLLBACK")
            other.close()
        assert (refused.value.smtp_code, refused.value.smtp_error[:5]) == (451, b"4.3.0")
        assert [r.address for r in await gw.spool.recipients()] == ["first@example.org"]
        await gw.send("news@shop.test", ["second@example.org"], message())  # the retry
        await eventually(lambda: upstream.recipients == ["first@example.org", "second@example.org"])
