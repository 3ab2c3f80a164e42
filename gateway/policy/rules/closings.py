"""The closings of a message body: the lines where a sender signs.

Owns what the signature rule reads as a closing: a valediction ("Best regards,", "Un
abrazo,", "Viele Grüße", "Met vriendelijke groet", ...) with the names on its line or the
short lines under it, a dash line ("— Jack"), the lines after a `-- ` signature delimiter.
It knows no identities.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass

# Valedictions a closing line starts with, by language.
VALEDICTIONS = {
    "en": (
        "many thanks|thanks so much|thanks again|thanks a lot|thank you|thanks|with thanks|"
        "best wishes|with best wishes|best regards|kind regards|kindest regards|"
        "warm regards|warmest regards|warm wishes|regards|all the best|all best|best|"
        "cheers|sincerely|yours sincerely|sincerely yours|yours faithfully|yours truly|"
        "yours|warmly|with love|love|talk soon|speak soon|see you soon|until next time|"
        "take care|with gratitude|respectfully|xoxo"
    ),
    "es": (
        "gracias|muchas gracias|saludos|saludos cordiales|un saludo|un cordial saludo|"
        "un saludo cordial|atentamente|cordialmente|un abrazo|un fuerte abrazo|abrazos|"
        "besos|con cariño|hasta pronto|nos vemos"
    ),
    "de": (
        "viele grüße|viele grüsse|liebe grüße|liebe grüsse|beste grüße|beste grüsse|"
        "herzliche grüße|herzliche grüsse|freundliche grüße|freundliche grüsse|"
        "mit freundlichen grüßen|mit freundlichen grüssen|mit besten grüßen|schöne grüße|"
        "herzlichst|bis bald|danke|vielen dank"
    ),
    "fr": (
        "merci|merci beaucoup|cordialement|bien cordialement|bien à vous|à bientôt|"
        "à très vite|amitiés|amicalement|bises|salutations|sincères salutations|"
        "meilleures salutations|chaleureusement|belle journée|bonne journée"
    ),
    "pt": (
        "obrigado|obrigada|muito obrigado|muito obrigada|abraço|abraços|um abraço|"
        "um grande abraço|beijos|um beijo|atenciosamente|cumprimentos|saudações|até breve|"
        "até logo"
    ),
    "it": (
        "grazie|grazie mille|cordiali saluti|distinti saluti|saluti|un saluto|"
        "un caro saluto|un abbraccio|a presto|buona giornata"
    ),
    "nl": (
        "met vriendelijke groet|met vriendelijke groeten|vriendelijke groet|"
        "vriendelijke groeten|met hartelijke groet|hartelijke groet|hartelijke groeten|"
        "groeten|groetjes|groet|tot snel|tot ziens|bedankt|dank je wel|dank u wel|liefs"
    ),
    "sv, nb, da": (
        "med vänliga hälsningar|vänliga hälsningar|hälsningar|mvh|tack|kram|"
        "med vennlig hilsen|vennlig hilsen|med venlig hilsen|venlig hilsen|hilsen|takk|tak"
    ),
    "pl": ("pozdrawiam|serdecznie pozdrawiam|z pozdrowieniami|z poważaniem|dziękuję"),
}
_PHRASES = sorted(
    {p for group in VALEDICTIONS.values() for p in group.split("|")}, key=len, reverse=True
)
# Longest first, so "saludos cordiales" is not read as "saludos" signed by "cordiales".
_CLOSING = re.compile(
    r"^(?:" + "|".join(r"\s+".join(map(re.escape, p.split())) for p in _PHRASES) + r")\b"
    r"[\s,.!:;—–-]*(.*)$",
    re.IGNORECASE,
)
# "— Jack", "-- Jane", "~ Ev", "-Jack"; "- item" with a blank is a list, not a closing.
_DASH = re.compile(r"^(?:(?:—|–|--|~)\s*|-(?=[A-Z]))(\S.{0,60})$")
_SIG_DELIMITER = "-- "
NAME_LINE = 60  # a line longer than this is prose, not a name under a closing
NAMES_AFTER = 2  # lines after a closing phrase that may hold the names


@dataclass(frozen=True, slots=True)
class Closing:
    """A closing of the body: its lines as written, and the part that may hold names."""

    text: str
    names: str


def closings(body: str) -> Iterator[Closing]:
    """Yield the sign-off regions of a body: a closing phrase and the names under it."""
    lines = [line.strip() for line in body.split("\n")]
    for index, line in enumerate(lines):
        if line == _SIG_DELIMITER.strip():
            after = "\n".join(entry for entry in lines[index + 1 : index + 4] if entry)
            yield Closing(after, after)
        elif dash := _DASH.match(line):
            yield Closing(line, dash.group(1))
        elif closing := _CLOSING.match(line):
            rest = closing.group(1).strip()
            if len(rest) > NAME_LINE or (rest and not _looks_like_names(rest)):
                continue  # "Thanks for reading our newsletter this week!" is prose
            names = _names_under([rest] if rest else [], lines[index + 1 :])
            if names:
                yield Closing(" / ".join([line, *names[1 if rest else 0 :]]), "\n".join(names))


def _names_under(names: list[str], following: list[str]) -> list[str]:
    """Add the short lines under a closing phrase ("Jane Doe", "Co-founder") to `names`."""
    for line in following:
        if not line:
            if names:
                break
            continue
        if len(line) > NAME_LINE or len(names) > NAMES_AFTER:
            break
        names.append(line)
    return names


def _looks_like_names(text: str) -> bool:
    """Tell whether the rest of a closing line reads as names ("Biz, Ev & Jack")."""
    return not re.search(r"[.?]\s|[?]$", text) and len(text.split()) <= 8
