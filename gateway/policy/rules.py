"""The shape of a policy file (DESIGN.md §10), as strict pydantic models.

Names here are the operator contract. Each rule kind is one model; `kind` selects it.
Validation errors carry key paths that the loader turns into file:line:key messages.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Literal

from pydantic import AfterValidator, Field, model_validator

from gateway.model import Needs
from gateway.policy.content_rules import (
    Identity,
    Language,
    MergeTags,
    Seasonal,
    Signature,
    TestMarkers,
    Undecodable,
)
from gateway.policy.rule_base import Defaults, When  # noqa: F401 - When is part of this module's API
from gateway.policy.rule_base import Rule as _Rule
from gateway.policy.rule_base import Strict as _Strict
from gateway.settings import Duration

_PERCENT = re.compile(r"^\d+(\.\d+)?%$")


def _count_or_percent(value: int | str) -> int | str:
    if isinstance(value, str) and not _PERCENT.match(value.strip()):
        raise ValueError("expected a whole number or a percentage such as '5%'")
    if isinstance(value, int) and value < 0:
        raise ValueError("must not be negative")
    return value.strip() if isinstance(value, str) else value


CountOrPercent = Annotated[int | str, AfterValidator(_count_or_percent)]


def tally(segment: str) -> str:
    """Name of a campaign's running count of members of `segment`."""
    return f"segment:{segment}"


class DeclaredSize(_Rule):
    """Hold when recipients > declared × ratio and > declared + slack."""

    kind: Literal["declared_size"]
    ratio: float = Field(1.5, ge=1.0)
    slack: int = Field(50, ge=0)


class UndeclaredLimit(_Rule):
    """Hold a campaign without a declared size once it passes a limit."""

    kind: Literal["undeclared_limit"]
    max_recipients: int = Field(5000, ge=0)


class AbsoluteCeiling(_Rule):
    """Hold any campaign past a ceiling, whatever it declared."""

    kind: Literal["absolute_ceiling"]
    max_recipients: int = Field(1_000_000, ge=0)


class DuplicateRecipients(_Rule):
    """Hold (or suppress the repeats) when a campaign reaches a recipient twice."""

    kind: Literal["duplicate_recipients"]
    max_duplicates: int = Field(0, ge=0)


class SegmentExclude(_Rule):
    """Campaigns this rule selects must not reach segment `segment` (the win-back day)."""

    kind: Literal["segment_exclude"]
    segment: str
    max_overlap: CountOrPercent = 0  # members allowed, as a count or a share of recipients

    def needs(self) -> Needs:  # noqa: D102
        return Needs(segments=frozenset({self.segment}), tallies=frozenset({tally(self.segment)}))


class SegmentOnly(_Rule):
    """Recipients must be in `segment`, in `domains`, or (with `internal`) internal."""

    kind: Literal["segment_only"]
    segment: str | None = None
    domains: list[str] = Field(default_factory=list)
    internal: bool = False

    @model_validator(mode="after")
    def _something_allowed(self) -> SegmentOnly:
        if self.segment is None and not self.domains and not self.internal:
            raise ValueError("give a segment, domains, or internal: true")
        return self

    def needs(self) -> Needs:  # noqa: D102
        return Needs(segments=frozenset({self.segment} if self.segment else ()))


class SegmentMix(_Rule):
    """One campaign must not reach members of two of these segments."""

    kind: Literal["segment_mix"]
    segments: list[str] = Field(min_length=2)

    def needs(self) -> Needs:  # noqa: D102
        return Needs(
            segments=frozenset(self.segments), tallies=frozenset(map(tally, self.segments))
        )


class Allow(_Strict):
    """Campaigns a coverage rule lets through."""

    category: list[str] = Field(default_factory=list)


class SegmentCoverage(_Rule):
    """Hold a campaign reaching more than `max_percent` of a segment (the whole-database day)."""

    kind: Literal["segment_coverage"]
    segment: str
    max_percent: float = Field(ge=0, le=100)
    allow: Allow = Field(default_factory=Allow)

    def needs(self) -> Needs:  # noqa: D102
        return Needs(segments=frozenset({self.segment}), tallies=frozenset({tally(self.segment)}))


class FrequencyCap(_Rule):
    """No recipient gets more than `max_per_recipient` selected campaigns' mail per window."""

    kind: Literal["frequency_cap"]
    max_per_recipient: int = Field(ge=1)
    window: Duration

    def needs(self) -> Needs:  # noqa: D102
        return Needs(frequency=((self.id, self.window),))


Rule = Annotated[
    DeclaredSize
    | UndeclaredLimit
    | AbsoluteCeiling
    | DuplicateRecipients
    | SegmentExclude
    | SegmentOnly
    | SegmentMix
    | SegmentCoverage
    | FrequencyCap
    | Signature
    | MergeTags
    | TestMarkers
    | Seasonal
    | Language
    | Undecodable,
    Field(discriminator="kind"),
]
RULE_KINDS = (
    "declared_size",
    "undeclared_limit",
    "absolute_ceiling",
    "duplicate_recipients",
    "segment_exclude",
    "segment_only",
    "segment_mix",
    "segment_coverage",
    "frequency_cap",
    "signature",
    "merge_tags",
    "test_markers",
    "seasonal",
    "language",
    "undecodable",
)
# Kinds whose findings name single recipients, so `action: suppress` can drop just those.
SUPPRESSIBLE = frozenset(
    {"duplicate_recipients", "segment_exclude", "segment_only", "frequency_cap"}
)


class SegmentFile(_Strict):
    """A segment loaded from a file: one address per line, or CSV with a header."""

    file: Path
    column: str | None = Field(None, description="CSV column holding the address.")


class PolicyFile(_Strict):
    """One YAML file in the policy directory."""

    version: Literal[1]
    defaults: Defaults = Field(default_factory=Defaults)
    segments: dict[str, SegmentFile] = Field(default_factory=dict)
    identities: list[Identity] = Field(default_factory=list)
    internal_domains: list[str] = Field(default_factory=list)
    rules: list[Rule] = Field(default_factory=list)
