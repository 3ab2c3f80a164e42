"""The SendGrid upstream: a spooled message as v3 mail send bodies (pure), and the calls
against the fake provider (tests/fakes/sendgrid_provider.py) with each answer classified."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from email.message import EmailMessage
from email.policy import SMTP
from email.utils import format_datetime
from pathlib import Path
from typing import Any

import pytest

from gateway.model import Delivery, DeliveryIds, Outcome
from gateway.relay.sendgrid import NotConvertible, SendGridUpstream, request_bodies, retry_after
from gateway.relay.upstream_process import ProcessUpstream
from gateway.relay.worker import plan_settlements
from gateway.settings import RelaySettings
from gateway.states import RecipientState
from tests.fakes.sendgrid_provider import KEY, FakeSendGrid
from tests.harness import make_settings

IDS = DeliveryIds("01MESSAGE", "01CAMPAIGN")
PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(64))


def sendgrid_settings(tmp_path: Path, provider: FakeSendGrid, **options: Any):
    upstream = {
        "kind": "sendgrid",
        "base_url": provider.url,
        "api_key": KEY,
        "request_timeout": "5s",
        "connect_timeout": "2s",
        "process": "gateway",
        **options,
    }
    return make_settings(tmp_path, upstream=upstream)


@pytest.fixture
async def up(tmp_path, sendgrid) -> AsyncIterator[SendGridUpstream]:
    upstream = SendGridUpstream(sendgrid_settings(tmp_path, sendgrid).upstream)
    await upstream.open()
    yield upstream
    await upstream.close()


def newsletter() -> bytes:
    msg = EmailMessage(policy=SMTP)
    msg["Received"] = "from [127.0.0.1] by gw.test (sendbrake) with ESMTP"
    msg["Date"] = "Wed, 02 Dec 2026 06:28:37 +0000"
    msg["Message-ID"] = "<spring.1@shop.test>"
    msg["From"] = "Shop <news@shop.test>"
    msg["To"] = "Ada Lovelace <ada@example.org>, grace@example.org"
    msg["Reply-To"] = "help@shop.test"
    msg["Subject"] = "Our spring collection"
    msg["X-Campaign-ID"] = "spring-2027"
    msg["List-Unsubscribe"] = "<https://shop.test/u/ada>"
    msg["X-Sendbrake-Message"] = "forged"
    msg.set_content("The spring collection is in the shop now.\n")
    msg.add_alternative("<p>The spring collection is in the shop now.</p>", subtype="html")
    return msg.as_bytes()


def test_a_text_and_html_message_becomes_one_call_with_both_bodies_and_its_headers():
    [(rcpts, body)] = request_bodies(newsletter(), ["ada@example.org", "grace@example.org"], IDS)
    assert rcpts == ["ada@example.org", "grace@example.org"]
    assert body["from"] == {"email": "news@shop.test", "name": "Shop"}
    assert body["reply_to"] == {"email": "help@shop.test"}
    assert body["subject"] == "Our spring collection"
    assert body["content"] == [
        {"type": "text/plain", "value": "The spring collection is in the shop now.\n"},
        {"type": "text/html", "value": "<p>The spring collection is in the shop now.</p>\n"},
    ]
    assert "attachments" not in body
    # SendGrid's reserved headers, the ones it writes itself, a forged attribution: gone.
    assert body["headers"] == {
        "Message-ID": "<spring.1@shop.test>",
        "X-Campaign-ID": "spring-2027",
        "List-Unsubscribe": "<https://shop.test/u/ada>",
        "X-Sendbrake-Message": "01MESSAGE",
        "X-Sendbrake-Campaign": "01CAMPAIGN",
    }
    args = {"sendbrake_campaign": "01CAMPAIGN", "sendbrake_message": "01MESSAGE"}
    assert body["personalizations"] == [
        {"to": [{"email": "ada@example.org", "name": "Ada Lovelace"}], "custom_args": args},
        {"to": [{"email": "grace@example.org"}], "custom_args": args},
    ]


def test_attachments_are_base64_with_filename_and_type_and_an_inline_image_keeps_its_cid():
    msg = EmailMessage(policy=SMTP)
    msg["From"] = "news@shop.test"
    msg["Subject"] = "Catalogue"
    msg.set_content("See the catalogue.")
    msg.add_alternative('<p><img src="cid:logo@shop.test"> See the catalogue.</p>', subtype="html")
    html = msg.get_body(("html",))
    assert html is not None
    html.add_related(PNG, "image", "png", cid="<logo@shop.test>", filename="logo.png")
    msg.add_attachment(b"%PDF-1.4 catalogue", "application", "pdf", filename="catalogue.pdf")
    msg.add_attachment(b"raw", "application", "octet-stream")  # no filename given
    [(_, body)] = request_bodies(msg.as_bytes(), ["ada@example.org"], IDS)
    assert [c["type"] for c in body["content"]] == ["text/plain", "text/html"]
    assert body["attachments"] == [
        {
            "content": base64.b64encode(PNG).decode(),
            "filename": "logo.png",
            "type": "image/png",
            "disposition": "inline",
            "content_id": "logo@shop.test",
        },
        {
            "content": base64.b64encode(b"%PDF-1.4 catalogue").decode(),
            "filename": "catalogue.pdf",
            "type": "application/pdf",
            "disposition": "attachment",
        },
        {
            "content": base64.b64encode(b"raw").decode(),
            "filename": "attachment-3.bin",
            "type": "application/octet-stream",
            "disposition": "attachment",
        },
    ]


def test_non_ascii_subject_sender_name_and_latin1_body_are_decoded():
    content = (
        b"From: =?utf-8?q?M=C3=BCller=2C_J=C3=BCrgen?= <j@shop.test>\r\n"
        b"To: =?iso-8859-1?q?Ren=E9e?= <renee@example.org>\r\n"
        b"Subject: =?utf-8?b?RnLDvGhsaW5nc2dyw7zDn2U=?= =?utf-8?q?_f=C3=BCr_Sie?=\r\n"
        b"X-Note: =?utf-8?q?gr=C3=BC=C3=9Fe?=\r\n"
        b"MIME-Version: 1.0\r\n"
        b"Content-Type: text/plain; charset=iso-8859-1\r\n"
        b"Content-Transfer-Encoding: quoted-printable\r\n"
        b"\r\n"
        b"Sch=F6ne Gr=FC=DFe\r\n"
    )
    [(_, body)] = request_bodies(content, ["renee@example.org"], IDS)
    assert body["subject"] == "Frühlingsgrüße für Sie"
    assert body["from"] == {"email": "j@shop.test", "name": "Müller, Jürgen"}
    assert body["personalizations"][0]["to"] == [{"email": "renee@example.org", "name": "Renée"}]
    assert body["content"] == [{"type": "text/plain", "value": "Schöne Grüße\n"}]
    assert body["headers"]["X-Note"] == "=?utf-8?q?gr=C3=BC=C3=9Fe?="  # as sent: encoded


def test_more_recipients_than_one_call_takes_are_split_each_recipient_once_in_order():
    rcpts = [f"r{i}@example.org" for i in range(7)]
    calls = request_bodies(newsletter(), rcpts, IDS, per_call=3)
    assert [len(chunk) for chunk, _ in calls] == [3, 3, 1]
    sent = [p["to"][0]["email"] for _, body in calls for p in body["personalizations"]]
    assert sent == rcpts
    assert all(chunk == [p["to"][0]["email"] for p in b["personalizations"]] for chunk, b in calls)
    assert all(b["subject"] == "Our spring collection" for _, b in calls)


def test_the_ingress_smtpapi_and_template_headers_become_categories_args_and_template():
    content = (
        b"From: news@shop.test\r\nSubject: Spring\r\n"
        b'X-SMTPAPI: {"unique_args": {"campaign_id": "spring", "sendbrake_message": "x"},\r\n'
        b' "category": ["spring", "newsletter"]}\r\n'
        b"X-Sendbrake-Template-Id: d-123\r\n"
        b'X-Sendbrake-Template-Data: {"first_name": "Ada"}\r\n'
        b"\r\n"
    )
    [(_, body)] = request_bodies(content, ["ada@example.org"], IDS)
    assert body["categories"] == ["spring", "newsletter"]
    assert body["template_id"] == "d-123"
    assert "content" not in body  # an empty body: the template is the content
    [person] = body["personalizations"]
    assert person["custom_args"] == {
        "campaign_id": "spring",
        "sendbrake_message": "01MESSAGE",  # ours win over a sender's
        "sendbrake_campaign": "01CAMPAIGN",
    }
    assert person["dynamic_template_data"] == {"first_name": "Ada"}
    assert set(body["headers"]) == {"X-Sendbrake-Message", "X-Sendbrake-Campaign"}


def test_a_message_without_any_sender_address_cannot_be_converted():
    with pytest.raises(NotConvertible, match="no From address"):
        request_bodies(b"Subject: x\r\n\r\nbody\r\n", ["a@example.org"], IDS, mail_from="")
    [(_, body)] = request_bodies(b"Subject: x\r\n\r\nbody\r\n", ["a@x.test"], IDS, "bounce@x.test")
    assert body["from"] == {"email": "bounce@x.test"}


def test_retry_after_is_read_as_seconds_or_as_an_http_date():
    now = 1_800_000_000.0
    assert retry_after("30", now) == 30.0
    date = format_datetime(datetime.fromtimestamp(now + 90, UTC), usegmt=True)
    assert retry_after(date, now) == pytest.approx(90.0)
    assert retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now) == 0.0  # in the past
    assert retry_after("soon", now) is None
    assert retry_after(None, now) is None


# --- against the fake provider ----------------------------------------------------------------


async def test_202_delivers_each_recipient_with_the_providers_message_id(up, sendgrid):
    results = await up.deliver(
        "news@shop.test", ["ada@example.org", "b@example.org"], newsletter(), IDS
    )
    assert [r.outcome for r in results] == [Outcome.DELIVERED, Outcome.DELIVERED]
    assert results[0].reply == "202 accepted by SendGrid (X-Message-Id fake-1)"
    [request] = sendgrid.requests
    assert request.headers["Authorization"] == f"Bearer {KEY}"
    assert request.headers["Content-Type"] == "application/json"
    assert request.recipients == ["ada@example.org", "b@example.org"]
    person = request.body["personalizations"][0]
    assert person["custom_args"]["sendbrake_message"] == "01MESSAGE"


async def test_400_fails_every_recipient_of_the_call_with_the_providers_error(up, sendgrid):
    sendgrid.fail_next(1, 400, "The from address does not match a verified Sender Identity")
    [result] = await up.deliver("news@shop.test", ["ada@example.org"], newsletter(), IDS)
    assert result.outcome is Outcome.PERMANENT
    assert result.reply == (
        "400 refused by SendGrid: The from address does not match a verified Sender Identity"
    )


async def test_an_oversize_request_is_permanent(up, sendgrid):
    sendgrid.fail_next(1, 413, "refused")
    [result] = await up.deliver("news@shop.test", ["ada@example.org"], newsletter(), IDS)
    assert result.outcome is Outcome.PERMANENT
    assert result.reply.startswith("413 refused by SendGrid")


@pytest.mark.parametrize("status", [401, 403])
async def test_a_refused_key_defers_the_mail_until_an_operator_fixes_it(up, sendgrid, status):
    sendgrid.fail_next(1, status, "The provided authorization grant is invalid")
    [result] = await up.deliver("news@shop.test", ["ada@example.org"], newsletter(), IDS)
    assert result.outcome is Outcome.TRANSIENT
    assert result.reply == (
        f"{status} key refused by SendGrid: The provided authorization grant is invalid"
    )
    [again] = await up.deliver("news@shop.test", ["ada@example.org"], newsletter(), IDS)
    assert again.outcome is Outcome.DELIVERED


async def test_500_is_transient_and_the_next_call_delivers(up, sendgrid):
    sendgrid.fail_next(1, 500, "Internal error")
    [first] = await up.deliver("news@shop.test", ["ada@example.org"], newsletter(), IDS)
    assert first.outcome is Outcome.TRANSIENT
    assert first.reply == "500 SendGrid error: Internal error"
    assert first.retry_after is None
    [again] = await up.deliver("news@shop.test", ["ada@example.org"], newsletter(), IDS)
    assert again.outcome is Outcome.DELIVERED
    assert sendgrid.recipients == ["ada@example.org"]


async def test_429_defers_until_retry_after_and_no_call_is_made_before_it(up, sendgrid):
    sendgrid.throttle_next(1, retry_after="30")
    [throttled] = await up.deliver("news@shop.test", ["ada@example.org"], newsletter(), IDS)
    assert throttled.outcome is Outcome.TRANSIENT
    assert throttled.reply == "429 throttled by SendGrid (Retry-After 30s)"
    assert throttled.retry_after == 30.0
    [waiting] = await up.deliver("news@shop.test", ["b@example.org"], newsletter(), IDS)
    assert waiting.outcome is Outcome.TRANSIENT
    assert waiting.reply.startswith("429 not sent: SendGrid asked to wait")
    assert waiting.retry_after is not None
    assert 29.0 < waiting.retry_after <= 30.0
    assert len(sendgrid.requests) == 1  # the throttled account was not called again

    # The relay defers to at least Retry-After, though its own backoff is 1 s.
    settings = RelaySettings(retry_base=1, retry_max_delay=5, retry_jitter=0, max_age=86400)
    delivery = Delivery("m", "c", "news@shop.test", b"", ((7, "ada@example.org"),), 0, 0.0)
    [settlement] = plan_settlements(delivery, [throttled], 100.0, settings, lambda: 0.0)
    assert settlement.state is RecipientState.DEFERRED
    assert settlement.next_attempt_at == 130.0


async def test_a_retry_after_date_is_honoured_too(tmp_path, sendgrid):
    wall = 1_800_000_000.0
    upstream = SendGridUpstream(sendgrid_settings(tmp_path, sendgrid).upstream, wall=lambda: wall)
    date = format_datetime(datetime.fromtimestamp(wall + 120, UTC), usegmt=True)
    sendgrid.throttle_next(1, retry_after=date)
    try:
        [result] = await upstream.deliver("news@shop.test", ["a@example.org"], newsletter(), IDS)
    finally:
        await upstream.close()
    assert result.retry_after == pytest.approx(120.0)


async def test_a_provider_that_hangs_times_out_transient_and_no_recipient_is_lost(
    tmp_path, sendgrid
):
    sendgrid.hang = True
    settings = sendgrid_settings(tmp_path, sendgrid, request_timeout="300ms").upstream
    upstream = SendGridUpstream(settings)
    try:
        results = await upstream.deliver(
            "news@shop.test", ["ada@example.org", "b@example.org"], newsletter(), IDS
        )
        assert [r.outcome for r in results] == [Outcome.TRANSIENT, Outcome.TRANSIENT]
        assert results[0].reply.startswith(
            "SendGrid did not answer within upstream.request_timeout (0.3s)"
        )
        assert "deliver it twice" in results[0].reply
        sendgrid.hang = False
        again = await upstream.deliver(
            "news@shop.test", ["ada@example.org", "b@example.org"], newsletter(), IDS
        )
    finally:
        await upstream.close()
    assert [r.outcome for r in again] == [Outcome.DELIVERED, Outcome.DELIVERED]
    assert sendgrid.recipients == ["ada@example.org", "b@example.org"]


async def test_an_unreachable_provider_is_transient(tmp_path, sendgrid):
    settings = sendgrid_settings(tmp_path, sendgrid).upstream
    await sendgrid.stop()  # nothing listens on its port any more
    upstream = SendGridUpstream(settings)
    try:
        [result] = await upstream.deliver("news@shop.test", ["a@example.org"], newsletter(), IDS)
    finally:
        await upstream.close()
    assert result.outcome is Outcome.TRANSIENT
    assert result.reply.startswith("SendGrid unreachable")


async def test_recipients_beyond_the_per_call_limit_go_in_further_calls(tmp_path, sendgrid):
    upstream = SendGridUpstream(
        sendgrid_settings(tmp_path, sendgrid, personalizations_per_call=2).upstream
    )
    rcpts = [f"r{i}@example.org" for i in range(5)]
    try:
        results = await upstream.deliver("news@shop.test", rcpts, newsletter(), IDS)
    finally:
        await upstream.close()
    assert [len(r.recipients) for r in sendgrid.requests] == [2, 2, 1]
    assert sendgrid.recipients == rcpts
    assert [r.address for r in results] == rcpts
    assert {r.reply for r in results} == {
        f"202 accepted by SendGrid (X-Message-Id fake-{n})" for n in (1, 2, 3)
    }


async def test_an_address_that_is_no_mailbox_fails_alone(up, sendgrid):
    results = await up.deliver(
        "news@shop.test", ["tab\t@example.org", "ada@example.org"], newsletter(), IDS
    )
    assert results[0].outcome is Outcome.PERMANENT
    assert results[0].reply.startswith("not sent: the recipient address")
    assert results[1].outcome is Outcome.DELIVERED
    assert sendgrid.recipients == ["ada@example.org"]


async def test_the_upstream_process_carries_the_ids_into_the_custom_args(tmp_path, sendgrid):
    remote = ProcessUpstream(sendgrid_settings(tmp_path, sendgrid, process="separate"))
    try:
        [result] = await remote.deliver("news@shop.test", ["ada@example.org"], newsletter(), IDS)
    finally:
        await remote.close()
    assert result.outcome is Outcome.DELIVERED
    [request] = sendgrid.requests
    assert request.body["personalizations"][0]["custom_args"] == {
        "sendbrake_campaign": "01CAMPAIGN",
        "sendbrake_message": "01MESSAGE",
    }


def test_the_sendgrid_kind_needs_an_api_key(tmp_path):
    with pytest.raises(ValueError, match=r"upstream\.api_key is required"):
        make_settings(tmp_path, upstream={"kind": "sendgrid"})
