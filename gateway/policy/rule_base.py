"""What every policy rule has: an id, a `when` selector, a mode and an action.

The base of the rule models in `rules` (blast radius, segmentation) and `content_rules`
(signature and content), split out so both can build on it without importing each other.
"""

from __future__ import annotations

import fnmatch
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from gateway.model import Campaign, Needs

Mode = Literal["enforce", "shadow"]
Action = Literal["hold", "suppress"]


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


class Rule(Strict):
    """Fields every rule kind has."""

    id: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$", description="Unique rule id.")
    when: When = Field(default_factory=When)
    mode: Mode | None = None
    action: Action | None = None
    description: str = ""

    def needs(self) -> Needs:
        """Say what the spool must look up for this rule."""
        return Needs()
