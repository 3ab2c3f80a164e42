"""The shape of a policy file (DESIGN.md §10), as strict pydantic models.

Names here are the operator contract. Each rule kind is one model; `kind` selects it.
Validation errors carry key paths that the loader turns into file:line:key messages.
"""

from __future__ import annotations

import fnmatch
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

from gateway.model import Campaign

Mode = Literal["enforce", "shadow"]
Action = Literal["hold", "suppress"]


class _Strict(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class When(_Strict):
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


class Defaults(_Strict):
    """Mode and action for rules of the same file that do not set their own."""

    mode: Mode = "enforce"
    action: Action = "hold"


class _Rule(_Strict):
    id: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$", description="Unique rule id.")
    when: When = Field(default_factory=When)
    mode: Mode | None = None
    action: Action | None = None
    description: str = ""


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


Rule = Annotated[
    DeclaredSize | UndeclaredLimit | AbsoluteCeiling | DuplicateRecipients,
    Field(discriminator="kind"),
]
RULE_KINDS = ("declared_size", "undeclared_limit", "absolute_ceiling", "duplicate_recipients")
# Kinds whose findings name single recipients, so `action: suppress` can drop just those.
SUPPRESSIBLE = frozenset({"duplicate_recipients"})


class PolicyFile(_Strict):
    """One YAML file in the policy directory."""

    version: Literal[1]
    defaults: Defaults = Field(default_factory=Defaults)
    internal_domains: list[str] = Field(default_factory=list)
    rules: list[Rule] = Field(default_factory=list)
