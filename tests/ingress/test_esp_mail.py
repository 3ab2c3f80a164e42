"""The send API's request reading and message building, as pure functions."""

from __future__ import annotations

import email
import time
from email.policy import default as default_policy
from typing import Any

import pytest

from gateway.ingress.esp_mail import build, render
from gateway.ingress.esp_request import RequestInvalid, parse
from gateway.settings import EspSettings
from tests.esp import body

SOURCES = EspSettings().campaign_from


def built(request: dict[str, Any], campaign_from=SOURCES):
    checked = parse(request, max_personalizations=1000, max_recipients=1000, now=time.time())
    return build(checked, campaign_from=campaign_from, key_header="X-Campaign-ID")


def message(content: bytes) -> email.message.EmailMessage:
    return email.message_from_bytes(content, policy=default_policy)  # type: ignore[return-value]


def errors(request: dict[str, Any], **limits: int) -> list[tuple[str | None, str]]:
    with pytest.raises(RequestInvalid) as refused:
        parse(
            request,
            max_personalizations=limits.get("personalizations", 1000),
            max_recipients=limits.get("recipients", 1000),
            now=time.time(),
        )
    return [(e.field, e.message) for e in refused.value.errors]


def test_substitutions_are_replaced_in_one_pass_and_values_are_never_read_again():
    subs = {"-a-": "-ab-", "-ab-": "B", "%name%": "{{first_name}}"}
    assert render("-a- -ab- %name%", subs) == "-ab- B {{first_name}}"
    assert render("no tags", {}) == "no tags"


def test_substitutions_render_the_subject_and_both_bodies_of_each_personalization():
    request = body(2, subject="Hi -n-")
    request["content"] = [
        {"type": "text/plain", "value": "Dear -n-,"},
        {"type": "text/html", "value": "<p>Dear -n-,</p>"},
    ]
    for n, person in enumerate(request["personalizations"]):
        person["substitutions"] = {"-n-": f"Reader{n}"}
    first, second = built(request)
    assert message(first.content)["Subject"] == "Hi Reader0"
    assert message(second.content)["Subject"] == "Hi Reader1"
    parsed = message(second.content)
    assert parsed.get_body(("plain",)).get_content().strip() == "Dear Reader1,"
    assert parsed.get_body(("html",)).get_content().strip() == "<p>Dear Reader1,</p>"
    assert first.subject == second.subject == "Hi -n-"  # what an implicit campaign is keyed by


@pytest.mark.parametrize(
    ("given", "key", "origin"),
    [
        (
            {"headers": {"X-Campaign-ID": "h"}, "custom_args": {"campaign_id": "c"}},
            "h",
            "headers.X-Campaign-ID",
        ),
        ({"custom_args": {"campaign_id": "c"}, "batch_id": "b"}, "c", "custom_args.campaign_id"),
        ({"batch_id": "b", "categories": ["cat", "other"]}, "b", "batch_id"),
        ({"categories": ["cat", "other"]}, "cat", "categories.0"),
        ({}, None, None),
    ],
)
def test_the_campaign_key_comes_from_the_first_source_present(given, key, origin):
    [result] = built(body(1, **given))
    assert result.key == key
    if key is None:
        assert "X-Campaign-ID" not in message(result.content)
        return
    assert message(result.content)["X-Campaign-ID"] == key  # the message names its campaign
    assert result.fields["x-campaign-id"] == origin


def test_the_order_of_campaign_sources_is_configurable_and_a_personalization_arg_wins():
    request = body(2, headers={"X-Campaign-ID": "h"}, custom_args={"campaign_id": "all"})
    request["personalizations"][1]["custom_args"] = {"campaign_id": "mine"}
    first, second = built(request, campaign_from=("custom_arg:campaign_id", "header:X-Campaign-ID"))
    assert (first.key, second.key) == ("all", "mine")
    assert second.fields["x-campaign-id"] == "personalizations.1.custom_args.campaign_id"
    assert message(second.content).get_all("X-Campaign-ID") == ["mine"]  # one key header


def test_declarations_come_from_custom_args_unless_a_header_declares():
    request = body(1, custom_args={"declared_size": "200", "category": "survey", "locale": "de"})
    request["headers"] = {"X-Campaign-Locale": "fr"}
    [result] = built(request)
    parsed = message(result.content)
    assert parsed["X-Declared-Size"] == "200"
    assert parsed["X-Campaign-Category"] == "survey"
    assert parsed["X-Campaign-Locale"] == "fr"
    assert result.fields["x-declared-size"] == "custom_args.declared_size"
    assert result.fields["x-campaign-locale"] == "headers.X-Campaign-Locale"


def test_a_personalizations_headers_replace_the_requests_whatever_their_case():
    request = body(1, headers={"X-Offer": "all", "X-Other": "kept"})
    request["personalizations"][0]["headers"] = {"x-offer": "mine"}
    parsed = message(built(request)[0].content)
    assert parsed.get_all("X-Offer") == ["mine"]
    assert parsed["X-Other"] == "kept"


def test_the_envelope_has_to_cc_and_bcc_and_idn_domains_as_a_labels():
    request = body(1)
    person = request["personalizations"][0]
    person["to"] = [{"email": "ada@bücher.example"}]
    person["cc"] = [{"email": "cc@example.org"}]
    person["bcc"] = [{"email": "bcc@example.org"}]
    person["from"] = {"email": "other@shop.test"}
    [result] = built(request)
    assert result.rcpt_tos == ("ada@xn--bcher-kva.example", "cc@example.org", "bcc@example.org")
    assert result.mail_from == "other@shop.test"
    parsed = message(result.content)
    assert "bcc@example.org" not in result.content.decode()
    assert parsed["From"] == "other@shop.test"


def test_inline_attachments_keep_their_content_id_and_templates_are_named():
    request = body(1, template_id="d-abc")
    request["attachments"] = [
        {
            "content": "aGVsbG8=",
            "filename": "logo.png",
            "type": "image/png",
            "disposition": "inline",
            "content_id": "logo",
        }
    ]
    request["personalizations"][0]["dynamic_template_data"] = {"first_name": "Ada"}
    parsed = message(built(request)[0].content)
    [attachment] = [p for p in parsed.walk() if p.get_filename() == "logo.png"]
    assert attachment["Content-ID"] == "<logo>"
    assert attachment.get_content_disposition() == "inline"
    assert attachment.get_content() == b"hello"
    assert parsed["X-Sendbrake-Template-Id"] == "d-abc"
    assert parsed["X-Sendbrake-Template-Data"] == '{"first_name": "Ada"}'


def test_a_template_send_may_leave_content_and_subject_out():
    request = body(1, template_id="d-abc")
    del request["content"], request["subject"]
    [result] = built(request)
    assert message(result.content).get_content_type() == "text/plain"


def test_custom_args_and_categories_travel_in_sendgrids_smtp_api_header():
    request = body(1, custom_args={"campaign_id": "c", "batch": "7"}, categories=["spring"])
    request["personalizations"][0]["custom_args"] = {"user": "42"}
    header = message(built(request)[0].content)["X-SMTPAPI"]
    assert header == (
        '{"unique_args": {"campaign_id": "c", "batch": "7", "user": "42"}, "category": ["spring"]}'
    )


def test_an_unusable_campaign_key_is_refused_naming_where_it_came_from():
    with pytest.raises(RequestInvalid) as refused:
        built(body(1, batch_id="b", categories=["x\x01y"]), campaign_from=("category",))
    assert [e.field for e in refused.value.errors] == ["categories.0"]


def test_limits_and_fields_that_depend_on_each_other():
    assert errors(body(3), personalizations=2) == [
        ("personalizations", "The personalizations field may have at most 2 items.")
    ]
    assert errors(body(3), recipients=2)[0][0] == "personalizations"
    both = body(1, reply_to={"email": "a@shop.test"}, reply_to_list=[{"email": "b@shop.test"}])
    assert errors(both) == [("reply_to_list", "Give reply_to or reply_to_list, not both.")]
    twice = body(1)
    twice["content"].append({"type": "text/html", "value": "<p>again</p>"})
    assert errors(twice) == [("content.2.type", "Only one content of type text/html.")]


def test_a_send_at_not_in_the_future_means_now():
    request = body(1, send_at=int(time.time()) - 3600)
    assert len(built(request)) == 1
    assert errors(body(1, send_at=int(time.time()) + 3600))[0][0] == "send_at"


def test_an_unsupported_provider_feature_is_named_even_beside_other_wrong_fields():
    request = body(1, mail_settings={"sandbox_mode": {"enable": True}}, tracking_settings={})
    request["from"]["email"] = "news@"
    assert [field for field, _ in errors(request)] == [
        "mail_settings",
        "tracking_settings",
        "from.email",
    ]
