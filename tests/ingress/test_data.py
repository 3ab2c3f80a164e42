"""The ingress's DATA reader and address parser: faster, yet exactly what stock aiosmtpd
receives and replies.

`receive_data` is driven with StreamReaders of tiny and normal limits (a tiny limit forces
the terminator across chunk boundaries); then the real server is compared with a stock
aiosmtpd server over real sockets, payload by payload, content and reply.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
from aiosmtpd.smtp import SMTP, Envelope, Session
from prometheus_client import CollectorRegistry

from gateway.ingress.data import check_data, receive_data
from gateway.ingress.smtp import start_smtp
from gateway.metrics import Metrics
from gateway.model import Admission, Inbound
from gateway.settings import SmtpSettings

PAYLOADS = {
    "empty": b"",
    "one line": b"Subject: hi\r\n\r\nhello\r\n",
    "no final CRLF in body": b"Subject: hi\r\n\r\nhello",
    "lines ending in a dot": b"Subject: x.\r\n\r\nThanks.\r\nBye.\r\n",
    "stuffed first line": b"..leading\r\nbody\r\n",
    "stuffed lines": b"a\r\n..\r\n...b\r\n.c\r\nd\r\n",
    "dot then CR alone": b"a.\rb\r\n",
    "long stretch": b"Subject: big\r\n\r\n" + (b"x" * 78 + b"\r\n") * 2000,
    "bare LF dot": b"a\n.\nb\r\n",
}
# What stock aiosmtpd takes and the gateway refuses (tests/e2e/test_hostile_input.py).
BARE_LINE_ENDS = {"dot then CR alone", "bare LF dot"}


def feed(payload: bytes, *, limit: int, after: bytes = b"") -> asyncio.StreamReader:
    reader = asyncio.StreamReader(limit=limit)
    reader.feed_data(payload + b"\r\n.\r\n" + after if payload else b".\r\n" + after)
    return reader


@pytest.mark.parametrize("limit", [4, 1001])
@pytest.mark.parametrize("name", list(PAYLOADS))
async def test_receive_data_stops_at_the_terminator_and_leaves_what_follows(
    name: str, limit: int
) -> None:
    payload = PAYLOADS[name]
    reader = feed(payload, limit=limit, after=b"QUIT\r\n")
    received = await receive_data(reader, None)
    expected = payload + b"\r\n" if payload else b""
    assert received == (expected, len(expected))
    assert await reader.readuntil(b"\r\n") == b"QUIT\r\n"


async def test_receive_data_past_the_size_limit_keeps_nothing_but_reads_to_the_end() -> None:
    reader = feed(b"y" * 5000, limit=1001, after=b"RSET\r\n")
    assert await receive_data(reader, 4000) == (b"", 5002)
    assert await reader.readuntil(b"\r\n") == b"RSET\r\n"


async def test_receive_data_returns_none_when_the_client_leaves_mid_message() -> None:
    reader = asyncio.StreamReader(limit=16)
    reader.feed_data(b"Subject: gone\r\n" * 10 + b"half a li")
    reader.feed_eof()
    assert await receive_data(reader, None) is None


# --- the server against stock aiosmtpd ----------------------------------------------


class Recorder:
    """Stock aiosmtpd's handler: keep what DATA delivered."""

    def __init__(self) -> None:
        self.contents: list[bytes] = []
        self.senders: list[str] = []

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        self.contents.append(envelope.original_content or b"")
        self.senders.append(envelope.mail_from or "")
        return "250 OK"


@asynccontextmanager
async def stock_server(size_limit: int) -> AsyncIterator[tuple[int, Recorder]]:
    recorder = Recorder()
    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        lambda: SMTP(
            recorder,
            data_size_limit=size_limit,
            decode_data=False,
            enable_SMTPUTF8=True,  # as the gateway's
            loop=loop,
        ),
        "127.0.0.1",
        0,
    )
    try:
        yield server.sockets[0].getsockname()[1], recorder
    finally:
        server.close()


@asynccontextmanager
async def our_server(size_limit: int) -> AsyncIterator[tuple[int, Recorder]]:
    recorder = Recorder()

    async def admit(inbound: Inbound) -> Admission:
        recorder.contents.append(inbound.content)
        recorder.senders.append(inbound.mail_from)
        return Admission(message_id="m1", campaign_id="c1", held=False)

    settings = SmtpSettings(listen="127.0.0.1:0", hostname="gw.test", max_message_size=size_limit)
    server = await start_smtp(settings, admit, Metrics.create(CollectorRegistry()))
    try:
        yield server.sockets[0].getsockname()[1], recorder
    finally:
        server.close()


async def converse(port: int, payloads: list[bytes]) -> list[str]:
    """Send each payload as one message on one connection; the reply code to each DATA."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)

    async def reply() -> str:
        while (line := await reader.readline())[3:4] == b"-":
            pass
        return line.decode()

    codes = [await reply()]
    writer.write(b"EHLO client.test\r\n")
    await reply()
    for payload in payloads:
        stuffed = payload.replace(b"\r\n.", b"\r\n..")
        stuffed = b"." + stuffed if stuffed.startswith(b".") else stuffed
        writer.write(b"MAIL FROM:<a@sender.test>\r\nRCPT TO:<b@example.test>\r\nDATA\r\n")
        assert [(await reply())[:3] for _ in range(3)] == ["250", "250", "354"]
        ending = b"\r\n.\r\n" if stuffed and not stuffed.endswith(b"\r\n") else b".\r\n"
        writer.write(stuffed + ending if stuffed else b".\r\n")
        codes.append((await reply())[:3])
    writer.write(b"QUIT\r\n")
    codes.append((await reply())[:3])
    writer.close()
    await writer.wait_closed()
    return codes[1:]


async def test_server_receives_crlf_data_as_stock_aiosmtpd_does_and_replies_alike() -> None:
    payloads = [
        *(payload for name, payload in PAYLOADS.items() if name not in BARE_LINE_ENDS),
        b"Subject: limit\r\n\r\n" + (b"z" * 98 + b"\r\n") * 2100,  # over the limit
        b"Subject: wide\r\n\r\n" + b"w" * 1000 + b"\r\n",  # a line over 1,000 bytes
        b"Subject: after the errors\r\n\r\nstill fine\r\n",
    ]
    async with stock_server(200_000) as (port, stock):
        stock_codes = await converse(port, payloads)
    async with our_server(200_000) as (port, ours):
        our_codes = await converse(port, payloads)
    assert our_codes == stock_codes
    assert stock_codes[-4:] == ["552", "500", "250", "221"]
    assert len(ours.contents) == len(payloads) - 2
    assert ours.contents == stock.contents


# MAIL FROM argument -> the gateway's exact reply. Where stock aiosmtpd differs, it let
# through a mailbox no upstream could be sent (RFC 5321 4.1.2, 4.5.3.1).
SENDERS = {
    "<a@sender.test>": "250 2.1.0 Sender OK",
    "a@sender.test": "250 2.1.0 Sender OK",
    "<>": "250 2.1.0 Sender OK",
    '<"quoted local"@sender.test>': "250 2.1.0 Sender OK",
    "<a@sender.test> SIZE=100": "250 2.1.0 Sender OK",
    "<a@sender.test> BOGUS": "555 MAIL FROM parameters not recognized or not implemented",
    "<unclosed@sender.test": "553 5.1.3 Error: malformed address",
    "<" + "x" * 65 + "@sender.test>": "553 5.1.7 Sender address has a local part longer than 64"
    " octets",
    "<@relay.test:a@sender.test>": "250 2.1.0 Sender OK",
    "<@>": "553 5.1.7 Sender address has an empty local part",
    "<First.Last+tag_1@Mail.Sender-1.TEST>": "250 2.1.0 Sender OK",
    "<a..b@sender.test>": "553 5.1.7 Sender address has a local part that is not valid"
    " (RFC 5321 4.1.2)",
    "<a@sender..test>": "553 5.1.7 Sender address has a domain that is not a valid host name"
    " (RFC 5321 4.1.2)",
    "<.a@sender.test>": "553 5.1.7 Sender address has a local part that is not valid"
    " (RFC 5321 4.1.2)",
    "<a@sender.test>trailing": "555 MAIL FROM parameters not recognized or not implemented",
    " <a@sender.test>": "250 2.1.0 Sender OK",
    "<a@sender.test.>": "553 5.1.7 Sender address has a domain that is not a valid host name"
    " (RFC 5321 4.1.2)",
    "<josé@sender.test> SMTPUTF8": "250 2.1.0 Sender OK",
    "<josé@sender.test>": "553 5.6.7 Sender address is UTF-8, which needs the SMTPUTF8"
    " parameter on MAIL (RFC 6531)",
    "<a@sender.test>   SIZE=100": "250 2.1.0 Sender OK",
    "<a@sender.test>\tSIZE=100": "250 2.1.0 Sender OK",
    "<a@sender.test> (a comment) SIZE=100": "250 2.1.0 Sender OK",
    "<a@sender.test>(a comment)": "250 2.1.0 Sender OK",
}


async def send_from(port: int, senders: list[str]) -> list[str]:
    """MAIL FROM each sender (then RCPT, DATA, RSET); the reply to each MAIL."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)

    async def reply() -> str:
        while (line := await reader.readline())[3:4] == b"-":
            pass
        return line.decode().rstrip("\r\n")

    await reply()
    writer.write(b"EHLO client.test\r\n")
    await reply()
    replies = []
    for sender in senders:
        writer.write(f"MAIL FROM:{sender}\r\n".encode())
        replies.append(await reply())
        if replies[-1].startswith("250"):
            writer.write(b"RCPT TO:<b@example.test>\r\nDATA\r\n")
            assert [(await reply())[:3], (await reply())[:3]] == ["250", "354"]
            writer.write(b"Subject: s\r\n\r\nx\r\n.\r\n")
            assert (await reply())[:3] == "250"
        writer.write(b"RSET\r\n")
        await reply()
    writer.close()
    await writer.wait_closed()
    return replies


async def test_mail_from_takes_rfc_5321_mailboxes_and_says_what_is_wrong_with_others() -> None:
    async with our_server(10_000) as (port, ours):
        replies = await send_from(port, list(SENDERS))
    assert dict(zip(SENDERS, replies, strict=True)) == SENDERS
    accepted = [sender for sender, reply in SENDERS.items() if reply.startswith("250")]
    assert ours.senders == [
        "a@sender.test",
        "a@sender.test",
        "",  # the null sender, as the relay sends it: MAIL FROM:<>
        '"quoted local"@sender.test',
        "a@sender.test",
        "a@sender.test",  # the source route is dropped (RFC 5321 4.1.1.3)
        "First.Last+tag_1@Mail.Sender-1.TEST",
        "a@sender.test",
        "josé@sender.test",
        *["a@sender.test"] * 4,
    ]
    assert len(accepted) == len(ours.senders)


# --- what DATA may not hold -----------------------------------------------------------

CHECKS = {
    b"a\r\nb\r\n": None,
    b"a\nb\r\n": "550 5.5.2 Error: bare <LF> received",
    b"a\r\r\nb\r\n": "550 5.5.2 Error: bare <CR> received",
    b"a\r\n\nb\r\n": "550 5.5.2 Error: bare <LF> received",
    b"a\rb\r\n": "550 5.5.2 Error: bare <CR> received",
    b"a\x00b\r\n": "550 5.6.0 Error: NUL byte received",
    b"x" * 1001 + b"\r\n": "500 5.5.2 Line too long (see RFC 5321 4.5.3.1.6)",
    b"H: " + b"v\r\n " * 40 + b"\r\n\r\nbody\r\n": "552 5.3.4 Message header exceeds 100 bytes",
    b"\r\n" + b"body without headers\r\n" * 10: None,
    b"H: v\r\n\r\n" + b"a long body\r\n" * 10: None,
}


@pytest.mark.parametrize("data", list(CHECKS))
def test_check_data_refuses_nul_bare_line_ends_long_lines_and_big_headers(data: bytes) -> None:
    reply, checked = check_data(
        data,
        len(data),
        size_limit=10_000,
        line_limit=1001,
        header_limit=100,
        bare_newlines="reject",
    )
    assert reply == CHECKS[data]
    assert checked == data


def test_accepted_bare_line_ends_become_crlf_and_nul_is_still_refused() -> None:
    data = b"a\nb\rc\r\n.\n..\r\n"
    reply, checked = check_data(
        data, len(data), size_limit=None, line_limit=1001, header_limit=100, bare_newlines="accept"
    )
    assert (reply, checked) == (None, b"a\r\nb\r\nc\r\n.\r\n..\r\n")
    nul = check_data(
        b"a\x00\n", 3, size_limit=None, line_limit=1001, header_limit=100, bare_newlines="accept"
    )
    assert nul[0] == "550 5.6.0 Error: NUL byte received"
