"""The wider test markers: placeholder copy left by a template (INSERT … HERE, TBD, TK),
DRAFT and DO NOT SEND labels, and links to localhost, private addresses and test hosts;
each with the everyday text it must leave alone."""

from __future__ import annotations

from email.message import EmailMessage
from email.policy import SMTP
from pathlib import Path

import pytest

from gateway.mail.content import Document, decode
from gateway.policy.fixtures import CampaignSpec, evaluate
from gateway.policy.registry import default_registry
from gateway.policy.rules.base import Shared
from gateway.policy.rules.test_markers import (
    TestMarkers,
    find_test_links,
    find_test_markers,
    link_marker,
    scan,
)
from tests.policy.factories import load

REGISTRY = default_registry()
MARKERS = TestMarkers(id="t", kind="test_markers")
SHARED = Shared(internal_domains=frozenset({"shop.test"}))


def markers_in(subject: str = "", text: str = "") -> list[str]:
    doc = Document(subject=subject, text=text)
    return [h.detail["marker"] for h in find_test_markers(doc, *MARKERS.compiled)]


def message(text: str, html: str | None = None, sender: str = "news@shop.test") -> bytes:
    mail = EmailMessage()
    mail["From"] = f"Shop <{sender}>"
    mail["To"] = "reader@example.org"
    mail["Subject"] = "Autumn collection"
    mail.set_content(text)
    if html is not None:
        mail.add_alternative(html, subtype="html")
    return mail.as_bytes(policy=SMTP)


# Placeholder copy


@pytest.mark.parametrize(
    ("text", "marker"),
    [
        ("INSERT HEADLINE HERE", "INSERT … HERE"),
        ("[INSERT HERO IMAGE HERE]", "INSERT … HERE"),
        ("Hi Amelia, [Insert intro paragraph here]", "INSERT … HERE"),
        ("[add CTA here]", "INSERT … HERE"),
        ("Dear <insert name here>,", "INSERT … HERE"),
        ("Preheader text goes here", "… goes here"),
        ("Headline goes here", "… goes here"),
        ("Hero image will go here", "… goes here"),
        ("Your headline here", "your … here"),
        ("Save [placeholder: discount] today", "[placeholder]"),
        ("Dolor sit amet, consectetur adipiscing elit.", "lorem ipsum"),
    ],
)
def test_placeholder_copy_a_template_left_behind_is_a_marker(text, marker):
    assert marker in markers_in(text=text)
    assert marker in markers_in(subject=text)


@pytest.mark.parametrize(
    "text",
    [
        "Insert your card here and wait for the beep.",  # prose: not upper case, no brackets
        "Know someone who'd love this? (Add them here)",
        "Where the road goes here, the bikes follow.",
        "Your photo here: upload one to personalise the mug.",
        "INSERTS for the boots are sold HERE separately",
        "Enter the code HERE at checkout.",
    ],
)
def test_prose_with_insert_or_here_is_not_placeholder_copy(text):
    assert markers_in(subject=text, text=text) == []


@pytest.mark.parametrize(
    "text",
    [
        "Hasta el [TBD] de julio, un descuento del [TBD] %.",
        "Date: TBD",
        "Venue:TBD",
        "Doors open (TBD)",
        "Tickets from $TBD",
        "Save TBD% on everything",
        "Price\nTBD\nStock",
        "[TBD: final price]",
    ],
)
def test_tbd_in_brackets_or_as_a_value_is_a_placeholder(text):
    assert "TBD" in markers_in(text=text)


@pytest.mark.parametrize(
    "text",
    [
        "The venue is still TBD; we will write again soon.",  # deliberately said: not a value
        "The date is to be decided by the board in May.",
        "Date: tbd",  # lower case is someone's note, not the template's placeholder
        "TBDX and ATBD are product codes.",
    ],
)
def test_tbd_in_prose_is_not_a_placeholder(text):
    assert markers_in(subject=text, text=text) == []


@pytest.mark.parametrize(
    "text",
    [
        "It arrives in stores on TK and costs TK. Photo credit: TK.",
        "It costs TK, and ships soon.",
        "Photo credit:TK",
        "[TK]",
        "Now only $TK",
        "Launch date TKTK",
        "TK",
        "A new jacket, in stores à TK.",
    ],
)
def test_tk_standing_alone_as_a_value_is_a_placeholder(text):
    assert "TK" in markers_in(text=text)


@pytest.mark.parametrize(
    "text",
    [
        "A TKO in the third round.",
        "Find us next to TK Maxx on the high street.",
        "Turkish Airlines (TK) flies daily to Istanbul.",
        "Your flight TK 1980 leaves at 9:40.",
        "Flight TK1980 is on time.",
        "TK's new store opens Friday.",
        "İstanbul uçuşları TK ile her gün; TÜRK HAVA YOLLARI TK İLE UÇUN.",
        "Tk and tk are not the placeholder; neither is TKTKO.",
    ],
)
def test_tk_inside_names_codes_or_turkish_text_is_not_a_placeholder(text):
    assert markers_in(subject=text, text=text) == []


# DRAFT and DO NOT SEND labels


@pytest.mark.parametrize(
    ("subject", "text", "marker"),
    [
        ("Draft: spring sale", "", "subject starting with DRAFT"),
        ("DRAFT 2 - spring sale", "", "subject starting with DRAFT"),
        ("DRAFT Spring sale", "", "subject starting with DRAFT"),
        ("Spring sale", "[Draft] copy for review", "[DRAFT]"),
        ("Spring sale draft v2", "", "draft v2"),
        ("Spring sale", "File: newsletter_DRAFT_v3.1", "draft v2"),
        ("Spring sale", "DRAFT - NOT FOR DISTRIBUTION", "NOT FOR DISTRIBUTION"),
        ("Spring sale", "FOR INTERNAL USE ONLY", "NOT FOR DISTRIBUTION"),
        ("[DRAFT] Frühlingsangebote – DO NOT SEND", "", "DO NOT SEND"),
    ],
)
def test_draft_and_do_not_send_labels_are_markers(subject, text, marker):
    assert marker in markers_in(subject, text)


@pytest.mark.parametrize(
    ("subject", "text"),
    [
        ("Draft beer festival this Saturday", "Twelve local ales on draft."),
        ("DRAFT DAY DEALS", "Our NFL Draft watch party starts at 8."),
        ("Draft 2026: our picks", "Who goes first in the draft?"),
        ("Spring sale", "We drafted a new returns policy; read the draft on our site."),
        ("Spring sale", "This offer is not for resale. Internal frame, external pockets."),
        ("Spring sale", "Not for distribution outside the EU: see the terms."),
    ],
)
def test_everyday_drafts_and_distribution_are_not_markers(subject, text):
    assert markers_in(subject, text) == []


# Links to localhost, private addresses and test hosts

OWN = frozenset({"shop.test"})


@pytest.mark.parametrize(
    ("host", "marker"),
    [
        ("localhost", "link to localhost"),
        ("shop.localhost", "link to localhost"),
        ("127.0.0.1", "link to localhost"),
        ("127.8.8.8", "link to localhost"),
        ("::1", "link to localhost"),
        ("10.0.3.7", "link to a private address"),
        ("172.20.1.1", "link to a private address"),
        ("192.168.1.20", "link to a private address"),
        ("169.254.10.1", "link to a private address"),
        ("100.64.0.9", "link to a private address"),
        ("0.0.0.0", "link to a private address"),  # noqa: S104 - a link, not a bind
        ("fd12:3456::1", "link to a private address"),
        ("fe80::1", "link to a private address"),
        ("::ffff:10.0.0.1", "link to a private address"),
        ("staging.shop.test", "link to a test host"),
        ("www.staging.shop.test", "link to a test host"),
        ("qa.shop.test", "link to a test host"),
        ("qa2.shop.test", "link to a test host"),
        ("uat-shop.example.com", "link to a test host"),
        ("shop-staging.herokuapp.com", "link to a test host"),
        ("preprod.shop.co.uk", "link to a test host"),
        ("stg.eu.shop.test", "link to a test host"),
        ("dev.shop.test", "link to a test host"),  # dev and test: on the sender's domain
        ("test.shop.test", "link to a test host"),
        ("shop-dev2.shop.test", "link to a test host"),
    ],
)
def test_a_host_no_reader_outside_can_reach_is_a_test_link(host, marker):
    assert link_marker(host, OWN) == marker


@pytest.mark.parametrize(
    "host",
    [
        "shop.test",  # the TLD .test is not a test host
        "cdn.shop.test",
        "devexperts.example",  # a registered name that contains a word is not a label
        "www.devexperts.example",
        "qatar-airways.example",
        "contest-winners.example.com",
        "devon.shop.test",  # nor is a longer word that begins with one
        "latest.shop.test",
        "staging.co.uk",  # the registered name under a country's second level
        "qa.example",
        "dev.shopify.com",  # a partner's developer portal: dev only counts on our own domain
        "test-drive.cars.example",
        "81.2.69.142",
        "8.8.8.8",
        "172.32.0.1",  # just outside 172.16.0.0/12
        "2001:4860:4860::8888",
    ],
)
def test_public_hosts_that_merely_contain_a_test_word_are_not_test_links(host):
    assert link_marker(host, OWN) is None


def test_each_kind_of_test_link_is_reported_once_with_its_host():
    doc = Document(
        html="Shop the sale",
        links=(
            "https://cdn.shop.test/logo.png",
            "http://localhost:3000/products/field-jacket?utm_source=email",
            "http://localhost:3000/collections/autumn",
            "https://staging.shop.test/account/wishlist",
            "mailto:qa@staging.shop.test",
        ),
    )
    hits = find_test_links(doc, OWN)
    assert [(h.where, h.detail["marker"], h.detail["host"]) for h in hits] == [
        ("link", "link to localhost", "localhost"),
        ("link", "link to a test host", "staging.shop.test"),
    ]
    assert hits[0].fragment == "http://localhost:3000/products/field-jacket?utm_source=email"


def test_a_plain_text_message_is_read_for_the_addresses_in_its_text():
    doc = decode(message("See the jacket: http://127.0.0.1:8000/fr/trail.\n\nwww.qa.shop.test/x"))
    assert [h.detail["marker"] for h in scan(MARKERS, doc, SHARED)] == [
        "link to localhost",
        "link to a test host",
    ]


def test_localhost_shown_in_code_samples_is_not_a_link():
    text = "Start it and check it:\n\n    curl -s http://localhost:3000/healthz\n\nDone."
    html = (
        "<p>Start it and check it:</p><pre><code>curl -s http://localhost:3000/healthz"
        "</code></pre><p>Open <code>http://127.0.0.1:4000</code> in a browser.</p>"
        '<a href="https://shop.test/developers">Read the tutorial</a>'
    )
    assert scan(MARKERS, decode(message(text, html)), SHARED) == []
    assert scan(MARKERS, decode(message(text)), SHARED) == []


def test_with_an_html_part_its_link_targets_count_not_the_addresses_in_the_text():
    html = "<p>Our servers never call 10.0.0.1 or localhost.</p><a href='https://shop.test/'>x</a>"
    assert scan(MARKERS, decode(message("Visit http://localhost:3000 later", html)), SHARED) == []


def test_dev_and_test_hosts_count_under_the_senders_or_the_internal_domains():
    doc = decode(message("x", "<a href='https://dev.partner.example/docs'>docs</a>"))
    assert scan(MARKERS, doc, SHARED) == []
    ours = decode(message("x", "<a href='https://dev.partner.example/'>x</a>", "a@partner.example"))
    assert [h.detail["host"] for h in scan(MARKERS, ours, SHARED)] == ["dev.partner.example"]
    internal = TestMarkers(id="t", kind="test_markers", domains=["partner.example"])
    assert [h.detail["marker"] for h in scan(internal, doc, SHARED)] == ["link to a test host"]


def test_public_hosts_and_links_false_let_an_operator_pass_a_host_or_all_links():
    doc = decode(message("x", "<a href='https://staging.partner.example/'>x</a>"))
    assert scan(MARKERS, doc, SHARED)
    public = TestMarkers(id="t", kind="test_markers", public_hosts=["Partner.example."])
    assert scan(public, doc, SHARED) == []
    assert scan(TestMarkers(id="t", kind="test_markers", links=False), doc, SHARED) == []


def test_a_localhost_link_holds_outside_recipients_and_passes_internal_ones(tmp_path: Path):
    rules = "  - {id: test-markers, kind: test_markers}\n"
    (tmp_path / "p.yaml").write_text(f"version: 1\ninternal_domains: [shop.test]\nrules:\n{rules}")
    policies = load(tmp_path)
    content = message("x", "<a href='http://localhost:3000/sale'>Shop the sale</a>")
    [finding] = evaluate(policies, content, CampaignSpec(), registry=REGISTRY)
    assert finding.kind == "test_send"
    assert "link to localhost: 'http://localhost:3000/sale' in a link" in finding.message
    assert finding.evidence["markers"][0]["host"] == "localhost"
    internal = CampaignSpec(recipients=["qa@shop.test"])
    assert evaluate(policies, content, internal, registry=REGISTRY) == ()


@pytest.mark.parametrize(
    ("link", "host"),
    [
        ("HTTP://LOCALHOST./sale", "localhost"),
        ("http://preview@localhost:3000/sale", "localhost"),
        ("//10.0.0.5/hero.png", "10.0.0.5"),
        ("https://[::1]:8080/", "::1"),
        ("www.staging.shop.test/sale", "www.staging.shop.test"),
        ("https://qa.shop.test\\@shop.test/", "qa.shop.test"),
    ],
)
def test_the_host_is_read_from_every_form_of_web_link(link, host):
    [hit] = find_test_links(Document(html="x", links=(link,)), OWN)
    assert hit.detail["host"] == host


@pytest.mark.parametrize(
    "link",
    [
        "mailto:qa@staging.shop.test",
        "tel:+44100",
        "cid:logo@localhost",
        "/relative/path",
        "*|UNSUB|*",
    ],
)
def test_targets_that_are_not_web_links_are_not_read(link):
    assert find_test_links(Document(html="x", links=(link,)), OWN) == []
