"""The closings of a message body: where its sender signs, and where someone else is named.

Owns what the signature rule reads as a closing: a valediction ("Best regards,", "Un
abrazo,", "Viele Grüße", "Met vriendelijke groet", ...) with the names on its line or the
short lines under it, a short line ending in a comma over a name ("Happy shopping," / "The
Shop team"), a dash line ("— Jack"), the lines after a `-- ` signature delimiter.
Each closing says whether it is the sender's own: the signature block, or the last closing
of the letter that is neither quoted (`>` replies, a passage inside quotation marks) nor a
testimonial's attribution ("— Jane Smith, Acme Corp" under a quoted passage). `signers`
splits a name line into the people it names ("Biz, Ev & Jack"). It knows no identities.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, replace

# Valedictions a closing line starts with, by language. Many are also ordinary words
# ("Best", "Love", "Danke"), so a valediction counts only when names or nothing follow it.
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
    r"([\s,.!:;—–-]*)(.*)$",
    re.IGNORECASE,
)
# "— Jack", "-- Jane", "~ Ev", "-Jack"; "- item" with a blank is a list, not a closing, and
# a rule of dashes ("———") names nobody.
_DASH = re.compile(r"^(?:(?:—|–|--|~)\s*|-(?=[A-Z]))(?=.*[^\W\d_])(\S.{0,60})$")
_DASHES = frozenset("—–-~")
_SIG_DELIMITER = "--"  # "-- " (RFC 3676), its trailing blank often lost on the way
_QUOTES = {"“": "”", "„": "“”", "«": "»", "‹": "›", "「": "」", "『": "』", '"': '"'}
_QUOTE_MARK = re.compile(r'[“”„«»‹›「」『』]|(?<!\d)"')  # 27" is a size, not a quote
_ENDS_QUOTE = re.compile(r"[”»›」』\"“][\s.,;:!?)…]*$")
_SIGNERS = re.compile(
    r"\s*(?:[,;&+/|·•()\[\]]|\s[—–-]\s|\s(?:and|y|e|et|und|en|og|och|i|oraz)\s)\s*",
    re.IGNORECASE,
)
# A line like a valediction ("Happy shopping,", "Merci d'avance,").
_LIKE_VALEDICTION = re.compile(r"^[^\W\d_][^.?!:;,]{0,40},$")
LIKE_WORDS = 5  # words of a line that reads as a valediction without being a known one
NAME_LINE = 60  # a line longer than this is prose, not a name under a closing
NAMES_AFTER = 2  # lines after a closing phrase that may hold the names
LONGEST = 100  # a line longer than this is prose, not a closing (a phrase and names)
NAME_SEARCH = 20  # lines looked at under a closing phrase, blank ones included


@dataclass(frozen=True, slots=True)
class Closing:
    """A closing of the body: its lines as written, the name lines, and whose it is.

    `names` holds the name lines, the signer's first; `own` tells whether this is the
    sender's own closing (the signature block, or the letter's last unquoted closing).
    """

    text: str
    names: str
    own: bool = True


@dataclass(frozen=True, slots=True)
class _Found:
    closing: Closing
    line: int
    kind: str  # "delimiter", "valediction" or "dash"
    quoted: bool  # in a `>` reply or a passage in quotation marks, or attributing one


def closings(body: str) -> list[Closing]:
    """Return the sign-off regions of a body, each marked as the sender's own or not."""
    lines = [line.strip() for line in body.split("\n")]
    replies = {index for index, line in enumerate(lines) if line.startswith(">")}
    lines = [line.lstrip("> ").strip() if line.startswith(">") else line for line in lines]
    found = list(_find(lines, replies))
    ends = [f.line for f in found if f.kind == "delimiter" and not f.quoted]
    letter = [f for f in found if f.kind != "delimiter" and not f.quoted]
    # The sender's closing ends the letter: the last one above the (last) signature
    # delimiter, under which a footer may have lines that read like one.
    above = [f for f in letter if not ends or f.line < ends[-1]] or letter
    last = above[-1].line if above else None
    return [
        Closing(
            f.closing.text,
            f.closing.names,
            own=not f.quoted and (f.kind == "delimiter" or f.line == last),
        )
        for f in found
    ]


def _find(lines: list[str], replies: set[int]) -> Iterator[_Found]:
    """Yield every closing of the lines, where it starts and what it is."""
    for index, line in enumerate(lines):
        if len(line) > LONGEST:
            continue  # prose
        if line == _SIG_DELIMITER:
            after = "\n".join(entry for entry in lines[index + 1 : index + 4] if entry)
            found = _Found(Closing(after, after), index, "delimiter", quoted=False)
        elif line[:1] in _DASHES and (dash := _DASH.match(line)):
            attributes = _ENDS_QUOTE.search(_previous(lines, index)) is not None
            found = _Found(Closing(line, dash.group(1)), index, "dash", quoted=attributes)
        elif names := _valediction(lines, index):
            under = names[1:] if line.endswith(names[0]) else names  # "Thanks, Biz, Ev & Jack"
            text = " / ".join([line, *under])
            found = _Found(Closing(text, "\n".join(names)), index, "valediction", quoted=False)
        else:
            continue
        if index in replies or _in_quotation(lines, index):
            found = replace(found, quoted=True)
        yield found


def _valediction(lines: list[str], index: int) -> list[str]:
    """Return the name lines of a valediction line and the lines under it, or [].

    A known valediction ("Best regards,", "Un abrazo,") takes names on its line or under
    it. Any other short line ending in a comma ("Happy shopping,", "Merci d'avance,")
    is one when a capitalised name line follows it ("The Shop team", "Jane").
    """
    line = lines[index]
    if closing := _CLOSING.match(line):
        following = lines[index + 1 : index + 1 + NAME_SEARCH]
        rest = closing.group(2).strip()
        if not rest:
            return _names_under([], following)
        if _looks_like_names(rest, closing.group(1)):
            return _names_under([rest], following)
    if line.endswith(",") and _LIKE_VALEDICTION.match(line) and len(line.split()) <= LIKE_WORDS:
        names = _names_under([], lines[index + 1 : index + 1 + NAME_SEARCH])
        if names and _name_line(names[0]):
            return names
    return []


def _previous(lines: list[str], index: int) -> str:
    """Return the nearest non-empty line above `index`, or ''."""
    return next((line for line in reversed(lines[:index]) if line), "")


def _in_quotation(lines: list[str], index: int) -> bool:
    """Tell whether a line starts inside a passage in quotation marks (“…”, «…», „…“).

    A quotation that is not closed ends with its paragraph, so a stray mark cannot make
    the rest of the message a quote.
    """
    start = index
    while start and lines[start - 1]:
        start -= 1
    closer = ""
    for line in lines[start:index]:
        for char in _QUOTE_MARK.findall(line):
            if closer and char in closer:
                closer = ""
            elif not closer and char in _QUOTES:
                closer = _QUOTES[char]
    return bool(closer)


def _names_under(names: list[str], following: list[str]) -> list[str]:
    """Add the short lines under a closing phrase ("Jane Doe", "Co-founder") to `names`."""
    for line in following:
        if line == _SIG_DELIMITER:
            break
        if not line:
            if names:
                break
            continue
        if len(line) > NAME_LINE or len(names) > NAMES_AFTER:
            break
        names.append(line)
    return names


def _name_line(line: str) -> bool:
    """Tell whether a line under a valediction-like line reads as a name ("Jane Doe")."""
    return line[0].isalpha() and not line[0].islower() and line[-1] not in ".:?"


def _looks_like_names(text: str, separator: str) -> bool:
    """Tell whether the rest of a closing line reads as names ("Biz, Ev & Jack").

    Without punctuation between them, a valediction and a lower-case word are prose
    ("Thanks for reading", "Best sellers"), not a closing.
    """
    if len(text) > NAME_LINE or re.search(r"[.?]\s|[?]$", text) or len(text.split()) > 8:
        return False
    return bool(separator.strip(" -")) or not text[0].islower()


def signers(line: str) -> list[str]:
    """Return the people a name line names: "Biz, Ev & Jack" is Biz, Ev and Jack.

    Each is stripped of the punctuation around it ("Jack!", "(Jane)"), not of what makes
    it another name: "Jane Miller", "The Shop Biz team" and "Jack's" stay whole.
    """
    parts = (re.sub(r"^[^\w@]+|\W+$", "", part) for part in _SIGNERS.split(line))
    return [" ".join(part.split()).casefold() for part in parts if part]
