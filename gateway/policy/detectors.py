"""Content detectors: pure functions that find things in a decoded message.

Each detector takes compiled patterns and a `Document` (gateway/content.py) and returns
`ContentHit`s with the exact fragment and where it was (subject, from_name, text, html,
link). They know nothing of campaigns: whether a hit becomes a finding is decided later,
inside the spool transaction, by the checks in `content_checks` and `signature`.

The defaults below are what the shipped rules use. They were chosen not to fire on
ordinary prose, CSS or code samples (tests/corpus holds the mails that prove it): code
samples never reach these detectors, and the greeting check needs a blank before the
comma (`Hi ,`), which no language's punctuation puts there.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from gateway.content import ContentHit, Document

FRAGMENT = 80  # characters of context a hit keeps around a match, at most

# Template syntaxes of DESIGN.md §3, with the systems that use them.
DEFAULT_MERGE_TAGS: dict[str, str] = {
    "handlebars": r"\{\{\{?[^{}\n]{1,100}\}\}\}?",  # {{FirstName}} Mustache, Liquid, Jinja, HubL
    "jinja-tag": r"\{%-?[^%\n]{1,100}-?%\}",  # {% if %} Liquid, Jinja
    "mailchimp": r"\*\|[A-Za-z0-9_:\- ]{1,60}\|\*",  # *|FNAME|*
    "ampscript": r"%%=?[A-Za-z_@][\w.\-:()@,\[\]\" ]{0,60}=?%%",  # %%First_Name%% Salesforce MC
    "salesforce": r"\{![A-Za-z$][\w.:]{0,60}\}",  # {!Contact.FirstName}
    "dollar-brace": r"\$\{[A-Za-z_][\w.\-\[\]'\" ]{0,60}\}",  # ${name} FreeMarker, JS
    "double-bracket": r"\[\[[A-Za-z_][\w .\-:]{0,60}\]\]",  # [[name]]
    "mailgun": r"%recipient(?:[._][\w-]{1,40})?%",  # %recipient.first%
    "campaign-monitor": r"(?i:\[(?:firstname|lastname|fullname|email)(?:,\s*fallback=[^\]\n]{0,40})?\])",
}
# Greetings that, followed by a blank and a comma, show a personalisation that rendered empty.
DEFAULT_GREETINGS = (
    "hi",
    "hello",
    "hey",
    "dear",
    "greetings",
    "hallo",
    "liebe",
    "lieber",
    "hola",
    "estimado",
    "estimada",
    "querido",
    "querida",
    "bonjour",
    "salut",
    "cher",
    "chère",
    "ciao",
    "caro",
    "cara",
    "olá",
    "oi",
    "hej",
    "beste",
)


@dataclass(frozen=True, slots=True)
class Marker:
    """A compiled test-send marker and where it counts (subject, body or any)."""

    name: str
    pattern: re.Pattern[str]
    where: str


# Test-send markers: strong signals only, because ordinary mail says "test" too.
DEFAULT_MARKERS: tuple[tuple[str, str, str, bool], ...] = (
    # (name, regular expression, where, case-sensitive); the most specific first
    ("Integration Test Email", r"\bintegration test (?:e-?mail|message)\b", "any", False),
    ("[TEST] or (test)", r"^\W*[\[(]\s*test(?:ing)?\s*[\])]", "subject", False),
    ("subject starting with test", r"^\s*test(?:ing)?\s*(?:[:#|\-–—]|\d|$)", "subject", False),
    ("[DRAFT]", r"[\[(]\s*draft\s*[\])]", "subject", False),
    ("test email", r"\btest[ -](?:e-?mail|message|send|mail|campaign|blast)\b", "subject", False),
    ("[TEST]", r"\[\s*test\s*\]", "any", False),
    ("lorem ipsum", r"\blorem ipsum\b", "any", False),
    ("DO NOT SEND", r"\bDO NOT (?:SEND|USE|DISTRIBUTE)\b", "any", True),
    (
        "this is a test email",
        r"\bthis is (?:just |only )?a test (?:e-?mail|message|send)\b",
        "any",
        False,
    ),
    ("test test", r"\btest,? test\b", "any", False),
)


@dataclass(frozen=True, slots=True)
class Phrase:
    """A seasonal phrase and the yearly window (month, day) in which it may be sent."""

    phrase: str
    start: tuple[int, int]
    end: tuple[int, int]


# (phrase, from MM-DD, until MM-DD): inclusive, a window may wrap over the new year.
DEFAULT_PHRASES: tuple[tuple[str, str, str], ...] = (
    ("Happy New Year", "12-20", "01-15"),
    ("Feliz Año Nuevo", "12-20", "01-15"),
    ("Frohes neues Jahr", "12-20", "01-15"),
    ("Bonne année", "12-20", "01-31"),
    ("Felice anno nuovo", "12-20", "01-15"),
    ("Feliz Ano Novo", "12-20", "01-15"),
    ("Merry Christmas", "11-15", "12-31"),
    ("Feliz Navidad", "11-15", "01-06"),
    ("Frohe Weihnachten", "11-15", "12-31"),
    ("Joyeux Noël", "11-15", "12-31"),
    ("Buon Natale", "11-15", "12-31"),
    ("Happy Holidays", "11-15", "01-06"),
    ("Season's Greetings", "11-15", "01-06"),
    ("Happy Thanksgiving", "11-01", "11-30"),
    ("Black Friday", "10-25", "12-02"),
    ("Cyber Monday", "11-01", "12-05"),
    ("Happy Easter", "03-10", "04-30"),
    ("Frohe Ostern", "03-10", "04-30"),
    ("Happy Halloween", "10-01", "11-01"),
    ("Happy Valentine's Day", "02-01", "02-15"),
)

_APOSTROPHES = str.maketrans({"’": "'", "‘": "'", "ʼ": "'"})


def fragment(text: str, start: int, end: int) -> str:
    """Return the matched text, shortened when it is long."""
    found = text[start:end]
    if len(found) > FRAGMENT:
        return found[: FRAGMENT - 1] + "…"
    return found


def context(text: str, start: int, end: int, around: int = 25) -> str:
    """Return the match with a little of the text around it, on one line."""
    left = max(0, start - around)
    snippet = text[left : min(len(text), end + around)]
    return (
        ("…" if left else "")
        + " ".join(snippet.split())
        + ("…" if end + around < len(text) else "")
    )


def merge_tags(doc: Document, patterns: Sequence[tuple[str, re.Pattern[str]]]) -> list[ContentHit]:
    """Find unrendered template tags in every visible field of the message."""
    return [
        ContentHit(
            "merge_tag",
            where,
            fragment(text, *match.span()),
            {"syntax": name, "context": context(text, *match.span())},
        )
        for where, text in doc.fields()
        for name, pattern in patterns
        for match in pattern.finditer(text)
    ]


def greeting_pattern(greetings: Iterable[str]) -> re.Pattern[str]:
    """`Hi ,` / `Dear  ,`: a greeting, a blank where the name should be, and a comma."""
    words = "|".join(re.escape(g) for g in sorted(greetings, key=len, reverse=True))
    return re.compile(rf"(?<![\w'])(?:{words})[ \t\u00a0]+,", re.IGNORECASE)


def empty_greetings(doc: Document, pattern: re.Pattern[str]) -> list[ContentHit]:
    """Find greetings whose personalisation rendered empty."""
    hits = []
    for where, text in doc.fields():
        if where == "link":
            continue
        for match in pattern.finditer(text):
            span = match.span()
            hits.append(
                ContentHit(
                    "empty_greeting", where, match.group(), {"context": context(text, *span)}
                )
            )
    return hits


def find_test_markers(doc: Document, markers: Sequence[Marker]) -> list[ContentHit]:
    """Find test-send markers in the subject and the body."""
    hits = []
    places = (("subject", doc.subject), ("text", doc.text), ("html", doc.html))
    for marker in markers:
        for where, text in places:
            if marker.where == "subject" and where != "subject":
                continue
            if marker.where == "body" and where == "subject":
                continue
            match = marker.pattern.search(text)
            if match:
                detail = {"marker": marker.name, "context": context(text, *match.span())}
                hits.append(ContentHit("test_marker", where, match.group().strip(), detail))
    return hits


def phrase_pattern(phrase: str) -> re.Pattern[str]:
    """Match a phrase case-insensitively, at word boundaries, whatever the spacing."""
    words = r"\s+".join(re.escape(w) for w in phrase.translate(_APOSTROPHES).split())
    return re.compile(rf"(?<!\w){words}(?!\w)", re.IGNORECASE)


def seasonal_phrases(
    doc: Document, phrases: Sequence[tuple[Phrase, re.Pattern[str]]]
) -> list[ContentHit]:
    """Find seasonal phrases in the subject and the body (each phrase once per place)."""
    hits = []
    places = (("subject", doc.subject), ("text", doc.text), ("html", doc.html))
    for phrase, pattern in phrases:
        for where, text in places:
            match = pattern.search(text.translate(_APOSTROPHES))
            if match:
                detail = {
                    "phrase": phrase.phrase,
                    "from": "{:02d}-{:02d}".format(*phrase.start),
                    "until": "{:02d}-{:02d}".format(*phrase.end),
                }
                hits.append(ContentHit("seasonal_phrase", where, match.group(), detail))
    return hits
