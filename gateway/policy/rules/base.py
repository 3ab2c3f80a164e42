"""What every rule unit is made of: its parameters, what its check sees and returns.

Owns the base of the rule parameter models (id, `when`, mode, action), the file-level
sections rules may refer to (`Shared`: protected identities, internal domains), the
`Context` a check reads and the `Observation` it returns, and `Unit`, which ties a kind's
parameters to its check and, for content rules, its scanner. It knows no rule kind; the
families live in the modules beside it and the registry (`gateway/policy/registry.py`)
names them.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, Literal, TypeVar, get_args, get_origin

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from gateway.mail.addresses import domain_of
from gateway.mail.content import Document
from gateway.model import (
    Campaign,
    ContentHit,
    Facts,
    FeedbackStats,
    Needs,
    RuleScan,
    Submission,
    Throttle,
)

Mode = Literal["enforce", "shadow"]
Action = Literal["hold", "suppress"]
SAMPLE = 10  # evidence lists at most this many addresses or hits
ID = r"^[A-Za-z0-9][A-Za-z0-9_.-]*$"


def regex(value: str) -> str:
    """Validate a regular expression given in a policy file (a load error, not a crash)."""
    try:
        re.compile(value)
    except re.error as exc:
        raise ValueError(f"not a valid regular expression: {exc}") from None
    return value


class Strict(BaseModel):
    """A frozen model that refuses unknown keys (a typo in a policy file is an error)."""

    model_config = ConfigDict(frozen=True, extra="forbid")


class When(Strict):
    """Which campaigns a rule looks at; every given field must match."""

    category: str | list[str] | None = Field(
        None, description="Declared category, or any of a list."
    )
    key: str | None = Field(None, description="Glob on the campaign key, e.g. 'survey-*'.")
    sender: str | None = Field(None, description="Glob on the envelope sender.")
    client: str | None = Field(None, description="Glob on the client (AUTH user or network).")

    def selects(self, campaign: Campaign) -> bool:
        """Tell whether `campaign` is one this rule applies to."""
        if self.category is not None:
            wanted = [self.category] if isinstance(self.category, str) else self.category
            if campaign.declared.category not in {c.lower() for c in wanted}:
                return False
        globs = (
            (self.key, campaign.key),
            (self.sender, campaign.sender.lower()),
            (self.client, campaign.client),
        )
        return all(glob is None or fnmatch.fnmatchcase(value, glob) for glob, value in globs)


class Defaults(Strict):
    """Mode and action for rules of the same file that do not set their own."""

    mode: Mode = "enforce"
    action: Action = "hold"


class Identity(Strict):
    """A protected identity: who may not be sent or signed as in bulk without a sign-off."""

    id: str = Field(pattern=ID, description="Id that tokens are bound to (--identity).")
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
        return [regex(v) for v in value]

    @model_validator(mode="after")
    def _something_to_match(self) -> Identity:
        if not (self.name or self.addresses or self.aliases or self.signoffs) and not (
            self.signoff_patterns or self.segment
        ):
            raise ValueError("give a name, addresses, aliases, signoffs, patterns or a segment")
        return self


@dataclass(frozen=True)
class Shared:
    """What a policy set declares outside its rules, for any rule to refer to."""

    identities: tuple[Identity, ...] = ()
    internal_domains: frozenset[str] = frozenset()


class Rule(Strict):
    """Fields every rule kind has; a kind's model adds `kind: Literal[...]` and its keys."""

    id: str = Field(pattern=ID, description="Unique rule id.")
    kind: str
    when: When = Field(default_factory=When)
    mode: Mode | None = None
    action: Action | None = None
    description: str = ""

    def needs(self, shared: Shared) -> Needs:  # noqa: ARG002 - kinds that look things up use it
        """Say what the spool must look up for this rule."""
        return Needs()

    def problems(self, shared: Shared) -> list[tuple[str, str]]:  # noqa: ARG002 - as `needs`
        """Return (key under the rule, reason) of what is wrong across the policy files."""
        return []


@dataclass(frozen=True)
class Context:
    """One message of one campaign, with the facts the spool looked up for it."""

    campaign: Campaign
    submission: Submission
    facts: Facts
    internal_domains: frozenset[str] = frozenset()
    now: float = 0.0  # the engine's clock: seasonal windows are read from it

    def sample(self, indexes: Sequence[int] | frozenset[int]) -> list[str]:
        """Return up to SAMPLE recipient addresses, in message order."""
        return [self.submission.rcpt_tos[i] for i in sorted(indexes)[:SAMPLE]]

    def scan(self, rule_id: str) -> RuleScan:
        """Return what the content analysis found for `rule_id` in this message (or nothing)."""
        return self.submission.report.scans.get(rule_id, RuleScan())

    def missing_segments(self, rule_id: str, names: Iterable[str]) -> list[Observation]:
        """Fail closed: name the segments rule `rule_id` needs that were never loaded."""
        missing = sorted(n for n in names if self.facts.segment_sizes.get(n) is None)
        if not missing:
            return []
        return [
            Observation(
                kind="segment_missing",
                message=(
                    f"segment {', '.join(missing)} has not been loaded; rule {rule_id} holds the "
                    "campaigns it selects until it is uploaded"
                ),
                evidence={"segments": missing},
            )
        ]

    def outside(self, segment: str | None, domains: set[str]) -> frozenset[int]:
        """Indexes of recipients neither in `segment` nor in (a subdomain of) `domains`."""
        members = self.facts.members.get(segment, frozenset()) if segment else frozenset()
        return frozenset(
            i
            for i, box in enumerate(self.submission.mailboxes)
            if i not in members
            and not any(domain_of(box) == d or domain_of(box).endswith("." + d) for d in domains)
        )


@dataclass(frozen=True)
class Observation:
    """What a check saw: one kind of problem, its sentence and its evidence."""

    kind: str
    message: str
    evidence: dict[str, Any] = field(default_factory=dict)
    recipients: frozenset[int] = frozenset()  # indexes into rcpt_tos that `suppress` drops
    # False: a release does not clear it (only a sign-off does); it holds whenever raised.
    acknowledgeable: bool = True
    tallies: Mapping[str, int] = field(default_factory=dict)  # campaign tallies to add to


R = TypeVar("R", bound=Rule)
Scanner = Callable[[Any, Document, Shared], Sequence[ContentHit]]  # a unit's, its rule unknown


@dataclass(frozen=True)
class Unit(Generic[R]):
    """One rule kind: its parameters, its check, and its scanner if it reads content.

    The check runs inside the spool transaction (pure and quick); the scanner runs off the
    event loop on the decoded message, before it. `suppressible`: the kind's findings
    name single recipients, so `action: suppress` may drop just those. `count` returns
    campaign tallies to add to for every message, found something or not (a running
    total the check compares with a threshold). `throttle` names the relay throttle the
    rule puts on a campaign it selects. `judge` reads a campaign's provider feedback
    instead of a message: it runs when feedback is recorded, outside admission.
    """

    params: type[R]
    check: Callable[[R, Context], Sequence[Observation]]
    scan: Callable[[R, Document, Shared], Sequence[ContentHit]] | None = None
    suppressible: bool = False
    count: Callable[[R, Context], Mapping[str, int]] | None = None
    judge: Callable[[R, FeedbackStats], Sequence[Observation]] | None = None
    # The relay throttle the rule puts on a campaign it selects (the `throttle` kind).
    throttle: Callable[[R, Campaign], Throttle] | None = None

    @property
    def kind(self) -> str:
        """The `kind` policy files name this unit by: its model's one `Literal` value."""
        annotation = self.params.model_fields["kind"].annotation
        values = get_args(annotation)
        if get_origin(annotation) is not Literal or len(values) != 1:
            raise TypeError(f"{self.params.__name__}.kind must be a Literal of one string")
        return str(values[0])

    @property
    def reads_content(self) -> bool:
        """Tell whether the unit reads the message (it has a scanner)."""
        return self.scan is not None
