"""The HTTP send API end to end: SendGrid's v3 mail send, over real sockets, to the upstream.

The official `sendgrid` SDK talks to the gateway's esp listener; what it sends goes
through the same admission, policies, hold and release as SMTP mail and reaches the
capturing upstream SMTP server.
"""

from __future__ import annotations

import asyncio
import base64
import email
import shutil
import time
from email.policy import default as default_policy
from typing import Any

import pytest
from python_http_client.exceptions import BadRequestsError, ForbiddenError, UnauthorizedError
from sendgrid import SendGridAPIClient

from gateway.errors import SpoolError
from gateway.spool import create_spool
from tests.clock import ManualClock
from tests.esp import body, personalised, post, sdk
from tests.harness import POLICIES, TOKENS, run_gateway
from tests.helpers import eventually

ESP = {"listen": "127.0.0.1:0"}


def esp_settings(settings_for, upstream, **sections: dict[str, Any]):
    return settings_for(upstream.port, esp=ESP, **sections)


def parsed(content: bytes) -> email.message.EmailMessage:
    return email.message_from_bytes(content, policy=default_policy)  # type: ignore[return-value]


def text_of(content: bytes) -> str:
    message = parsed(content)
    return message.get_body(("plain",)).get_content()  # type: ignore[union-attr]


async def campaign_of(gw, key: str) -> dict[str, Any]:
    status, page = await gw.api().get("/api/v1/campaigns")
    assert status == 200
    return next(c for c in page["items"] if c["key"] == key)


async def nothing_stored(gw) -> None:
    assert await gw.spool.campaigns(limit=10) == []
    assert sum((await gw.spool.count_by_state()).values()) == 0


async def test_the_sendgrid_sdk_sends_500_personalised_messages_each_reader_once_with_own_content(
    settings_for, upstream
):
    async with run_gateway(esp_settings(settings_for, upstream)) as gw:
        mail = personalised(500, campaign="spring-500", declared=500)
        response = await asyncio.to_thread(sdk(gw).send, mail)
        assert response.status_code == 202
        assert response.body == b""
        assert response.headers["X-Message-Id"]

        await eventually(lambda: len(upstream.transactions) >= 500, timeout=60)
        by_reader = {}
        for transaction in upstream.transactions:
            [rcpt] = transaction.rcpt_tos
            assert rcpt not in by_reader, f"{rcpt} delivered twice"
            by_reader[rcpt] = transaction
        assert sorted(by_reader) == sorted(f"reader{i}@example.org" for i in range(500))
        for i in range(500):
            delivered = by_reader[f"reader{i}@example.org"]
            assert delivered.mail_from == "news@shop.test"
            message = parsed(delivered.content)
            assert message["Subject"] == f"A spring note for Name{i}"
            assert message["To"] == f"Name{i} <reader{i}@example.org>"
            assert message["X-Campaign-ID"] == "spring-500"
            assert "X-Declared-Size" not in message  # declaration headers are stripped
            assert text_of(delivered.content).startswith(f"Dear Name{i}, the spring")
            assert "-first_name-" not in delivered.content.decode()

        campaign = await campaign_of(gw, "spring-500")
        assert campaign["client"] == "platform"  # the API key's token is the tenant
        assert campaign["implicit"] is False
        assert campaign["declared"]["size"] == 500
        assert campaign["counters"]["received"] == 500
        assert campaign["findings"] == []
        registry = gw.gateway.metrics.registry
        received = registry.get_sample_value(
            "sendbrake_messages_received_total", {"ingress": "http"}
        )
        assert received == 500
        assert registry.get_sample_value("sendbrake_recipients_received_total") == 500
        assert len(upstream.transactions) == 500


async def test_an_oversize_campaign_declared_small_is_held_whole_and_released_over_the_ops_api(
    settings_for, upstream
):
    async with run_gateway(esp_settings(settings_for, upstream)) as gw:
        # Declared 5: blast-declared holds past 5 × 1.5 and 5 + 50, at the 56th reader.
        response = await asyncio.to_thread(
            sdk(gw).send, personalised(80, campaign="tiny", declared=5)
        )
        assert response.status_code == 202  # accepted and held, as SMTP's 250
        campaign = await campaign_of(gw, "tiny")
        assert campaign["state"] == "held"
        assert [f["rule"] for f in campaign["findings"]] == ["blast-declared"]
        # One transaction for the request: nothing of it was queued before the hold.
        assert campaign["counters"]["held"] == 80
        assert campaign["counters"]["escaped"] == 0
        assert upstream.transactions == []

        status, released = await gw.api("alice").post(
            f"/api/v1/campaigns/{campaign['id']}/release", {"reason": "list grew, checked"}
        )
        assert status == 200, released
        await eventually(lambda: len(upstream.transactions) >= 80, timeout=30)
        assert sorted(upstream.recipients) == sorted(f"reader{i}@example.org" for i in range(80))


async def test_a_merge_tag_left_in_one_substitution_holds_the_campaign_naming_that_reader(
    settings_for, upstream
):
    async with run_gateway(esp_settings(settings_for, upstream)) as gw:
        mail = personalised(20, campaign="leaky", declared=20, leak=7)
        assert (await asyncio.to_thread(sdk(gw).send, mail)).status_code == 202
        campaign = await campaign_of(gw, "leaky")
        assert campaign["state"] == "held"
        [finding] = campaign["findings"]
        assert finding["rule"] == "merge-tags"
        assert finding["message"].startswith("unrendered merge tag {{first_name}} in the subject")
        assert finding["evidence"]["recipients"] == ["reader7@example.org"]
        assert finding["count"] == 1  # only that reader's message had it
        assert upstream.transactions == []


def _huge(count: int):
    return lambda b: b.update(
        personalizations=[{"to": [{"email": f"r{i}@x.org"}]} for i in range(count)]
    )


BAD_REQUESTS = [
    ("no from", lambda b: b.pop("from"), "from"),
    (
        "bad recipient address",
        lambda b: b["personalizations"][0]["to"][0].update(email="reader.example.org"),
        "personalizations.0.to.0.email",
    ),
    ("bad sender address", lambda b: b["from"].update(email="news@"), "from.email"),
    ("no personalizations", lambda b: b.update(personalizations=[]), "personalizations"),
    ("more than 1000 personalizations", _huge(1001), "personalizations"),
    ("no content", lambda b: b.pop("content"), "content"),
    ("empty content", lambda b: b["content"][0].update(value=""), "content.0.value"),
    ("unknown content type", lambda b: b["content"][1].update(type="text/rtf"), "content.1.type"),
    ("html before text", lambda b: b["content"].reverse(), "content.0.type"),
    (
        "attachment not base64",
        lambda b: b.update(attachments=[{"content": "not base64!", "filename": "a.pdf"}]),
        "attachments.0.content",
    ),
    ("unknown top-level field", lambda b: b.update(shout="LOUD"), "shout"),
    (
        "unknown personalization field",
        lambda b: b["personalizations"][0].update(bcc_everyone=True),
        "personalizations.0.bcc_everyone",
    ),
    (
        "sandbox mode",
        lambda b: b.update(mail_settings={"sandbox_mode": {"enable": True}}),
        "mail_settings",
    ),
    (
        "scheduled send",
        lambda b: b["personalizations"][0].update(send_at=4102444800),  # 2100-01-01
        "personalizations.0.send_at",
    ),
    ("no subject", lambda b: b.pop("subject"), "personalizations.0.subject"),
    ("a header the gateway writes", lambda b: b.update(headers={"To": "x@y.org"}), "headers.To"),
    (
        "a line break in a header",
        lambda b: b.update(headers={"X-Note": "a\r\nBcc: all@example.org"}),
        "headers.X-Note",
    ),
    (
        "the same reader twice in a personalization",
        lambda b: b["personalizations"][0].update(cc=[{"email": "R0@example.org"}]),
        "personalizations.0.cc.0.email",
    ),
    (
        "a declared size that is no number",
        lambda b: b["personalizations"][0].update(custom_args={"declared_size": "lots"}),
        "personalizations.0.custom_args.declared_size",
    ),
    (
        "a campaign key too long",
        lambda b: b.update(custom_args={"campaign_id": "k" * 300}),
        "custom_args.campaign_id",
    ),
]


@pytest.mark.parametrize(
    ("change", "field"), [pytest.param(c, f, id=name) for name, c, f in BAD_REQUESTS]
)
async def test_a_bad_request_gets_a_sendgrid_shaped_400_naming_the_field_and_stores_nothing(
    settings_for, upstream, change, field
):
    async with run_gateway(esp_settings(settings_for, upstream)) as gw:
        request = body(2)
        change(request)
        status, _, answer = await post(gw, request)
        assert status == 400, answer
        assert field in [e["field"] for e in answer["errors"]], answer
        for error in answer["errors"]:
            assert set(error) == {"message", "field", "help"}
            assert error["message"]
        await nothing_stored(gw)


async def test_a_body_that_is_not_json_or_not_an_object_gets_a_400_without_a_field(
    settings_for, upstream
):
    async with run_gateway(esp_settings(settings_for, upstream)) as gw:
        for raw in (b'{"personalizations": [', b"[1, 2]"):
            status, _, answer = await post(gw, None, raw=raw)
            assert status == 400
            assert answer["errors"][0]["field"] is None
            assert answer["errors"][0]["help"] is None
        status, _, answer = await post(gw, None, raw=b"{}", headers={"Content-Type": "text/plain"})
        assert status == 400
        assert "application/json" in answer["errors"][0]["message"]
        await nothing_stored(gw)


async def test_the_sdk_sees_a_refusal_as_sendgrid_answers_it(settings_for, upstream):
    async with run_gateway(esp_settings(settings_for, upstream)) as gw:
        request = body(1)
        request["personalizations"][0]["to"][0]["email"] = "not-an-address"
        with pytest.raises(BadRequestsError) as refused:
            await asyncio.to_thread(sdk(gw).send, request)  # the SDK takes a dict as well
        assert refused.value.status_code == 400
        assert refused.value.to_dict["errors"][0]["field"] == "personalizations.0.to.0.email"


async def test_a_bad_or_missing_key_gets_401_and_a_key_without_the_role_403(settings_for, upstream):
    async with run_gateway(esp_settings(settings_for, upstream)) as gw:
        for key in (None, "sb_not_a_token", ""):
            status, _, answer = await post(gw, body(), key=key)
            assert status == 401
            assert answer == {
                "errors": [
                    {
                        "message": "The provided authorization grant is invalid, expired, or revoked",
                        "field": None,
                        "help": None,
                    }
                ]
            }
        stranger = SendGridAPIClient(api_key="sb_wrong", host=gw.esp_url)
        with pytest.raises(UnauthorizedError):
            await asyncio.to_thread(stranger.send, body())
        for who in ("viewer", "alice"):  # read-only and operator tokens send nothing
            status, _, answer = await post(gw, body(), key=TOKENS[who][0])
            assert status == 403, who
            assert answer["errors"][0]["message"].startswith("access forbidden")
        with pytest.raises(ForbiddenError):
            await asyncio.to_thread(sdk(gw, "viewer").send, body())
        await nothing_stored(gw)
        status, _, _ = await post(gw, body(), key=TOKENS["admin"][0])
        assert status == 202  # an admin may send too


async def test_bad_keys_from_one_address_are_limited_with_429(settings_for, upstream):
    settings = esp_settings(settings_for, upstream, ops={"auth_max_failures": 3})
    async with run_gateway(settings) as gw:
        statuses = [(await post(gw, body(), key="sb_guess"))[0] for _ in range(4)]
        assert statuses == [401, 401, 401, 429]
        status, headers, answer = await post(gw, body())  # the good key waits as well
        assert status == 429
        assert int(headers["Retry-After"]) > 0
        assert answer["errors"][0]["field"] is None


async def test_without_a_key_personalised_subjects_still_make_one_implicit_campaign(
    settings_for, upstream
):
    async with run_gateway(esp_settings(settings_for, upstream)) as gw:
        request = body(3, subject="Hi -n-, spring is here")
        for n, person in enumerate(request["personalizations"]):
            person["substitutions"] = {"-n-": f"Reader{n}"}
        assert (await post(gw, request))[0] == 202
        [campaign] = await gw.spool.campaigns(limit=10)
        assert campaign.implicit
        assert campaign.key == "implicit:news@shop.test:hi -n-, spring is here"
        assert campaign.counters.received == 3


async def test_two_api_keys_never_share_a_campaign(settings_for, upstream):
    async with run_gateway(esp_settings(settings_for, upstream)) as gw:
        for who in ("platform", "admin"):
            status, _, _ = await post(gw, body(1, batch_id="batch-7"), key=TOKENS[who][0])
            assert status == 202
        campaigns = await gw.spool.campaigns(limit=10)
        assert sorted((c.client, c.key) for c in campaigns) == [
            ("admin", "batch-7"),
            ("platform", "batch-7"),
        ]


class BreakableSpool:
    """A real spool whose next commit can be made to fail after all its work ran."""

    def __init__(self, spool) -> None:
        self._spool = spool
        self.fail_next = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self._spool, name)

    async def transact(self, work):
        if not self.fail_next:
            return await self._spool.transact(work)
        self.fail_next -= 1

        def then_fail(tx):
            work(tx)  # every personalization was written inside the transaction ...
            raise SpoolError("disk I/O error")  # ... and the commit fails: undone

        return await self._spool.transact(then_fail)


async def test_a_failed_commit_stores_nothing_of_the_request_and_answers_503(
    settings_for, upstream
):
    settings = esp_settings(settings_for, upstream)
    spool = BreakableSpool(create_spool(settings.spool))
    async with run_gateway(settings, spool=spool) as gw:
        spool.fail_next = 1
        status, headers, answer = await post(gw, body(30, batch_id="b1"))
        assert status == 503
        assert headers["Retry-After"]
        assert "nothing of it was kept" in answer["errors"][0]["message"]
        await nothing_stored(gw)
        assert (
            gw.gateway.metrics.registry.get_sample_value(
                "sendbrake_messages_received_total", {"ingress": "http"}
            )
            == 0
        )

        status, _, _ = await post(gw, body(30, batch_id="b1"))  # the client's retry
        assert status == 202
        await eventually(lambda: len(upstream.transactions) >= 30)
        assert sorted(upstream.recipients) == sorted(f"r{i}@example.org" for i in range(30))


async def test_mail_for_a_rejected_campaign_refuses_the_whole_request_naming_its_field(
    settings_for, upstream
):
    async with run_gateway(esp_settings(settings_for, upstream)) as gw:
        request = body(60, custom_args={"campaign_id": "old", "declared_size": "5"})
        assert (await post(gw, request))[0] == 202  # held: past 55
        old = await campaign_of(gw, "old")
        status, _ = await gw.api("alice").post(
            f"/api/v1/campaigns/{old['id']}/reject", {"reason": "wrong list"}
        )
        assert status == 200

        request = body(2)
        request["personalizations"][0]["custom_args"] = {"campaign_id": "fresh"}
        request["personalizations"][1]["custom_args"] = {"campaign_id": "old"}
        status, _, answer = await post(gw, request)
        assert status == 400
        [error] = answer["errors"]
        assert error["field"] == "personalizations.1.custom_args.campaign_id"
        assert "rejected" in error["message"]
        # All or nothing: the first personalization's campaign was never created.
        assert [c.key for c in await gw.spool.campaigns(limit=10)] == ["old"]


async def test_a_provider_template_holds_a_bulk_campaign_and_names_the_template(
    settings_for, upstream
):
    async with run_gateway(esp_settings(settings_for, upstream)) as gw:
        small = body(100, template_id="d-1234", batch_id="tpl")
        del small["content"]
        status, _, _ = await post(gw, small)
        assert status == 202  # 100 recipients: at the bulk threshold, not above it
        await eventually(lambda: len(upstream.transactions) >= 100)
        sent = parsed(upstream.transactions[0].content)
        assert sent["X-Sendbrake-Template-Id"] == "d-1234"

        more = body(1, template_id="d-1234", batch_id="tpl")
        more["personalizations"][0]["to"][0]["email"] = "late@example.org"
        del more["content"]
        assert (await post(gw, more))[0] == 202
        campaign = await campaign_of(gw, "tpl")
        assert campaign["state"] == "held"
        [finding] = campaign["findings"]
        assert finding["rule"] == "provider-template"
        assert finding["evidence"] == {
            "template_id": "d-1234",
            "received": 101,
            "bulk_threshold": 100,
        }


async def test_a_template_a_rule_allows_is_sent_in_bulk(settings_for, upstream, tmp_path):
    folder = tmp_path / "policies"
    folder.mkdir()
    shutil.copy(POLICIES / "default.yaml", folder)
    text = (folder / "default.yaml").read_text()
    (folder / "default.yaml").write_text(text.replace("allow: []", "allow: [d-reviewed]"))
    settings = esp_settings(settings_for, upstream, policies={"dir": str(folder)})
    async with run_gateway(settings) as gw:
        for template in ("d-reviewed", "d-other"):
            request = body(150, template_id=template, batch_id=template)
            del request["content"]
            assert (await post(gw, request))[0] == 202
        assert (await campaign_of(gw, "d-reviewed"))["state"] == "open"
        assert (await campaign_of(gw, "d-other"))["state"] == "held"


async def test_cc_bcc_attachments_and_headers_reach_the_upstream_as_one_message(
    settings_for, upstream
):
    async with run_gateway(esp_settings(settings_for, upstream)) as gw:
        request = body(1, categories=["spring", "sale"])
        person = request["personalizations"][0]
        person["cc"] = [{"email": "boss@example.org"}]
        person["bcc"] = [{"email": "archive@example.org"}]
        person["headers"] = {"X-Campaign-ID": "spring-cc"}
        request["reply_to"] = {"email": "help@shop.test"}
        request["attachments"] = [
            {
                "content": base64.b64encode(b"%PDF-1.4 catalogue").decode(),
                "filename": "catalogue.pdf",
                "type": "application/pdf",
            }
        ]
        assert (await post(gw, request))[0] == 202
        [delivered] = await eventually(lambda: upstream.transactions)
        assert sorted(delivered.rcpt_tos) == [
            "archive@example.org",
            "boss@example.org",
            "r0@example.org",
        ]
        message = parsed(delivered.content)
        assert message["Cc"] == "boss@example.org"
        assert "Bcc" not in message  # the envelope carries bcc, never a header
        assert message["Reply-To"] == "help@shop.test"
        assert message["X-Campaign-ID"] == "spring-cc"
        assert message["Received"].startswith("from [127.0.0.1] by gw.test (sendbrake) with HTTP")
        assert '"category": ["spring", "sale"]' in message["X-SMTPAPI"]
        [attachment] = list(message.iter_attachments())
        assert attachment.get_filename() == "catalogue.pdf"
        assert attachment.get_content() == b"%PDF-1.4 catalogue"


async def test_a_body_over_the_size_limit_gets_413_in_sendgrid_shape(settings_for, upstream):
    settings = settings_for(upstream.port, esp={**ESP, "max_body_size": 2048})
    async with run_gateway(settings) as gw:
        request = body(1)
        request["content"][0]["value"] = "x" * 4096
        status, _, answer = await post(gw, request)
        assert status == 413
        assert answer["errors"][0]["message"] == "The request is larger than 2048 bytes."
        await nothing_stored(gw)


async def test_the_send_api_is_off_unless_esp_listen_is_set(settings_for, upstream):
    async with run_gateway(settings_for(upstream.port)) as gw:
        assert gw.addresses.esp is None
        status, _ = await gw.api("platform").post("/v3/mail/send", body())
        assert status == 404  # not on the ops listener either


async def test_the_send_apis_own_limits_close_slow_connections_and_time_out_slow_bodies(
    settings_for, upstream
):
    esp = {**ESP, "header_timeout": 0.5, "body_timeout": 0.3, "max_field_size": 1024}
    async with run_gateway(settings_for(upstream.port, esp=esp)) as gw:
        host, port = gw.addresses.esp

        async def exchange(sent: bytes, until: bytes | None = None) -> tuple[float, bytes]:
            """Send, then read to the end of the connection (or of `until`)."""
            reader, writer = await asyncio.open_connection(host, port)
            try:
                writer.write(sent)
                await writer.drain()
                start = time.monotonic()
                read = reader.readuntil(until) if until else reader.read()
                answer = await asyncio.wait_for(read, timeout=5)
                return time.monotonic() - start, answer
            finally:
                writer.close()

        # Headers that never finish: closed after the header timeout, without an answer.
        waited, answer = await exchange(b"POST /v3/mail/send HTTP/1.1\r\nHost: gw\r\nX-Slow: ")
        assert answer == b""
        assert waited < 2
        # A body that stops halfway: 408 in SendGrid's shape once body_timeout passed.
        head = (
            b"POST /v3/mail/send HTTP/1.1\r\nHost: gw\r\nContent-Type: application/json\r\n"
            b"Authorization: Bearer " + TOKENS["platform"][0].encode() + b"\r\n"
            b"Content-Length: 100\r\nConnection: close\r\n\r\n"
        )
        # (aiohttp keeps reading the rest of the body after answering, so read the answer.)
        _, answer = await exchange(head + b'{"personalizations": ', until=b"}]}")
        assert answer.startswith(b"HTTP/1.1 408")
        assert b'"The request body did not arrive in time."' in answer
        # A header field past max_field_size: aiohttp's parser refuses it (before any handler,
        # so in its own words, as HTTP/1.0).
        _, answer = await exchange(
            b"POST /v3/mail/send HTTP/1.1\r\nHost: gw\r\nX-Big: " + b"x" * 2048 + b"\r\n\r\n"
        )
        assert answer.split(b"\r\n")[0].endswith(b" 400 Bad Request")
        await nothing_stored(gw)


async def test_a_retried_request_whose_202_was_lost_is_stored_and_sent_once(settings_for, upstream):
    clock = ManualClock()
    settings = settings_for(upstream.port, esp={**ESP, "resend_window": "1h"})
    async with run_gateway(settings, clock=clock) as gw:
        request = body(30, headers={"X-Campaign-ID": "spring-retry", "X-Declared-Size": "30"})
        first_status, first, _ = await post(gw, request)
        again_status, again, _ = await post(gw, request)  # the platform never saw the 202
        assert (first_status, again_status) == (202, 202)
        assert again["X-Message-Id"] == first["X-Message-Id"]
        campaign = await campaign_of(gw, "spring-retry")
        assert campaign["state"] == "open"  # not held as the same readers twice
        assert campaign["counters"]["received"] == 30
        await eventually(lambda: len(upstream.transactions) == 30)

        # Another key sending the same bytes is another client's send, not a retry.
        other_status, other, _ = await post(gw, request, key=TOKENS["admin"][0])
        assert other_status == 202
        assert other["X-Message-Id"] != first["X-Message-Id"]

        # Past esp.resend_window, the same request is a new send (and the rules judge it).
        clock.advance(3601)
        late_status, late, _ = await post(gw, request)
        assert late_status == 202
        assert late["X-Message-Id"] != first["X-Message-Id"]
        status, page = await gw.api().get("/api/v1/campaigns")
        assert status == 200
        mine = [
            c for c in page["items"] if c["key"] == "spring-retry" and c["client"] == "platform"
        ]
        assert sum(c["counters"]["received"] for c in mine) == 60
