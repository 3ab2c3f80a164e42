"""Pattern helpers the content rules share, and how their hits are shown in evidence.

`Patterns` runs named regular expressions over a text, skipping those whose literal hint
is absent; `fragment` and `context` cut what a hit keeps of the text; `phrase_pattern`
and `hint_of` turn a phrase into a pattern and its hint. `shown`, `more` and `WHERE` put
hits into findings' evidence and messages. They know nothing of campaigns or rule kinds.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from typing import Any

from gateway.model import ContentHit
from gateway.policy.rules.base import SAMPLE

FRAGMENT = 80  # characters of context a hit keeps around a match, at most
APOSTROPHES = str.maketrans({"’": "'", "‘": "'", "ʼ": "'"})
WHERE = {
    "subject": "the subject",
    "from_name": "the From name",
    "text": "the text part",
    "html": "the HTML part",
    "link": "a link",
    "signoff": "the closing lines",
}


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


def first_per_place(
    places: Sequence[tuple[str, str, Patterns]],
) -> Iterator[tuple[str, str, str, re.Match[str]]]:
    """Yield (where, text, name, match) of each pattern's first match in each place."""
    for where, text, patterns in places:
        seen: set[str] = set()
        for name, match in patterns.finditer(text):
            if name not in seen:
                seen.add(name)
                yield where, text, name, match


def phrase_pattern(phrase: str) -> str:
    """Return a pattern matching a phrase at word boundaries, whatever the spacing."""
    words = r"\s+".join(re.escape(w) for w in phrase.translate(APOSTROPHES).split())
    return rf"(?<!\w){words}(?!\w)"


def hint_of(phrase: str) -> str:
    """Return the literal every match of a phrase contains: its longest word, lower-cased."""
    return max(phrase.translate(APOSTROPHES).lower().split(), key=len)


def shown(hits: Sequence[ContentHit]) -> list[dict[str, Any]]:
    """Return the first SAMPLE hits as evidence: where, the fragment, and their detail."""
    return [{"where": h.where, "fragment": h.fragment, **h.detail} for h in hits[:SAMPLE]]


def more(hits: Sequence[ContentHit]) -> str:
    """Return ' (and N more)' after the first of several hits, for a finding's message."""
    return f" (and {len(hits) - 1} more)" if len(hits) > 1 else ""
