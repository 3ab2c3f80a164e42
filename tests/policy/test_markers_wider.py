"""The wider test markers: placeholder copy left by a template (INSERT … HERE, TBD, TK),
DRAFT and DO NOT SEND labels; each with the everyday text it must leave alone."""

from __future__ import annotations

import pytest

from gateway.mail.content import Document
from gateway.policy.rules.test_markers import (
    TestMarkers,
    find_test_markers,
)

MARKERS = TestMarkers(id="t", kind="test_markers")


def markers_in(subject: str = "", text: str = "") -> list[str]:
    doc = Document(subject=subject, text=text)
    return [h.detail["marker"] for h in find_test_markers(doc, *MARKERS.compiled)]


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
