"""Unsubscribe readiness: bulk marketing mail needs RFC 8058 one-click headers and a
visible way out; transactional mail, small sends and compliant mail pass."""

from __future__ import annotations

from email.message import EmailMessage
from email.policy import SMTP

import pytest

from gateway.policy.fixtures import CampaignSpec, evaluate
from gateway.policy.registry import default_registry
from tests.policy.factories import load

ONE_CLICK = {
    "List-Unsubscribe": "<https://shop.test/u/8f3a>, <mailto:unsubscribe@shop.test?subject=8f3a>",
    "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
}
FOOTER = '<p>Not for you any more? <a href="https://shop.test/u/8f3a">Unsubscribe</a></p>'


@pytest.fixture(scope="module")
def policies(tmp_path_factory):
    folder = tmp_path_factory.mktemp("unsubscribe")
    (folder / "p.yaml").write_text("version: 1\nrules:\n  - {id: unsubscribe, kind: unsubscribe}\n")
    return load(folder)


def mail(headers: dict[str, str], html: str, text: str = "Our spring collection is here.") -> bytes:
    message = EmailMessage()
    message["From"] = "Shop <news@shop.test>"
    message["To"] = "reader@example.org"
    message["Subject"] = "Spring collection"
    for name, value in headers.items():
        message[name] = value
    message.set_content(text)
    message.add_alternative(f"<p>Our spring collection is here.</p>{html}", subtype="html")
    return message.as_bytes(policy=SMTP)


def problems(policies, content: bytes, category: str | None = "newsletter", received=5000):
    spec = CampaignSpec(category=category, received=received)
    findings = evaluate(policies, content, spec, registry=default_registry())
    return [p for f in findings for p in f.evidence["problems"]]


def test_compliant_bulk_marketing_mail_passes(policies):
    assert problems(policies, mail(ONE_CLICK, FOOTER)) == []


@pytest.mark.parametrize(
    ("headers", "missing"),
    [
        ({}, ["no List-Unsubscribe header"]),
        (
            {"List-Unsubscribe": "<mailto:unsubscribe@shop.test>"},
            [
                "no https URI in List-Unsubscribe",
                "no List-Unsubscribe-Post: List-Unsubscribe=One-Click",
            ],
        ),
        (
            {"List-Unsubscribe": "<https://shop.test/u/8f3a>"},
            ["no List-Unsubscribe-Post: List-Unsubscribe=One-Click"],
        ),
        (
            {
                "List-Unsubscribe": "<http://shop.test/u/8f3a>",
                "List-Unsubscribe-Post": ONE_CLICK["List-Unsubscribe-Post"],
            },
            ["no https URI in List-Unsubscribe"],
        ),
    ],
)
def test_missing_or_incomplete_one_click_headers_are_named(policies, headers, missing):
    assert problems(policies, mail(headers, FOOTER)) == missing


def test_no_visible_way_out_is_a_problem_even_with_the_headers(policies):
    assert problems(policies, mail(ONE_CLICK, "<p>See you soon.</p>")) == [
        "no unsubscribe link in the body"
    ]


@pytest.mark.parametrize(
    ("html", "text"),
    [
        ('<a href="https://shop.test/preferences?u=8f3a">Manage your e-mail settings</a>', ""),
        ("", "Pour vous désabonner, répondez STOP."),
        ("", "Wenn Sie keine E-Mails mehr möchten, können Sie sich hier abmelden."),
        ("", "Si no deseas recibir más correos, puedes darte de baja aquí."),
        ("", "配信停止をご希望の方はこちら"),
    ],
)
def test_a_way_out_is_found_in_a_link_address_or_a_phrase_in_many_languages(policies, html, text):
    content = mail(ONE_CLICK, html, text=f"Our spring collection is here.\n\n{text}")
    assert problems(policies, content) == []


@pytest.mark.parametrize(
    ("category", "received"),
    [("receipt", 50_000), ("security", 50_000), (None, 50_000), ("newsletter", 1000)],
)
def test_transactional_undeclared_and_small_campaigns_are_not_judged(policies, category, received):
    assert problems(policies, mail({}, ""), category=category, received=received) == []


def test_the_finding_says_what_is_missing_and_the_campaign_size(policies):
    spec = CampaignSpec(category="promotion", received=2500)
    [finding] = evaluate(policies, mail({}, FOOTER), spec, registry=default_registry())
    assert (finding.rule, finding.kind) == ("unsubscribe", "unsubscribe_missing")
    assert finding.message == (
        "promotion campaign of 2500 recipients (bulk threshold 1000) cannot be unsubscribed"
        " from: no List-Unsubscribe header"
    )
