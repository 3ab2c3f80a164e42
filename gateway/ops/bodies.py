"""Request bodies of the ops API as pydantic models: what each mutating call accepts.

Handlers validate JSON bodies through these models (`exchange.read_body`), and the OpenAPI
document's request schemas are generated from them. Unknown fields are refused.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class ReasonBody(BaseModel):
    """Body of hold, reject, pause, resume and policy reload: why, for the audit log."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    reason: str = Field(min_length=1, description="Why; written to the audit log.")


class ReleaseBody(ReasonBody):
    """Body of release: all held recipients, or only some."""

    max_recipients: int | None = Field(
        None, ge=1, description="Release at most this many, oldest first."
    )
    only_segment: str | None = Field(
        None, description="Release only held recipients in this segment."
    )


class ManifestBody(ReasonBody):
    """Body of PUT /campaigns/{key}: what the campaign is meant to be."""

    size: int | None = Field(None, ge=0, description="Intended number of recipients.")
    category: str | None = Field(
        None, min_length=1, description="e.g. newsletter, survey, win-back."
    )
    locale: str | None = Field(None, min_length=1, description="e.g. en, de-AT.")
    client: str = Field("*", min_length=1, description="Client the key belongs to; * for any.")


class SignoffBody(ReasonBody):
    """Body of POST /campaigns/{id}/signoffs."""

    identity: str | None = Field(
        None, min_length=1, description="Identity signing off; default: the token's own."
    )
