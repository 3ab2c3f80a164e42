"""The body of SendGrid's v3 `POST /v3/mail/send`, read into models with SendGrid's names.

Owns what a request may say and every reason it can be refused, each as a SendGrid-shaped
error naming the field that is wrong (`personalizations.0.to.0.email`): unknown fields
and the provider features the gateway cannot honour (sandbox mode, tracking, unsubscribe
groups, IP pools, legacy sections) are refused rather than dropped, because dropping them
would change what is delivered. Pure: no I/O, no event loop; the clock is passed in.
"""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError

from gateway.mail.addresses import mailbox_problem

MAX_ERRORS = 20  # errors reported for one request; the rest would only repeat them
MAX_CATEGORIES = 10  # SendGrid's limit
MAX_TEXT = 255  # characters of a category, batch id, template id or header name
SEND_AT_SLACK = 60.0  # seconds a send_at may lie ahead of this clock and still mean "now"
_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")  # a tab may stand in a header value
_HEADER_NAME = re.compile(r"[!-9;-~]{1,255}")  # RFC 5322 ftext
# Headers the gateway writes from the request's own fields (SendGrid refuses them too).
RESERVED_HEADERS = frozenset(
    name.lower()
    for name in (
        *("From", "To", "Cc", "Bcc", "Reply-To", "Subject", "Content-Type", "MIME-Version"),
        *("Content-Transfer-Encoding", "Received", "DKIM-Signature", "X-SG-ID", "X-SG-EID"),
        *("X-SMTPAPI", "X-Sendbrake-Template-Id", "X-Sendbrake-Template-Data"),
    )
)
# Provider features a relay cannot honour: refused by name, never dropped.
UNHONOURED = ("asm", "ip_pool_name", "mail_settings", "tracking_settings", "sections")
UNSUPPORTED = (
    "not supported by sendbrake's send API: leave it out, or configure it on the"
    " provider (docs/http-sending.md)"
)


@dataclass(frozen=True, slots=True)
class EspError:
    """One entry of a SendGrid error answer: what is wrong, and the field."""

    message: str
    field: str | None = None

    def dump(self) -> dict[str, str | None]:
        """Return the JSON object SendGrid's clients read."""
        return {"message": self.message, "field": self.field, "help": None}


class RequestInvalid(Exception):
    """The request cannot be sent as it is; `errors` names each wrong field."""

    def __init__(self, errors: list[EspError]) -> None:
        super().__init__("; ".join(f"{e.field}: {e.message}" for e in errors))
        self.errors = errors[:MAX_ERRORS]


def _email(value: object) -> object:
    if not isinstance(value, str):
        return value  # pydantic says what the type should be
    problem = mailbox_problem(value)
    if problem is not None:
        raise ValueError(f"The email address {problem}.")
    if not value.rpartition("@")[0].isascii():
        raise ValueError("The email address has a non-ASCII local part, which is not supported.")
    return value


def _line(value: object) -> object:
    if isinstance(value, str) and _CONTROL.search(value):
        raise ValueError("The value contains a line break or another control character.")
    return value


def _base64(value: object) -> object:
    if not isinstance(value, str):
        return value
    try:
        return base64.b64decode("".join(value.split()), validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("The attachment content must be base64 encoded.") from None


def _header_name(value: object) -> object:
    if isinstance(value, str) and not _HEADER_NAME.fullmatch(value):
        raise ValueError("is not a valid header name (printable ASCII without a colon)")
    return value


Line = Annotated[str, BeforeValidator(_line)]
Text = Annotated[str, BeforeValidator(_line), Field(min_length=1, max_length=MAX_TEXT)]
HeaderName = Annotated[str, BeforeValidator(_header_name)]
Headers = dict[HeaderName, Line]
Strings = dict[Annotated[str, Field(min_length=1)], str]


class _Strict(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)


class Address(_Strict):
    """An email object: `{"email": ..., "name": ...}`."""

    email: Annotated[str, BeforeValidator(_email)]
    name: Line | None = None


class Content(_Strict):
    """One body: `{"type": "text/plain" | "text/html", "value": ...}`."""

    type: Literal["text/plain", "text/html"]
    value: str = Field(min_length=1)


class Attachment(_Strict):
    """One attachment, its content base64 encoded."""

    content: Annotated[bytes, BeforeValidator(_base64)]
    filename: Text
    type: Annotated[str, Field(pattern=r"^[\w.+-]+/[\w.+-]+$")] | None = None
    disposition: Literal["attachment", "inline"] = "attachment"
    content_id: Text | None = None


class Personalization(_Strict):
    """One envelope of a send: its recipients and what differs for them."""

    to: list[Address] = Field(min_length=1)
    cc: list[Address] = Field(default_factory=list)
    bcc: list[Address] = Field(default_factory=list)
    from_: Address | None = Field(None, alias="from")
    subject: Line | None = None
    headers: Headers = Field(default_factory=dict)
    substitutions: Strings = Field(default_factory=dict)
    dynamic_template_data: dict[str, Any] | None = None
    custom_args: dict[str, str] = Field(default_factory=dict)
    send_at: int | None = None

    @property
    def recipients(self) -> list[Address]:
        """to, cc and bcc, in that order: the envelope's recipients."""
        return [*self.to, *self.cc, *self.bcc]


class MailSend(_Strict):
    """The whole request body of `POST /v3/mail/send`."""

    personalizations: list[Personalization] = Field(min_length=1)
    from_: Address = Field(alias="from")
    reply_to: Address | None = None
    reply_to_list: list[Address] | None = None
    subject: Line | None = None
    content: list[Content] | None = None
    attachments: list[Attachment] = Field(default_factory=list)
    template_id: Text | None = None
    headers: Headers = Field(default_factory=dict)
    categories: list[Text] = Field(default_factory=list, max_length=MAX_CATEGORIES)
    custom_args: dict[str, str] = Field(default_factory=dict)
    send_at: int | None = None
    batch_id: Text | None = None
    # UNHONOURED: accepted by the model so that `parse` names them as unsupported.
    asm: Any = None
    ip_pool_name: Any = None
    mail_settings: Any = None
    tracking_settings: Any = None
    sections: Any = None


def parse(data: object, *, max_personalizations: int, max_recipients: int, now: float) -> MailSend:
    """Read a decoded JSON body; raise `RequestInvalid` naming every wrong field."""
    if not isinstance(data, dict):
        raise RequestInvalid([EspError("The request body must be a JSON object.", None)])
    # Named first, and even when other fields are wrong: leaving them out is the fix.
    unsupported = [EspError(f"The field is {UNSUPPORTED}.", n) for n in UNHONOURED if n in data]
    try:
        request = MailSend.model_validate(data)
    except ValidationError as exc:
        raise RequestInvalid([*unsupported, *(_error(e) for e in exc.errors())]) from None
    errors = unsupported + _semantics(request, max_personalizations, max_recipients, now)
    if errors:
        raise RequestInvalid(errors)
    return request


def _error(error: Any) -> EspError:
    """Turn one pydantic error into SendGrid's shape, the field as a dotted path."""
    field = ".".join(str(part) for part in error["loc"]) or None
    kind, text = error["type"], str(error["msg"])
    if kind == "missing":
        text = "The field is required."
    elif kind == "extra_forbidden":
        text = "The field is not part of the v3 mail send API."
    elif kind == "value_error":
        text = text.removeprefix("Value error, ")
    else:
        text = text[:1].upper() + text[1:] + "."
    return EspError(text, field)


def _semantics(
    request: MailSend, max_personalizations: int, max_recipients: int, now: float
) -> list[EspError]:
    """Check what the models cannot alone: limits, and fields that depend on each other."""
    errors = []
    people = request.personalizations
    if len(people) > max_personalizations:
        errors.append(
            EspError(
                f"The personalizations field may have at most {max_personalizations} items.",
                "personalizations",
            )
        )
    if sum(len(p.recipients) for p in people) > max_recipients:
        errors.append(
            EspError(
                f"The request may have at most {max_recipients} recipients (to, cc and bcc).",
                "personalizations",
            )
        )
    if request.reply_to is not None and request.reply_to_list is not None:
        errors.append(EspError("Give reply_to or reply_to_list, not both.", "reply_to_list"))
    errors += _content_errors(request)
    errors += _header_errors(request.headers, "headers")
    for n, person in enumerate(people):
        errors += _personalization_errors(request, person, f"personalizations.{n}", now)
    if request.send_at is not None and request.send_at > now + SEND_AT_SLACK:
        errors.append(EspError(_LATER, "send_at"))
    return errors


_LATER = (
    "Scheduled sending is not supported: the gateway relays once the campaign may send;"
    " leave send_at out or give a time that is not in the future."
)


def _personalization_errors(
    request: MailSend, person: Personalization, where: str, now: float
) -> list[EspError]:
    errors = []
    if request.subject is None and person.subject is None and request.template_id is None:
        errors.append(EspError("The subject is required.", f"{where}.subject"))
    seen: set[str] = set()
    for kind in ("to", "cc", "bcc"):
        for m, address in enumerate(getattr(person, kind)):
            if address.email.lower() in seen:
                errors.append(
                    EspError(
                        "Each email address of a personalization must be unique across"
                        " to, cc and bcc.",
                        f"{where}.{kind}.{m}.email",
                    )
                )
            seen.add(address.email.lower())
    errors += _header_errors(person.headers, f"{where}.headers")
    if person.send_at is not None and person.send_at > now + SEND_AT_SLACK:
        errors.append(EspError(_LATER, f"{where}.send_at"))
    return errors


def _content_errors(request: MailSend) -> list[EspError]:
    if not request.content:
        if request.template_id is None:
            return [EspError("Give at least one content (text/plain or text/html).", "content")]
        return []
    errors = []
    types = [c.type for c in request.content]
    for n, kind in enumerate(types):
        if kind in types[:n]:
            errors.append(EspError(f"Only one content of type {kind}.", f"content.{n}.type"))
    if types[0] != "text/plain" and "text/plain" in types:
        errors.append(EspError("The text/plain content must come first.", "content.0.type"))
    return errors


def _header_errors(headers: dict[str, str], where: str) -> list[EspError]:
    return [
        EspError(
            f"The header {name} is set from the request's own fields and may not be given.",
            f"{where}.{name}",
        )
        for name in headers
        if name.lower() in RESERVED_HEADERS
    ]
