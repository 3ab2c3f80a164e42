"""Request bodies of the ops API as pydantic models: what each mutating call accepts.

Handlers validate JSON bodies through these models (`exchange.read_body`), and the OpenAPI
document's request schemas are generated from them. Unknown fields are refused; numbers
must be JSON integers within what the spool can store; text must be printable Unicode
(no control characters, no lone surrogates), non-blank and of a bounded length, so what
lands in the audit log and the spool is something an operator can read.
"""

from __future__ import annotations

import unicodedata
from typing import Annotated

from pydantic import (
    AfterValidator,
    Base64Bytes,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationInfo,
    WithJsonSchema,
    field_validator,
    model_validator,
)

from gateway.settings import Duration

MAX_REASON = 1000
MAX_NAME = 200
# PostgreSQL's integer: the largest count either spool stores in every column.
MAX_COUNT = 2**31 - 1
_ALLOWED_CONTROLS = frozenset("\t\n")  # a reason may have several lines


def printable(value: str, *, multiline: bool = False) -> str:
    """Return `value` if it is non-blank printable text; raise ValueError saying why not."""
    if not value.strip():
        raise ValueError("must not be blank")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("must be valid Unicode (no lone surrogates)") from None
    allowed = _ALLOWED_CONTROLS if multiline else frozenset()
    if any(unicodedata.category(c) == "Cc" and c not in allowed for c in value):
        raise ValueError("must not contain control characters")
    return value


def _reason(value: str) -> str:
    return printable(value, multiline=True)


Reason = Annotated[
    str,
    Field(min_length=1, max_length=MAX_REASON, description="Why; written to the audit log."),
    AfterValidator(_reason),
]
Name = Annotated[str, Field(min_length=1, max_length=MAX_NAME), AfterValidator(printable)]
Locale = Annotated[str, Field(min_length=1, max_length=35), AfterValidator(printable)]
Count = Annotated[int, Field(strict=True, le=MAX_COUNT)]


class ReasonBody(BaseModel):
    """Body of hold, reject, pause, resume and policy reload: why, for the audit log."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    reason: Reason


def _canary(value: object) -> object:
    """Check a canary slice: a count of at least 1, or a share such as '5%' (0 to 100)."""
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise ValueError("give a count such as 100 or a share such as '5%'")  # noqa: TRY004 - pydantic reports ValueError as the field's error
    if isinstance(value, int):
        if not 1 <= value <= MAX_COUNT:
            raise ValueError("a canary count must be at least 1")
        return value
    try:
        share = float(value.removesuffix("%")) if value.endswith("%") else None
    except ValueError:
        share = None
    if share is None or not 0 < share < 100:
        raise ValueError("a canary share must look like '5%', above 0 and below 100")
    return value


Slice = Annotated[
    int | str,
    BeforeValidator(_canary),
    WithJsonSchema(
        {"oneOf": [{"type": "integer", "minimum": 1}, {"type": "string", "pattern": r"^[0-9.]+%$"}]}
    ),
]


class ReleaseBody(ReasonBody):
    """Body of release: all held recipients, or only some."""

    max_recipients: Count | None = Field(
        None, ge=1, description="Release at most this many, oldest first."
    )
    only_segment: Name | None = Field(
        None, description="Release only held recipients in this segment."
    )
    canary: Slice | None = Field(
        None,
        description=(
            "Release this many held recipients (or this share, e.g. '5%') first and the rest"
            " once their feedback stayed quiet for `observe`."
        ),
    )
    observe: Duration | None = Field(
        None,
        gt=0,
        description="With canary: how long the slice's feedback must stay quiet (e.g. '30m').",
    )

    @field_validator("canary")
    @classmethod
    def _canary_alone(cls, value: int | str | None, info: ValidationInfo) -> int | str | None:
        if value is not None and (info.data.get("max_recipients") or info.data.get("only_segment")):
            raise ValueError("a canary release takes neither max_recipients nor only_segment")
        return value

    @field_validator("observe")
    @classmethod
    def _observe_with_canary(cls, value: float | None, info: ValidationInfo) -> float | None:
        if value is not None and info.data.get("canary") is None:
            raise ValueError("observe is only meaningful with canary")
        return value

    @property
    def canary_percent(self) -> float | None:
        """The canary as a share of the held recipients, when given as one."""
        return float(self.canary[:-1]) if isinstance(self.canary, str) else None


class ManifestBody(ReasonBody):
    """Body of PUT /campaigns/{key}: what the campaign is meant to be."""

    size: Count | None = Field(None, ge=0, description="Intended number of recipients.")
    category: Name | None = Field(None, description="e.g. newsletter, survey, win-back.")
    locale: Locale | None = Field(None, description="e.g. en, de-AT.")
    client: Name = Field("*", description="Client the key belongs to; * for any.")


class SignoffBody(ReasonBody):
    """Body of POST /campaigns/{id}/signoffs."""

    identity: Name | None = Field(
        None, description="Identity signing off; default: the token's own."
    )


MAX_PREFLIGHT_RECIPIENTS = 1000  # as smtp.max_recipients' default: one transaction's worth


class PreflightBody(BaseModel):
    """Body of POST /preflight: a message, its declaration and its audience."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    message: str | None = Field(
        None,
        min_length=1,
        description="The message as raw RFC 5322 text (UTF-8; line ends become CRLF).",
    )
    message_base64: Base64Bytes | None = Field(
        None, description="Or the message's exact bytes, base64-encoded (8-bit mail)."
    )
    size: Count | None = Field(None, ge=0, description="Declared size (X-Declared-Size).")
    category: Name | None = Field(None, description="Declared category (X-Campaign-Category).")
    locale: Locale | None = Field(None, description="Declared locale (X-Campaign-Locale).")
    recipients: list[Name] = Field(
        default_factory=list,
        max_length=MAX_PREFLIGHT_RECIPIENTS,
        description="The audience (addresses); default: the message's To and Cc.",
    )
    segment: Name | None = Field(
        None,
        description=(
            "Or the audience as a loaded segment: every member is a recipient (segments"
            " keep address hashes only: rules that read an address's domain see none)."
        ),
    )
    mail_from: Name | None = Field(None, description="Envelope sender; default: the From address.")
    client: Name | None = Field(
        None,
        description=(
            "Judge it as this client's next message (an SMTP user, or an allowed network"
            " such as 127.0.0.0/8), with its campaign's counters; default: a new campaign."
        ),
    )

    @model_validator(mode="after")
    def _one_message(self) -> PreflightBody:
        if (self.message is None) == (self.message_base64 is None):
            raise ValueError("give the message as message or as message_base64, not both")
        if self.recipients and self.segment is not None:
            raise ValueError("give the audience as recipients or as a segment, not both")
        return self

    def content(self) -> bytes:
        """Return the message's bytes, line ends CRLF."""
        raw = self.message_base64 or (self.message or "").encode("utf-8")
        return raw.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
