"""From a v3 mail send request to RFC 5322 messages: one per personalization.

Owns what the SMTP path gets from the platform's MTA and the HTTP path must make itself:
the header block (From, To, Cc, Reply-To, Subject, the request's headers), the body
(text/plain and text/html as alternatives, attachments), SendGrid's legacy substitutions
rendered into the subject and both bodies before any check reads them, the envelope
(sender, to + cc + bcc), and which campaign each message belongs to (`esp.campaign_from`).
The campaign key is written into the key header, so the message names its campaign as
SMTP mail does (relay, replay and inspection read it there). Custom args and categories
travel in an `X-SMTPAPI` header, which SendGrid's SMTP relay reads; a provider template
is named in `X-Sendbrake-Template-Id` (the policy rule `provider_template` judges it).
Pure: the standard `email` package, no I/O.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from email.headerregistry import Address as MailAddress
from email.message import EmailMessage
from email.policy import SMTP

import idna

from gateway.ingress.esp_request import (
    MAX_TEXT,
    Address,
    EspError,
    MailSend,
    Personalization,
    RequestInvalid,
)
from gateway.model import TEMPLATE_DATA_HEADER, TEMPLATE_HEADER

# Custom args that declare the send, and the declaration header each stands for.
DECLARING_ARGS = {
    "declared_size": "X-Declared-Size",
    "category": "X-Campaign-Category",
    "locale": "X-Campaign-Locale",
}
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


@dataclass(frozen=True, slots=True)
class Built:
    """One personalization as a message, with what admission needs beside the bytes."""

    mail_from: str
    rcpt_tos: tuple[str, ...]
    content: bytes
    key: str | None  # the campaign key from `esp.campaign_from`; None: an implicit campaign
    subject: str  # before substitutions: an implicit campaign's subject, the same for all
    # Lower-cased header name -> the request field it came from, to name refusals.
    fields: Mapping[str, str] = field(default_factory=dict)


def build(request: MailSend, *, campaign_from: Sequence[str], key_header: str) -> list[Built]:
    """Build every personalization's message; raise `RequestInvalid` for an unusable key."""
    return [
        _message(request, person, n, campaign_from, key_header)
        for n, person in enumerate(request.personalizations)
    ]


def render(text: str, substitutions: Mapping[str, str]) -> str:
    """Replace each substitution key by its value in one pass (values are not re-read)."""
    if not substitutions:
        return text
    keys = sorted(substitutions, key=len, reverse=True)  # the longest key wins at a place
    pattern = re.compile("|".join(re.escape(k) for k in keys))
    return pattern.sub(lambda match: substitutions[match.group(0)], text)


def _message(
    request: MailSend,
    person: Personalization,
    n: int,
    campaign_from: Sequence[str],
    key_header: str,
) -> Built:
    where = f"personalizations.{n}"
    subs = person.substitutions
    sender = person.from_ or request.from_
    subject = person.subject if person.subject is not None else request.subject or ""
    headers, fields = _headers(request, person, where)
    key, key_field = _campaign_key(request, person, where, campaign_from, headers)
    if key is not None and key_field is not None:
        for name in [h for h in headers if h.lower() == key_header.lower()]:
            del headers[name]
        headers[key_header] = key
        fields[key_header.lower()] = key_field

    msg = EmailMessage(policy=SMTP)
    msg["From"] = _mailbox(sender)
    msg["To"] = [_mailbox(a) for a in person.to]
    if person.cc:
        msg["Cc"] = [_mailbox(a) for a in person.cc]
    replies = request.reply_to_list or ([request.reply_to] if request.reply_to else [])
    if replies:
        msg["Reply-To"] = [_mailbox(a) for a in replies]
    msg["Subject"] = render(subject, subs)
    for name, value in headers.items():
        msg[name] = value
    smtpapi = _smtpapi(request, person)
    if smtpapi:
        msg["X-SMTPAPI"] = smtpapi
    if request.template_id is not None:
        msg[TEMPLATE_HEADER] = request.template_id
        if person.dynamic_template_data is not None:
            msg[TEMPLATE_DATA_HEADER] = json.dumps(person.dynamic_template_data)
    _body(msg, request, subs)
    return Built(
        mail_from=_envelope(sender.email),
        rcpt_tos=tuple(_envelope(a.email) for a in person.recipients),
        content=msg.as_bytes(),
        key=key,
        subject=subject,
        fields=fields,
    )


def _headers(
    request: MailSend, person: Personalization, where: str
) -> tuple[dict[str, str], dict[str, str]]:
    """Merge the request's headers, a personalization's over them, declarations from args."""
    headers: dict[str, str] = {}
    fields: dict[str, str] = {}
    for source, given in (("headers", request.headers), (f"{where}.headers", person.headers)):
        for name, value in given.items():
            for same in [h for h in headers if h.lower() == name.lower()]:
                del headers[same]
            headers[name] = value
            fields[name.lower()] = f"{source}.{name}"
    for arg, header in DECLARING_ARGS.items():
        if header.lower() in fields:
            continue  # a declaration header says it already
        for source, args in (
            (f"{where}.custom_args", person.custom_args),
            ("custom_args", request.custom_args),
        ):
            if arg in args:
                headers[header] = args[arg]
                fields[header.lower()] = f"{source}.{arg}"
                break
    return headers, fields


def _campaign_key(
    request: MailSend,
    person: Personalization,
    where: str,
    campaign_from: Sequence[str],
    headers: Mapping[str, str],
) -> tuple[str | None, str | None]:
    """Return (key, the field it came from) from the first source present, or (None, None)."""
    for source in campaign_from:
        kind, _, name = source.partition(":")
        found: tuple[str | None, str] = (None, "")
        if kind == "header":
            value = next((v for h, v in headers.items() if h.lower() == name.lower()), None)
            person_has = any(h.lower() == name.lower() for h in person.headers)
            found = (value, f"{where}.headers.{name}" if person_has else f"headers.{name}")
        elif kind == "custom_arg":
            if name in person.custom_args:
                found = (person.custom_args[name], f"{where}.custom_args.{name}")
            else:
                found = (request.custom_args.get(name), f"custom_args.{name}")
        elif kind == "batch_id":
            found = (request.batch_id, "batch_id")
        elif kind == "category" and request.categories:
            found = (request.categories[0], "categories.0")
        value, origin = found
        if value is not None and value.strip():
            return _checked_key(value.strip(), origin), origin
    return None, None


def _checked_key(value: str, origin: str) -> str:
    if len(value) > MAX_TEXT:
        raise RequestInvalid(
            [EspError(f"A campaign key is at most {MAX_TEXT} characters.", origin)]
        )
    if _CONTROL.search(value):
        raise RequestInvalid([EspError("A campaign key has no control characters.", origin)])
    return value


def _smtpapi(request: MailSend, person: Personalization) -> str:
    """Return custom args and categories as SendGrid's SMTP API header, or "" without them."""
    data: dict[str, object] = {}
    args = {**request.custom_args, **person.custom_args}
    if args:
        data["unique_args"] = args
    if request.categories:
        data["category"] = request.categories
    return json.dumps(data) if data else ""


def _body(msg: EmailMessage, request: MailSend, subs: Mapping[str, str]) -> None:
    """Set the bodies (rendered) and the attachments."""
    bodies = {c.type: render(c.value, subs) for c in request.content or ()}
    text, html = bodies.get("text/plain"), bodies.get("text/html")
    if text is not None:
        msg.set_content(text)
        if html is not None:
            msg.add_alternative(html, subtype="html")
    elif html is not None:
        msg.set_content(html, subtype="html")
    else:
        msg.set_content("")  # a provider template's send: the template is the content
    for attachment in request.attachments:
        maintype, _, subtype = (attachment.type or "application/octet-stream").partition("/")
        msg.add_attachment(
            attachment.content,
            maintype=maintype,
            subtype=subtype,
            filename=attachment.filename,
            disposition=attachment.disposition,
            cid=f"<{attachment.content_id}>" if attachment.content_id else None,
        )


def _envelope(email: str) -> str:
    """Return the address as SMTP carries it: an internationalised domain as A-labels."""
    local, _, domain = email.rpartition("@")
    if domain.isascii():
        return email
    return f"{local}@{idna.encode(domain, uts46=True).decode('ascii')}"


def _mailbox(address: Address) -> MailAddress:
    return MailAddress(display_name=address.name or "", addr_spec=_envelope(address.email))
