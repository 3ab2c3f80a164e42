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

BLOCK_SEPARATOR = "\n\n"  # blocks of text whose hints are remembered: paragraphs
BLOCK_MEMORY = 4096  # blocks whose hints are remembered, per pattern set
BLOCK_CHARS = 2000  # longer blocks are searched every time, never remembered
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

    Which hints a text contains is looked up block by block (blocks are what lies between
    empty lines) and remembered per block: a personalised campaign's copies
    share all but a few blocks, so only those are searched again. A hint without an empty
    line in it (all of the defaults) cannot span two blocks, so the union of the blocks'
    hints is exactly the text's; a hint with one is looked for in the whole text. The
    patterns themselves always run over the whole text.
    """

    def __init__(self, named: Sequence[tuple[str, str, bool, tuple[str, ...]]]) -> None:
        """Compile (name, regular expression, case-sensitive, hints) entries."""
        self.entries = tuple(
            (name, re.compile(rx, 0 if case else re.IGNORECASE), hints)
            for name, rx, case, hints in named
        )
        hints = tuple(dict.fromkeys(h for _, _, hs in self.entries for h in hs))
        self._block_hints = tuple(h for h in hints if BLOCK_SEPARATOR not in h)
        self._text_hints = tuple(h for h in hints if BLOCK_SEPARATOR in h)
        self._always = tuple(i for i, (_, _, hs) in enumerate(self.entries) if not hs)
        self._by_hint: dict[str, tuple[int, ...]] = {
            h: tuple(i for i, (_, _, hs) in enumerate(self.entries) if h in hs) for h in hints
        }
        # block -> its hints; at most BLOCK_MEMORY blocks of at most BLOCK_CHARS each, so
        # at most BLOCK_MEMORY x BLOCK_CHARS characters per pattern set (emptied when full).
        # Plain dict operations are atomic under the GIL: two threads may search the same
        # block at once and store the same answer, nothing worse.
        self._blocks: dict[str, frozenset[str]] = {}

    def hints_in(self, text: str) -> set[str]:
        """Return the hints the lower-cased `text` contains."""
        found = {h for h in self._text_hints if h in text}
        hints, memo = self._block_hints, self._blocks
        if not hints:
            return found
        for block in text.split(BLOCK_SEPARATOR):
            hit = memo.get(block)
            if hit is None:
                hit = frozenset(h for h in hints if h in block)
                if len(block) <= BLOCK_CHARS:
                    if len(memo) >= BLOCK_MEMORY:
                        memo.clear()
                    memo[block] = hit
            if hit:
                found |= hit
        return found

    def finditer(self, text: str) -> Iterator[tuple[str, re.Match[str]]]:
        """Yield (name, match) of every match, pattern by pattern."""
        selected = set(self._always)
        for hint in self.hints_in(text.lower()):
            selected.update(self._by_hint[hint])
        for index in sorted(selected):
            name, pattern, _ = self.entries[index]
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
