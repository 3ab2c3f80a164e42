"""Signature and content rule kinds (DESIGN.md §3, §10), and protected identities.

Strict pydantic models like the other rule kinds. Patterns are compiled once, when the
policy set loads, so a broken regular expression is a load error with file, line and key,
never a surprise on the first message.
"""

from __future__ import annotations

import re
import zoneinfo
from functools import cached_property
from typing import Literal

from pydantic import Field, field_validator, model_validator

from gateway.model import Needs
from gateway.policy import detectors
from gateway.policy.rule_base import Rule, Strict

_ID = r"^[A-Za-z0-9][A-Za-z0-9_.-]*$"
_MONTH_DAY = re.compile(r"^(\d\d)-(\d\d)$")
_DAYS = (31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)


def _regex(value: str) -> str:
    try:
        re.compile(value)
    except re.error as exc:
        raise ValueError(f"not a valid regular expression: {exc}") from None
    return value


class Identity(Strict):
    """A protected identity: who may not be sent or signed as in bulk without a sign-off."""

    id: str = Field(pattern=_ID, description="Id that tokens are bound to (--identity).")
    name: str | None = Field(None, description="Display name, e.g. 'Jane Doe'.")
    addresses: list[str] = Field(default_factory=list, description="Personal addresses.")
    aliases: list[str] = Field(default_factory=list, description="Other names in From.")
    signoffs: list[str] = Field(default_factory=list, description="Names in closing lines.")
    signoff_patterns: list[str] = Field(
        default_factory=list, description="Regular expressions matching a closing line."
    )
    segment: str | None = Field(None, description="Segment of personal addresses (sales reps).")

    @field_validator("signoff_patterns")
    @classmethod
    def _patterns_compile(cls, value: list[str]) -> list[str]:
        return [_regex(v) for v in value]

    @model_validator(mode="after")
    def _something_to_match(self) -> Identity:
        if not (self.name or self.addresses or self.aliases or self.signoffs) and not (
            self.signoff_patterns or self.segment
        ):
            raise ValueError("give a name, addresses, aliases, signoffs, patterns or a segment")
        return self


class Signature(Rule):
    """Bulk mail that sends or signs as a protected identity waits for its sign-off."""

    kind: Literal["signature"]
    bulk_threshold: int = Field(100, ge=0, description="Recipients a campaign may reach unsigned.")
    identities: list[str] | None = Field(None, description="Identity ids; default: every one.")

    def needs(self) -> Needs:  # noqa: D102
        return Needs(signoffs=True)


class MergeTags(Rule):
    """Unrendered template tags and empty personalisation (`Hi ,`)."""

    kind: Literal["merge_tags"]
    patterns: dict[str, str] | None = Field(None, description="Name -> regex; replaces defaults.")
    extra_patterns: dict[str, str] = Field(default_factory=dict, description="Added to defaults.")
    empty_greetings: bool = True
    greetings: list[str] | None = Field(None, description="Greeting words; replaces defaults.")

    @field_validator("patterns", "extra_patterns")
    @classmethod
    def _patterns_compile(cls, value: dict[str, str] | None) -> dict[str, str] | None:
        return value if value is None else {k: _regex(v) for k, v in value.items()}

    @cached_property
    def compiled(self) -> detectors.Patterns:
        """Every tag syntax this rule looks for (the defaults with their hints)."""
        chosen = detectors.DEFAULT_MERGE_TAGS if self.patterns is None else self.patterns
        hints = detectors.TAG_HINTS if self.patterns is None else {}
        return detectors.Patterns(
            [(k, v, True, hints.get(k, ())) for k, v in {**chosen, **self.extra_patterns}.items()]
        )

    @cached_property
    def greeting(self) -> frozenset[str]:
        """The greeting words of the empty-greeting check."""
        return detectors.greeting_pattern(self.greetings or detectors.DEFAULT_GREETINGS)


class MarkerSpec(Strict):
    """A test-send marker given as a regular expression."""

    pattern: str
    name: str | None = None
    where: Literal["subject", "body", "any"] = "any"
    case_sensitive: bool = False

    @field_validator("pattern")
    @classmethod
    def _compiles(cls, value: str) -> str:
        return _regex(value)


def _marker(spec: str | MarkerSpec) -> tuple[str, str, str, bool, tuple[str, ...]]:
    """(name, pattern, where, case-sensitive, hints); a string is a literal phrase."""
    if isinstance(spec, str):
        hint = spec.split()[0].lower() if spec.split() else ""
        return (spec, detectors.phrase_pattern(spec), "any", False, (hint,) if hint else ())
    return (spec.name or spec.pattern, spec.pattern, spec.where, spec.case_sensitive, ())


class TestMarkers(Rule):
    """Test-send markers hold a campaign unless every recipient is internal."""

    __test__ = False  # not a pytest test class, whatever its name says

    kind: Literal["test_markers"]
    markers: list[str | MarkerSpec] | None = Field(None, description="Replaces the defaults.")
    extra_markers: list[str | MarkerSpec] = Field(default_factory=list)
    internal: bool = Field(default=True, description="Recipients in internal_domains count.")
    domains: list[str] = Field(default_factory=list, description="More internal domains.")
    segment: str | None = Field(None, description="Members of this segment are internal.")

    def needs(self) -> Needs:  # noqa: D102
        return Needs(segments=frozenset({self.segment} if self.segment else ()))

    @cached_property
    def compiled(self) -> tuple[detectors.Patterns, detectors.Patterns]:
        """The markers that count in the subject, and those that count in the body."""
        chosen = (
            list(detectors.DEFAULT_MARKERS)
            if self.markers is None
            else [_marker(m) for m in self.markers]
        )
        chosen += [_marker(m) for m in self.extra_markers]
        subject = [(n, rx, case, h) for n, rx, where, case, h in chosen if where != "body"]
        body = [(n, rx, case, h) for n, rx, where, case, h in chosen if where != "subject"]
        return detectors.Patterns(subject), detectors.Patterns(body)


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
    def compiled(self) -> tuple[detectors.Patterns, dict[str, detectors.Phrase]]:
        """Every phrase as one pattern, and each phrase's window by name."""
        if self.phrases is None:
            chosen = [(p, _month_day(a), _month_day(b)) for p, a, b in detectors.DEFAULT_PHRASES]
        else:
            chosen = [(p.phrase, _month_day(p.start), _month_day(p.until)) for p in self.phrases]
        chosen += [(p.phrase, _month_day(p.start), _month_day(p.until)) for p in self.extra_phrases]
        windows = {text: detectors.Phrase(text, start, end) for text, start, end in chosen}
        pattern = detectors.Patterns(
            [(t, detectors.phrase_pattern(t), False, (detectors.hint_of(t),)) for t in windows]
        )
        return pattern, windows


class Language(Rule):
    """The body's language differs from the declared locale, with high confidence."""

    kind: Literal["language"]
    min_confidence: float = Field(0.9, ge=0, le=1, description="Detector probability needed.")
    min_chars: int = Field(120, ge=0, description="Letters a body needs before it is judged.")
    min_share: float = Field(
        0.2, ge=0, le=1, description="Share of paragraphs in the declared language that passes."
    )


class Undecodable(Rule):
    """Content that cannot be decoded (unknown charset, broken base64, no text part)."""

    kind: Literal["undecodable"]
