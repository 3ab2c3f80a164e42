"""Seasonal rule: phrases out of their season ("Happy New Year" in February).

Owns the `seasonal` kind: its parameters, the default phrases and their windows of the
year, its scanner and its check. The scanner finds the phrases; the check reads the date
from the engine's clock, in the rule's time zone, and holds those out of their window.
"""

from __future__ import annotations

import re
import zoneinfo
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cached_property
from typing import Literal

from pydantic import Field, field_validator

from gateway.mail.content import Document
from gateway.model import ContentHit
from gateway.policy.rules.base import Context, Observation, Rule, Shared, Strict
from gateway.policy.rules.patterns import (
    APOSTROPHES,
    WHERE,
    Patterns,
    first_per_place,
    hint_of,
    more,
    phrase_pattern,
    shown,
)

_MONTH_DAY = re.compile(r"^(\d\d)-(\d\d)$")
_DAYS = (31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)
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


@dataclass(frozen=True, slots=True)
class Phrase:
    """A seasonal phrase and the yearly window (month, day) in which it may be sent."""

    phrase: str
    start: tuple[int, int]
    end: tuple[int, int]


def _month_day(value: str) -> tuple[int, int]:
    match = _MONTH_DAY.match(value.strip())
    if not match or not (
        1 <= int(match[1]) <= 12 and 1 <= int(match[2]) <= _DAYS[int(match[1]) - 1]
    ):
        raise ValueError(f"{value!r} is not a date of the year as MM-DD, e.g. 12-20")
    return int(match[1]), int(match[2])


class PhraseSpec(Strict):
    """A seasonal phrase and the window (MM-DD to MM-DD, inclusive) it belongs to."""

    phrase: str = Field(min_length=2)
    start: str = Field(alias="from", description="First day, MM-DD.")
    until: str = Field(description="Last day, MM-DD; before `from` wraps over the new year.")

    @field_validator("start", "until")
    @classmethod
    def _is_month_day(cls, value: str) -> str:
        _month_day(value)
        return value.strip()


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
        """Every phrase as one pattern, and each phrase's window by name."""
        if self.phrases is None:
            chosen = [(p, _month_day(a), _month_day(b)) for p, a, b in DEFAULT_PHRASES]
        else:
            chosen = [(p.phrase, _month_day(p.start), _month_day(p.until)) for p in self.phrases]
        chosen += [(p.phrase, _month_day(p.start), _month_day(p.until)) for p in self.extra_phrases]
        windows = {text: Phrase(text, start, end) for text, start, end in chosen}
        pattern = Patterns([(t, phrase_pattern(t), False, (hint_of(t),)) for t in windows])
        return pattern, windows


def seasonal_phrases(
    doc: Document, phrases: Patterns, windows: Mapping[str, Phrase]
) -> list[ContentHit]:
    """Find seasonal phrases in the subject and the body (each phrase once per place)."""
    places = [
        (where, text.translate(APOSTROPHES), phrases)
        for where, text in (("subject", doc.subject), ("text", doc.text), ("html", doc.html))
    ]
    hits = []
    for where, _text, name, match in first_per_place(places):
        phrase = windows[name]
        detail = {
            "phrase": phrase.phrase,
            "from": "{:02d}-{:02d}".format(*phrase.start),
            "until": "{:02d}-{:02d}".format(*phrase.end),
        }
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
    day = (today.month, today.day)
    windows = {p.phrase: (p.start, p.end) for p in rule.compiled[1].values()}
    late = [
        h for h in ctx.scan(rule.id).hits if not in_window(day, *windows[str(h.detail["phrase"])])
    ]
    if not late:
        return []
    first = late[0]
    return [
        Observation(
            kind="out_of_season",
            message=(
                f"{first.fragment!r} in {WHERE[first.where]} belongs to "
                f"{first.detail['from']}..{first.detail['until']}, but today is "
                f"{today.isoformat()} ({rule.timezone}){more(late)}"
            ),
            evidence={"date": today.isoformat(), "timezone": rule.timezone, "found": shown(late)},
        )
    ]
