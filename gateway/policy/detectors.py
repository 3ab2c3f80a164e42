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
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass

from gateway.content import ContentHit, Document

FRAGMENT = 80  # characters of context a hit keeps around a match, at most

# Template syntaxes of DESIGN.md §3, with the systems that use them.
DEFAULT_MERGE_TAGS: dict[str, str] = {  # name -> regular expression (hints: TAG_HINTS)
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
TAG_HINTS: dict[str, tuple[str, ...]] = {
    "handlebars": ("{{",),
    "jinja-tag": ("{%",),
    "mailchimp": ("*|",),
    "ampscript": ("%%",),
    "salesforce": ("{!",),
    "dollar-brace": ("${",),
    "double-bracket": ("[[",),
    "mailgun": ("%recipient",),
    "campaign-monitor": ("[firstname", "[lastname", "[fullname", "[email"),
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


# Test-send markers: strong signals only, because ordinary mail says "test" too.
DEFAULT_MARKERS: tuple[tuple[str, str, str, bool, tuple[str, ...]], ...] = (
    # (name, regular expression, where, case-sensitive, hints); the most specific first
    (
        "Integration Test Email",
        r"\bintegration test (?:e-?mail|message)\b",
        "any",
        False,
        ("integration",),
    ),
    ("[TEST] or (test)", r"^\W*[\[(]\s*test(?:ing)?\s*[\])]", "subject", False, ("test",)),
    (
        "subject starting with test",
        r"^\s*test(?:ing)?\s*(?:[:#|\-–—]|\d|$)",
        "subject",
        False,
        ("test",),
    ),
    ("[DRAFT]", r"[\[(]\s*draft\s*[\])]", "subject", False, ("draft",)),
    (
        "test email",
        r"\btest[ -](?:e-?mail|message|send|mail|campaign|blast)\b",
        "subject",
        False,
        ("test",),
    ),
    ("[TEST]", r"\[\s*test\s*\]", "any", False, ("test",)),
    ("lorem ipsum", r"\blorem ipsum\b", "any", False, ("lorem",)),
    ("DO NOT SEND", r"\bDO NOT (?:SEND|USE|DISTRIBUTE)\b", "any", True, ("do not",)),
    (
        "this is a test email",
        r"\bthis is (?:just |only )?a test (?:e-?mail|message|send)\b",
        "any",
        False,
        ("a test",),
    ),
    ("test test", r"\btest,? test\b", "any", False, ("test",)),
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


class Patterns:
    """Named patterns with literal hints: a pattern runs only on text that has its hint.

    Scanning a 100 KB body with twenty case-insensitive expressions costs tens of
    milliseconds; `str.find` of a short literal costs microseconds. So each pattern may
    name hints (lower-case literals, one of which every match contains) and runs only when
    the lower-cased text contains one. Operators' patterns carry no hints and always run.
    """

    def __init__(self, named: Sequence[tuple[str, str, bool, tuple[str, ...]]]) -> None:
        """Compile (name, regular expression, case-sensitive, hints) entries."""
        self.entries = tuple(
            (name, re.compile(rx, 0 if case else re.IGNORECASE), hints)
            for name, rx, case, hints in named
        )

    def finditer(self, text: str) -> Iterator[tuple[str, re.Match[str]]]:
        """Yield (name, match) of every match, pattern by pattern."""
        lower = text.lower()
        for name, pattern, hints in self.entries:
            if not hints or any(hint in lower for hint in hints):
                for match in pattern.finditer(text):
                    yield name, match


def merge_tags(doc: Document, tags: Patterns) -> list[ContentHit]:
    """Find unrendered template tags in every visible field of the message."""
    hits = [
        ContentHit(
            "merge_tag",
            where,
            fragment(text, *match.span()),
            {"syntax": name, "context": context(text, *match.span())},
        )
        for where, text in doc.fields()
        if where != "link"
        for name, match in tags.finditer(text)
    ]
    # Links are read as one text, one target per line, so hundreds of links cost one pass.
    links = "\n".join(doc.links)
    for name, match in tags.finditer(links):
        start = links.rfind("\n", 0, match.start()) + 1
        end = links.find("\n", match.end())
        target = links[start : end if end >= 0 else len(links)]
        detail = {"syntax": name, "context": target[:200]}
        hits.append(ContentHit("merge_tag", "link", fragment(links, *match.span()), detail))
    return hits


_GAP_COMMA = re.compile(r"[ \t\u00a0]+,")
_LAST_WORD = re.compile(r"(?<!')([^\W\d_]+)$")


def greeting_pattern(greetings: Iterable[str]) -> frozenset[str]:
    """Return the greeting words (lower-cased) that `Hi ,` / `Dear  ,` start with."""
    return frozenset(g.lower() for g in greetings)


def empty_greetings(doc: Document, greetings: frozenset[str]) -> list[ContentHit]:
    """Find greetings followed by a blank where the name should be, and a comma."""
    hits = []
    for where, text in doc.fields():
        if where == "link" or "," not in text:
            continue
        for gap in _GAP_COMMA.finditer(text):  # rare: a blank before a comma
            word = _LAST_WORD.search(text, max(0, gap.start() - 30), gap.start())
            if word and word.group(1).lower() in greetings:
                span = (word.start(), gap.end())
                detail = {"context": context(text, *span)}
                hits.append(ContentHit("empty_greeting", where, text[slice(*span)], detail))
    return hits


def find_test_markers(doc: Document, subject: Patterns, body: Patterns) -> list[ContentHit]:
    """Find test-send markers in the subject and the body (each marker once per place)."""
    hits = []
    places = (("subject", doc.subject, subject), ("text", doc.text, body), ("html", doc.html, body))
    for where, text, markers in places:
        seen: set[str] = set()
        for name, match in markers.finditer(text):
            if name not in seen:
                seen.add(name)
                detail = {"marker": name, "context": context(text, *match.span())}
                hits.append(ContentHit("test_marker", where, match.group().strip(), detail))
    return hits


def phrase_pattern(phrase: str) -> str:
    """Return a pattern matching a phrase at word boundaries, whatever the spacing."""
    words = r"\s+".join(re.escape(w) for w in phrase.translate(_APOSTROPHES).split())
    return rf"(?<!\w){words}(?!\w)"


def hint_of(phrase: str) -> str:
    """Return the literal every match of a phrase contains: its longest word, lower-cased."""
    return max(phrase.translate(_APOSTROPHES).lower().split(), key=len)


def seasonal_phrases(
    doc: Document, phrases: Patterns, windows: Mapping[str, Phrase]
) -> list[ContentHit]:
    """Find seasonal phrases in the subject and the body (each phrase once per place)."""
    hits = []
    for where, text in (("subject", doc.subject), ("text", doc.text), ("html", doc.html)):
        seen: set[str] = set()
        for name, match in phrases.finditer(text.translate(_APOSTROPHES)):
            if name in seen:
                continue
            seen.add(name)
            phrase = windows[name]
            detail = {
                "phrase": phrase.phrase,
                "from": "{:02d}-{:02d}".format(*phrase.start),
                "until": "{:02d}-{:02d}".format(*phrase.end),
            }
            hits.append(ContentHit("seasonal_phrase", where, match.group(), detail))
    return hits
