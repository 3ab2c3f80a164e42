"""First-name sign-offs match only as the sender's own closing (the `signature` rule).

A first name ("Jane", "Biz") counts when the sender signs with it: a valediction in any
language the rule reads, a dash line or the signature block, at the end of the letter,
the name alone on its line or followed by a title. Not the same first name with another
surname, a testimonial's attribution, a name inside a product or team name, or a closing
in the middle of the message. Full names, addresses and the From display name match
wherever they are.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.mail.content import Document
from gateway.policy.fixtures import CampaignSpec, evaluate
from gateway.policy.registry import default_registry
from gateway.policy.rules.base import Identity, Shared
from gateway.policy.rules.closings import closings, signers
from gateway.policy.rules.signature import Signature, scan
from tests.policy.factories import load

SHARED = Shared(
    identities=(
        Identity(
            id="ceo", name="Jane Doe", addresses=["jane@shop.test"], signoffs=["Jane", "Jane Doe"]
        ),
        Identity(id="founders", signoffs=["Biz", "Ev", "Jack"]),
    )
)
RULE = Signature(id="signature", kind="signature")
FOOTER = (
    "\n\n--\nYou're receiving this because you subscribed at shop.test.\n"
    "Unsubscribe: https://shop.test/u/x\nShop Ltd · 1 Market Street · Springfield\n"
)
HTML_FOOTER = (
    "\n\nYou're receiving this because you subscribed at shop.test.\n\n"
    "Unsubscribe | Manage preferences\n\nShop Ltd · 1 Market Street · Springfield"
)
LETTER = "Hi Sam,\n\nTen years ago we opened our first shop. Thank you for being with us.\n\n"


def signed_as(body: str, from_name: str = "Shop", sender: str = "news@shop.test") -> set[str]:
    doc = Document(subject="News", from_name=from_name, senders=(("from", sender),), text=body)
    return {str(hit.detail["identity"]) for hit in scan(RULE, doc, SHARED)}


def read_as_own(body: str) -> bool:
    """Tell whether a protected name is in the sender's own closing (a pass is no miss)."""
    own = "\n".join(c.names for c in closings(body) if c.own).casefold()
    return any(name in own for name in ("jane", "biz", "ev", "jack"))


@pytest.mark.parametrize(
    ("closing", "identity"),
    [
        ("Best,\nJane", "ceo"),
        ("Cheers,\nEv", "founders"),
        ("Thanks, Biz, Ev & Jack", "founders"),
        ("— Biz", "founders"),
        ("-Jack", "founders"),
        ("Best,\nJane\nCEO, Shop", "ceo"),
        ("Best, Jane, CEO", "ceo"),
        ("Warm regards,\nJane Doe\nCEO, Shop", "ceo"),
        ("cheers,\njack", "founders"),
        ("Thanks Jack", "founders"),
        ("Cheers,\nBiz\nEv", "founders"),
        ("Love,\nJack and the Shop team", "founders"),
        ("Cheers,\nJack 🙂", "founders"),
        ("Cheers,\nJack\n\nP.S. The sale ends on Friday.", "founders"),
        ("Cheers,\nJack\n\nThanks for reading!", "founders"),
        ("Cheers,\nJack\n\n-- \nJack\nCo-founder, Shop", "founders"),
    ],
)
def test_a_first_name_closing_the_letter_signs_as_its_identity(closing, identity):
    assert signed_as(LETTER + closing + FOOTER) == {identity}


@pytest.mark.parametrize(
    ("closing", "identity"),
    [
        ("Un abrazo,\nJane Doe", "ceo"),  # es
        ("Saludos,\nJane", "ceo"),
        ("Un saludo,\nJane y el equipo de Shop", "ceo"),
        ("Viele Grüße\nJack", "founders"),  # de
        ("Mit freundlichen Grüßen\n\nJack", "founders"),
        ("Liebe Grüße,\nJack und das Shop-Team", "founders"),
        ("Bien à vous,\nJack", "founders"),  # fr
        ("Cordialement,\nBiz\nCo-fondateur, Shop", "founders"),
        ("Um abraço,\nEv", "founders"),  # pt
        ("Atenciosamente,\nJane", "ceo"),
        ("Cordiali saluti,\nJane", "ceo"),  # it
        ("Un caro saluto,\nEv", "founders"),
        ("Met vriendelijke groet,\nJack", "founders"),  # nl
        ("Hartelijke groeten,\nJane", "ceo"),
        ("Vänliga hälsningar,\nEv", "founders"),  # sv
        ("Vennlig hilsen\nBiz", "founders"),  # nb
        ("Pozdrawiam,\nJane", "ceo"),  # pl
    ],
)
def test_closings_in_other_languages_sign_as_their_identity(closing, identity):
    assert signed_as(LETTER + closing + FOOTER) == {identity}


@pytest.mark.parametrize(
    "closing",
    [
        "Happy shopping,\nJack",
        "See you on the trail,\nEv",
        "Merci d'avance,\nJane",
        "Bons treinos,\nBiz",
    ],
)
def test_a_short_line_ending_in_a_comma_over_a_name_is_a_valediction_too(closing):
    assert signed_as(LETTER + closing + FOOTER) != set()


def test_a_closing_followed_by_an_html_footer_without_a_delimiter_signs():
    assert signed_as(LETTER + "Cheers,\n\nEv" + HTML_FOOTER) == {"founders"}


@pytest.mark.parametrize(
    "closing",
    [
        "Best wishes,\nJane Miller\nCustomer Success Manager, Shop for Teams",
        "Thanks, Jane Smith",
        "— Jane Smith, Operations Director, Acme Corp",
        "Saludos,\nJane Smith",  # es
        "Viele Grüße\nJack Müller",  # de
        "Cordialement,\nJane Martin",  # fr
        "Cordiali saluti,\nJane Rossi",  # it
        "Met vriendelijke groet,\nJack de Vries",  # nl
        "Um abraço,\nEv Santos",  # pt
    ],
)
def test_the_same_first_name_with_another_surname_is_someone_else(closing):
    assert read_as_own(LETTER + closing + FOOTER)
    assert signed_as(LETTER + closing + FOOTER) == set()


@pytest.mark.parametrize(
    "closing",
    [
        "Kind regards,\nThe Shop Biz team",
        "Cheers,\nJack's Steakhouse team",
        "Good luck!\n\nBest,\nThe Jackpot crew",
        "Best,\nThe EV team",
        "Viele Grüße,\nDas Biz-Team",
        "Thanks,\nJane-Marie",
        "Best,\nShop\nHead of Growth, Jackson & Co",
    ],
)
def test_a_name_inside_a_team_or_product_name_or_a_longer_word_is_not_a_sign_off(closing):
    assert read_as_own(LETTER + closing + FOOTER)
    assert signed_as(LETTER + closing + FOOTER) == set()


@pytest.mark.parametrize(
    "body",
    [
        # A testimonial attributed to a first name, under its quoted passage.
        LETTER + "“We outfitted 300 people in two weeks.”\n— Jane, Leeds" + FOOTER,
        LETTER + "«Un service impeccable.»\n\n— Jack, Lyon" + FOOTER,  # fr, HTML-shaped
        LETTER + "„Schnell und einfach.“\n— Ev, Freiburg" + FOOTER,  # de
        # The attribution mid-message, then the team's closing.
        LETTER + "“Sorted without a single email.”\n— Jane, Acme Corp\n\nBest regards,\n"
        "The Shop team" + FOOTER,
        # A passage in quotation marks that itself ends with a closing.
        LETTER + "Her note read: “Thanks for everything,\nJane”\n\nBest,\nThe Shop team" + FOOTER,
    ],
)
def test_a_testimonials_attribution_is_not_the_senders_closing(body):
    assert signed_as(body) == set()


@pytest.mark.parametrize(
    "body",
    [
        LETTER + "— Jack\n\nNew this week: linen shirts and trail shoes.\n\n"
        "Best,\nThe Shop team" + FOOTER,
        LETTER + "> Thanks,\n> Jane\n\nBest,\nThe Shop team" + FOOTER,
        LETTER + "Best,\nThe Shop team\n\n> Cheers,\n> Jack" + FOOTER,
        "Jack started the company ten years ago.\n\nThe Shop team" + FOOTER,
        "If you'd like Jane or one of her colleagues to help, reply.\n\nThe Shop team",
    ],
)
def test_a_first_name_outside_the_senders_closing_is_not_a_sign_off(body):
    assert signed_as(body) == set()


def test_a_valediction_like_line_ends_the_letter_so_an_earlier_closing_is_not_the_senders():
    body = LETTER + "— Jack\n\nNew this week: trail shoes.\n\nHappy shopping,\nThe Shop team"
    assert signed_as(body + FOOTER) == set()


@pytest.mark.parametrize(
    "body",
    [
        "Dear Jack,\nYour order has shipped.\n\nThe Shop team",  # a greeting
        LETTER + "Visit us at\nShop Ltd,\n1 Market Street,\nSpringfield",  # an address
        LETTER + "Shop now!\nJack's Steakhouse gift card included",  # a call to action
    ],
)
def test_a_greeting_an_address_or_a_call_to_action_is_not_a_closing(body):
    assert closings(body) == []


@pytest.mark.parametrize(
    "body",
    [
        # Mid-message, with the team's closing after it.
        LETTER + "Warm regards,\nJane Doe\n\nNew this week: linen shirts.\n\n"
        "Best,\nThe Shop team" + FOOTER,
        # A quotation attributed to her.
        LETTER + "“Repair beats replace.”\n— Jane Doe, CEO\n\nBest,\nThe Shop team" + FOOTER,
        # Alone on its line, without a valediction.
        LETTER + "Jane Doe\nCEO, Shop" + FOOTER,
    ],
)
def test_a_full_name_signs_wherever_it_closes(body):
    assert signed_as(body) == {"ceo"}


def test_a_full_name_in_prose_is_a_mention_not_a_sign_off():
    body = "Our CEO Jane Doe opens the new store on Saturday.\n\nThe Shop team" + FOOTER
    assert signed_as(body) == set()


def test_addresses_and_the_from_display_name_match_whatever_the_closing():
    body = LETTER + "Kind regards,\nThe Shop Biz team" + FOOTER
    assert signed_as(body, sender="jane@shop.test") == {"ceo"}
    assert signed_as(body, from_name="Jane Doe at Shop") == {"ceo"}


def test_the_identitys_name_signs_when_its_only_sign_off_is_the_first_name():
    shared = Shared(identities=(Identity(id="ceo", name="Jane Doe", signoffs=["Jane"]),))
    doc = Document(text=LETTER + "Best regards,\nJane Doe" + FOOTER)
    assert {h.detail["identity"] for h in scan(RULE, doc, shared)} == {"ceo"}


def test_only_the_letters_last_closing_is_the_senders_own():
    body = LETTER + "— Jack\n\nMore news.\n\nCheers,\nEv" + FOOTER
    assert [(c.names.split("\n")[0], c.own) for c in closings(body)] == [
        ("Jack", False),
        ("Ev", True),
        ("You're receiving this because you subscribed at shop.test.", True),
    ]


def test_lines_under_the_signature_delimiter_do_not_end_the_letter():
    body = LETTER + "Cheers,\nJack\n\n-- \nRegistered in England,\nCompany No. 1234"
    assert signed_as(body) == {"founders"}


@pytest.mark.parametrize(
    ("line", "people"),
    [
        ("Biz, Ev & Jack", ["biz", "ev", "jack"]),
        ("Jack und das Shop-Team", ["jack", "das shop-team"]),
        ("Jane y el equipo", ["jane", "el equipo"]),
        ("Jane Miller", ["jane miller"]),
        ("The Shop Biz team", ["the shop biz team"]),
        ("Jack's Steakhouse", ["jack's steakhouse"]),
        ("— Jane (CEO)!", ["jane", "ceo"]),
        ("@jane", ["@jane"]),
    ],
)
def test_signers_are_the_people_a_name_line_names(line, people):
    assert signers(line) == people


POLICY = """\
version: 1
identities:
  - {id: ceo, name: Jane Doe, addresses: [jane@shop.test], signoffs: [Jane, Jane Doe]}
  - {id: founders, signoffs: [Biz, Ev, Jack]}
rules:
  - {id: signature, kind: signature, bulk_threshold: 100}
"""


def test_a_bulk_campaign_signed_by_another_jane_passes_and_by_jane_is_held(tmp_path: Path):
    (tmp_path / "p.yaml").write_text(POLICY)
    policies = load(tmp_path)
    spec = CampaignSpec(received=5000)
    other = f"Subject: Welcome\r\n\r\n{LETTER}Best wishes,\r\nJane Miller\r\n".encode()
    assert evaluate(policies, other, spec, registry=default_registry()) == ()
    hers = f"Subject: Welcome\r\n\r\n{LETTER}Best wishes,\r\nJane\r\n".encode()
    [finding] = evaluate(policies, hers, spec, registry=default_registry())
    assert finding.kind == "signoff_required"
