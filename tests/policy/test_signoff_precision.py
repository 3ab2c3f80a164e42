"""Sign-offs the `signature` rule reads: closings in the languages it knows."""

from __future__ import annotations

import pytest

from gateway.mail.content import Document
from gateway.policy.rules.base import Identity, Shared
from gateway.policy.rules.signature import Signature, scan

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
LETTER = "Hi Sam,\n\nTen years ago we opened our first shop. Thank you for being with us.\n\n"


def signed_as(body: str, from_name: str = "Shop", sender: str = "news@shop.test") -> set[str]:
    doc = Document(subject="News", from_name=from_name, senders=(("from", sender),), text=body)
    return {str(hit.detail["identity"]) for hit in scan(RULE, doc, SHARED)}


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
