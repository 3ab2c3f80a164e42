"""Seasonal rule: phrases out of their season ("Happy New Year" in February).

Owns the `seasonal` kind: its parameters, the default phrases of every covered language
and their windows, its scanner and its check. The scanner finds the phrases (any case,
with or without accents, in the subject, the text and the HTML, preheader included); the
check reads the date from the engine's clock, in the rule's time zone, and holds those
out of their window. A window is fixed days of the year or days around a holiday of that
year (Easter, Thanksgiving, Mother's Day: `holidays.py` computes them); a phrase may have
several ("Feliz Pascua" is Easter in Spain and Christmas in Chile).
"""

from __future__ import annotations

import re
import unicodedata
import zoneinfo
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cached_property
from typing import Literal

from pydantic import Field, field_validator, model_validator

from gateway.mail.content import Document
from gateway.model import ContentHit
from gateway.policy.rules.base import SAMPLE, Context, Observation, Rule, Shared, Strict
from gateway.policy.rules.holidays import HOLIDAYS, Around, Fixed, Window, inside, nearest
from gateway.policy.rules.patterns import APOSTROPHES, WHERE, Patterns, first_per_place, more
from gateway.policy.rules.seasons import BUT_NOT, SEASONS

_MONTH_DAY = re.compile(r"^(\d\d)-(\d\d)$")
_DAYS = (31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)

# Letters also written another way: without the accent (NFD does that), or spelled out.
_SPELLED = {"ß": ("ss",), "æ": ("ae",), "œ": ("oe",), "ø": ("oe", "o"), "å": ("aa",)}
_SPELLED |= {"ä": ("ae",), "ö": ("oe",), "ü": ("ue",), "ł": ("l",)}
_UNSPACED = re.compile(r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")  # kana, Han
_SEPARATOR = r"[\s-]+"


@dataclass(frozen=True, slots=True)
class Phrase:
    """A seasonal phrase, its season, and the windows in which it may be sent."""

    phrase: str
    windows: tuple[Window, ...]
    season: str = ""  # for findings: "Easter"; empty for an operator's phrase
    but_not: tuple[str, ...] = ()  # following words that make it something else

    def describe(self) -> str:
        """`easter -35..+1 or 11-15..01-06`."""
        return " or ".join(w.describe() for w in self.windows)


DEFAULT_PHRASES: tuple[Phrase, ...] = tuple(
    Phrase(text, windows, season, BUT_NOT.get(text, ()))
    for season, _languages, windows, texts in SEASONS
    for text in texts
)


def _letter(char: str) -> str:
    """Return a pattern for one letter of a phrase: itself, or any way it is also written."""
    lower = char.lower()
    bare = "".join(c for c in unicodedata.normalize("NFD", lower) if not unicodedata.combining(c))
    ways = {lower, bare, *_SPELLED.get(lower, ())}
    if len(ways) == 1:
        return re.escape(char)
    return "(?:" + "|".join(re.escape(w) for w in sorted(ways, key=len, reverse=True)) + ")"


def _word(word: str) -> str:
    """Return a pattern for a word: `Valentine's` also as `Valentines`, `St.` as `St`."""
    out = ""
    for i, char in enumerate(word):
        if char == "'":
            out += "'?"
        elif char == ".":
            out += r"\.?"
        elif char == "s" and word[i - 1 : i] == "'" and i == len(word) - 1:
            out += "s'?"  # Mother's, Mothers, Mothers'
        else:
            out += _letter(char)
    return out


def phrase_pattern(phrase: str, but_not: tuple[str, ...] = ()) -> str:
    """Return a pattern matching a phrase in any case, spacing, accents, or none.

    Words are apart by spaces or hyphens. Phrases in scripts written without spaces
    (Japanese, Chinese) match anywhere; others only as whole words.
    """
    text = unicodedata.normalize("NFKC", phrase.translate(APOSTROPHES)).strip()
    body = _SEPARATOR.join(_word(w) for w in re.split(_SEPARATOR, text))
    before = "" if _UNSPACED.match(text) else r"(?<!\w)"
    after = "" if _UNSPACED.match(text[-1]) else r"(?!\w)"
    unless = ""
    if but_not:
        unless = rf"(?!{_SEPARATOR}(?:{'|'.join(_word(w) for w in but_not)})(?!\w))"
    return before + body + after + unless


def hint_of(phrase: str) -> str:
    """Return a literal every match contains: the phrase's longest run of plain letters."""
    runs = [""]
    for char in unicodedata.normalize("NFKC", phrase.translate(APOSTROPHES)).lower():
        if char.isalnum() and _letter(char) == re.escape(char):
            runs[-1] += char
        else:
            runs.append("")
    return max(runs, key=len)


def _month_day(value: str) -> tuple[int, int]:
    match = _MONTH_DAY.match(value.strip())
    if not match or not (
        1 <= int(match[1]) <= 12 and 1 <= int(match[2]) <= _DAYS[int(match[1]) - 1]
    ):
        raise ValueError(f"{value!r} is not a date of the year as MM-DD, e.g. 12-20")
    return int(match[1]), int(match[2])


class PhraseSpec(Strict):
    """An operator's seasonal phrase: fixed days of the year, or days around a holiday."""

    phrase: str = Field(min_length=2)
    start: str | None = Field(None, alias="from", description="First day, MM-DD.")
    until: str | None = Field(
        None, description="Last day, MM-DD; before `from` wraps over the new year."
    )
    around: str | None = Field(
        None, description="Instead of from/until: a holiday computed per year, e.g. easter."
    )
    before: int = Field(28, ge=0, le=180, description="Days before `around` the window opens.")
    after: int = Field(1, ge=0, le=180, description="Days after `around` the window closes.")

    @field_validator("start", "until")
    @classmethod
    def _is_month_day(cls, value: str | None) -> str | None:
        if value is None:
            return None
        _month_day(value)
        return value.strip()

    @field_validator("around")
    @classmethod
    def _known_holiday(cls, value: str | None) -> str | None:
        if value is not None and value not in HOLIDAYS:
            raise ValueError(f"unknown holiday {value!r}; known: {', '.join(HOLIDAYS)}")
        return value

    @model_validator(mode="after")
    def _one_window(self) -> PhraseSpec:
        fixed = (self.start is not None, self.until is not None)
        if fixed == (True, True) and self.around is None:
            return self
        if fixed == (False, False) and self.around is not None:
            return self
        raise ValueError("give either `from` and `until`, or `around` (with before and after)")

    def compiled(self) -> Phrase:
        """Return the phrase with its window."""
        window: Window
        if self.start is not None and self.until is not None:
            window = Fixed(_month_day(self.start), _month_day(self.until))
        elif self.around is not None:
            window = Around(self.around, self.before, self.after)
        else:  # refused by _one_window
            raise ValueError(f"{self.phrase!r} has no window")
        return Phrase(self.phrase, (window,))


class Seasonal(Rule):
    """Seasonal phrases outside their window of the year ("Happy New Year" in February)."""

    kind: Literal["seasonal"]
    phrases: list[PhraseSpec] | None = Field(None, description="Replaces the defaults.")
    extra_phrases: list[PhraseSpec] = Field(default_factory=list)
    timezone: str = Field("UTC", description="Where the calendar date is read, e.g. Europe/Paris.")

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            zoneinfo.ZoneInfo(value)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {value!r}") from None
        return value

    @cached_property
    def compiled(self) -> tuple[Patterns, dict[str, Phrase]]:
        """Every phrase as one pattern, and each phrase by name (an operator's wins)."""
        chosen = DEFAULT_PHRASES if self.phrases is None else [p.compiled() for p in self.phrases]
        phrases = {p.phrase: p for p in [*chosen, *(p.compiled() for p in self.extra_phrases)]}
        pattern = Patterns(
            [
                (text, phrase_pattern(text, p.but_not), False, (hint_of(text),))
                for text, p in phrases.items()
            ]
        )
        return pattern, phrases


def readable(text: str) -> str:
    """Return text as phrases are matched on: NFKC-normalised, with straight apostrophes.

    NFKC folds full-width and half-width forms; `str.replace` is used because
    `str.translate` is slow on 100 KB of Unicode.
    """
    text = unicodedata.normalize("NFKC", text)
    for curly in APOSTROPHES:
        text = text.replace(chr(curly), "'")
    return text


def seasonal_phrases(
    doc: Document, phrases: Patterns, windows: Mapping[str, Phrase]
) -> list[ContentHit]:
    """Find seasonal phrases in the subject and the body (each phrase once per place)."""
    places = [
        (where, readable(text), phrases)
        for where, text in (("subject", doc.subject), ("text", doc.text), ("html", doc.html))
    ]
    hits = []
    for where, _text, name, match in first_per_place(places):
        phrase = windows[name]
        detail = {"phrase": phrase.phrase, "season": phrase.season, "windows": phrase.describe()}
        hits.append(ContentHit("seasonal_phrase", where, match.group(), detail))
    return hits


def in_window(day: tuple[int, int], start: tuple[int, int], end: tuple[int, int]) -> bool:
    """Tell whether (month, day) is in the inclusive window, which may wrap over 31 Dec."""
    if start <= end:
        return start <= day <= end
    return day >= start or day <= end


def scan(rule: Seasonal, doc: Document, shared: Shared) -> list[ContentHit]:  # noqa: ARG001
    """Find seasonal phrases."""
    return seasonal_phrases(doc, *rule.compiled)


def check(rule: Seasonal, ctx: Context) -> list[Observation]:
    """Hold mail whose seasonal phrases are out of season on the day it is sent."""
    today = datetime.fromtimestamp(ctx.now, UTC).astimezone(zoneinfo.ZoneInfo(rule.timezone)).date()
    phrases = rule.compiled[1]
    late = [
        (hit, phrases[str(hit.detail["phrase"])])
        for hit in ctx.scan(rule.id).hits
        if not inside(phrases[str(hit.detail["phrase"])].windows, today)
    ]
    if not late:
        return []
    found = []
    for hit, phrase in late[:SAMPLE]:
        start, end = nearest(phrase.windows, today)
        window = f"{start.isoformat()}..{end.isoformat()}"
        found.append({"where": hit.where, "fragment": hit.fragment, **hit.detail, "window": window})
    first = found[0]
    season = f"{first['season']}, " if first["season"] else ""
    return [
        Observation(
            kind="out_of_season",
            message=(
                f"{first['fragment']!r} in {WHERE[first['where']]} belongs to {season}"
                f"{first['window']}, but today is {today.isoformat()} ({rule.timezone})"
                f"{more([h for h, _ in late])}"
            ),
            evidence={"date": today.isoformat(), "timezone": rule.timezone, "found": found},
        )
    ]
