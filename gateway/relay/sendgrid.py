"""SendGrid's v3 mail send API as an upstream (`upstream.kind: sendgrid`).

Owns two things: turning a spooled MIME message into `POST /v3/mail/send` bodies (pure:
`request_bodies`), and making those calls on one pooled aiohttp session, classifying each
answer per recipient (STYLE.md rule 3). It never decides about retries: a transient answer
carries the provider's `Retry-After` in `RecipientResult.retry_after`, which the relay
honours. It must never log or echo the API key.

The conversion, field by field (docs/http-sending.md#http-upstream):
- `from`, `reply_to` / `reply_to_list`, `subject` from the decoded header fields;
- `content`: the message's text/plain and text/html bodies (as the `email` package finds
  them: `get_body`), decoded, plain first; empty ones are left out;
- `attachments`: every other leaf part, base64, with filename, type, and for a part with a
  Content-ID that is not an attachment, `disposition: inline` and its `content_id`;
- `headers`: the rest of the header block as sent (unfolded, encoded-words kept), first of
  each name, without `DROPPED_HEADERS`: those SendGrid refuses (its reserved list) and
  those it writes itself or that the fields above carry;
- `categories` and the sender's `custom_args` from `X-SMTPAPI` (`category`, `unique_args`,
  as the HTTP ingress writes them); `template_id` and `dynamic_template_data` from the
  ingress's template headers;
- one personalization per recipient, `to` alone (display name from To/Cc), with
  `custom_args` naming the message and campaign (`model.MESSAGE_ARG`/`CAMPAIGN_ARG`), which
  SendGrid echoes in every event; up to `upstream.personalizations_per_call` (at most the
  provider's 1,000) per call, so a larger message takes several calls.
"""

from __future__ import annotations

import asyncio
import base64
import email
import json
import mimetypes
import re
import time
from collections.abc import Callable, Iterator, Sequence
from email import policy
from email.message import EmailMessage, Message
from email.utils import parsedate_to_datetime
from typing import Any

import aiohttp
import structlog

from gateway.mail.addresses import mailbox_problem
from gateway.mail.headers import HeaderBlock
from gateway.model import (
    CAMPAIGN_ARG,
    CAMPAIGN_HEADER,
    MESSAGE_ARG,
    MESSAGE_HEADER,
    TEMPLATE_DATA_HEADER,
    TEMPLATE_HEADER,
    DeliveryIds,
    Outcome,
    RecipientResult,
)
from gateway.settings import UpstreamSettings

log = structlog.get_logger(__name__)

SEND_PATH = "/v3/mail/send"
# SendGrid refuses these in `headers` (its reserved list, case-insensitive)...
RESERVED_HEADERS = frozenset(
    {
        "x-sg-id",
        "x-sg-eid",
        "received",
        "dkim-signature",
        "content-type",
        "content-transfer-encoding",
        "to",
        "from",
        "subject",
        "reply-to",
        "cc",
        "bcc",
    }
)
# ...and these are written by the provider (it dates, signs and bounces the mail it sends),
# carried by other fields, or would mislead: a Bcc header, a sender's own attribution.
DROPPED_HEADERS = RESERVED_HEADERS | frozenset(
    {
        "mime-version",
        "date",
        "return-path",
        "x-smtpapi",
        TEMPLATE_HEADER.lower(),
        TEMPLATE_DATA_HEADER.lower(),
        MESSAGE_HEADER.lower(),
        CAMPAIGN_HEADER.lower(),
    }
)
PERMANENT_STATUSES = frozenset({400, 413})  # the request itself is refused
# The key is refused: an operator fixes it within relay.max_age, so the mail waits.
KEY_REFUSED = frozenset({401, 403})
MAX_ERROR_TEXT = 500  # characters of the provider's error kept in a reply
_READ_LIMIT = 64 * 1024  # bytes of an answer's body read (its errors), never more
_FOLD = re.compile(r"\r?\n(?=[ \t])")


class NotConvertible(Exception):
    """The message cannot be expressed as a mail send request; `reply` says why."""

    def __init__(self, reply: str) -> None:
        super().__init__(reply)
        self.reply = reply


# --- the conversion (pure) ------------------------------------------------------------------


def request_bodies(
    content: bytes,
    rcpts: Sequence[str],
    ids: DeliveryIds,
    mail_from: str = "",
    per_call: int = 1000,
) -> list[tuple[list[str], dict[str, Any]]]:
    """Return (recipients, JSON body) per call for `rcpts`; raise `NotConvertible`.

    `mail_from` (the envelope sender) is the `from` when the message has no From field.
    """
    shared, names, args, template_data = _message_fields(content, mail_from, ids)
    calls = []
    for start in range(0, len(rcpts), per_call):
        chunk = list(rcpts[start : start + per_call])
        people = []
        for rcpt in chunk:
            to: dict[str, str] = {"email": rcpt}
            if name := names.get(rcpt.lower()):
                to["name"] = name
            person: dict[str, Any] = {"to": [to], "custom_args": args}
            if template_data is not None:
                person["dynamic_template_data"] = template_data
            people.append(person)
        calls.append((chunk, {"personalizations": people, **shared}))
    return calls


def _message_fields(
    content: bytes, mail_from: str, ids: DeliveryIds
) -> tuple[dict[str, Any], dict[str, str], dict[str, str], Any]:
    """Return (the request's fields but personalizations, display names, custom args, data)."""
    msg = email.message_from_bytes(content, policy=policy.default)
    if not isinstance(msg, EmailMessage):  # the default policy always builds these
        raise NotConvertible("not sent: the message could not be parsed")
    block = HeaderBlock.parse(content)
    shared: dict[str, Any] = {"from": _sender(msg, mail_from)}
    replies = _addresses(msg, "Reply-To")
    if len(replies) == 1:
        shared["reply_to"] = replies[0]
    elif replies:
        shared["reply_to_list"] = replies
    if subject := (block.get("subject") or "").strip():
        shared["subject"] = subject
    if bodies := _bodies(msg):
        shared["content"] = bodies
    if attachments := _attachments(msg):
        shared["attachments"] = attachments
    shared["headers"] = _headers(block) | {
        MESSAGE_HEADER: ids.message_id,
        CAMPAIGN_HEADER: ids.campaign_id,
    }
    args = _custom_args(block, shared, ids)
    template_data = _template(block, shared)
    names = {
        address["email"].lower(): address["name"]
        for field in ("To", "Cc")
        for address in _addresses(msg, field)
        if "name" in address
    }
    return shared, names, args, template_data


def _custom_args(block: HeaderBlock, shared: dict[str, Any], ids: DeliveryIds) -> dict[str, str]:
    """Set `categories` from X-SMTPAPI; return the custom args, ours over the sender's."""
    smtpapi = _smtpapi(block)
    categories = smtpapi.get("category")
    if isinstance(categories, str):
        categories = [categories]
    if isinstance(categories, list) and categories:
        shared["categories"] = [str(c) for c in categories]
    unique = smtpapi.get("unique_args")
    args = {str(k): str(v) for k, v in unique.items()} if isinstance(unique, dict) else {}
    return args | {CAMPAIGN_ARG: ids.campaign_id, MESSAGE_ARG: ids.message_id}


def _template(block: HeaderBlock, shared: dict[str, Any]) -> Any:
    """Set `template_id` from the ingress's header; return its dynamic_template_data."""
    template = block.get(TEMPLATE_HEADER)
    if not template:
        return None
    shared["template_id"] = template
    raw = block.get(TEMPLATE_DATA_HEADER)
    if raw is None:
        return None
    try:
        return json.loads(raw)
    except ValueError:
        raise NotConvertible(
            f"not sent: {TEMPLATE_DATA_HEADER} is not JSON, so the template cannot be rendered"
        ) from None


def _addresses(msg: EmailMessage, name: str) -> list[dict[str, str]]:
    """Return the mailboxes of field `name` as SendGrid's {email, name}; [] if unreadable."""
    try:
        field = msg[name]
        found = field.addresses if field is not None else ()
    except (AttributeError, IndexError, TypeError, ValueError):
        return []
    out = []
    for address in found:
        if not address.addr_spec or "@" not in address.addr_spec:
            continue
        entry = {"email": address.addr_spec}
        if address.display_name:
            entry["name"] = address.display_name
        out.append(entry)
    return out


def _sender(msg: EmailMessage, mail_from: str) -> dict[str, str]:
    """Return the first From mailbox, else the envelope sender; SendGrid requires one."""
    senders = _addresses(msg, "From")
    if senders:
        return senders[0]
    if mail_from and mail_from != "<>":
        return {"email": mail_from}
    raise NotConvertible("not sent: the message has no From address for SendGrid's `from`")


def _bodies(msg: EmailMessage) -> list[dict[str, str]]:
    """Return text/plain, text/html: decoded, LF line ends, empty ones left out (refused)."""
    out = []
    for subtype in ("plain", "html"):
        part = msg.get_body(preferencelist=(subtype,))
        if part is None:
            continue
        text = _text(part).replace("\r\n", "\n")  # as an API client writes it
        if text:
            out.append({"type": f"text/{subtype}", "value": text})
    return out


def _text(part: Message) -> str:
    try:
        return str(part.get_content())  # type: ignore[attr-defined]
    except (LookupError, UnicodeError, ValueError, AssertionError):
        payload = part.get_payload(decode=True)  # an unknown charset: read it as UTF-8
        return payload.decode("utf-8", "replace") if isinstance(payload, bytes) else ""


def _leaves(part: Message, related: bool = False) -> Iterator[tuple[Message, bool]]:
    """Yield (leaf, inside multipart/related) in order; an attached message is one leaf."""
    if part.is_multipart() and part.get_content_maintype() == "multipart":
        inside = related or part.get_content_subtype() == "related"
        for child in part.get_payload():
            if isinstance(child, Message):
                yield from _leaves(child, inside)
    else:
        yield part, related


def _attachments(msg: EmailMessage) -> list[dict[str, str]]:
    """Return every leaf but the two bodies as attachments; a related part with a cid inline."""
    bodies = [msg.get_body(preferencelist=(s,)) for s in ("plain", "html")]
    out: list[dict[str, str]] = []
    for part, related in _leaves(msg):
        if any(part is body for body in bodies):
            continue
        if part.get_content_maintype() == "message":
            inner = part.get_payload(0) if part.is_multipart() else part.get_payload()
            data = inner.as_bytes() if isinstance(inner, Message) else str(inner).encode()
        else:
            payload = part.get_payload(decode=True)
            data = payload if isinstance(payload, bytes) else b""
        kind = part.get_content_type()
        ext = mimetypes.guess_extension(kind) or ".bin"
        filename = part.get_filename() or f"attachment-{len(out) + 1}{ext}"
        entry = {
            "content": base64.b64encode(data).decode("ascii"),
            "filename": filename,
            "type": kind,
            "disposition": "attachment",
        }
        # What the HTML shows by its cid is inline, whatever disposition a client wrote.
        cid = (part.get("Content-ID") or "").strip().strip("<>")
        if cid and (related or part.get_content_disposition() == "inline"):
            entry |= {"disposition": "inline", "content_id": cid}
        out.append(entry)
    return out


def _headers(block: HeaderBlock) -> dict[str, str]:
    """Return the fields SendGrid may take, as sent: unfolded, the first of each name."""
    out: dict[str, str] = {}
    seen: set[str] = set()
    for lowered, raw in block.fields:
        if lowered in DROPPED_HEADERS or lowered in seen or b":" not in raw:
            continue
        seen.add(lowered)
        name, _, value = raw.partition(b":")
        text = _FOLD.sub("", value.decode("utf-8", "replace")).strip()
        out[name.decode("ascii", "replace").strip()] = text
    return out


def _smtpapi(block: HeaderBlock) -> dict[str, Any]:
    raw = block.get("x-smtpapi")
    if not raw:
        return {}
    try:
        data = json.loads(raw)
    except ValueError:
        raise NotConvertible("not sent: the X-SMTPAPI header is not JSON") from None
    return data if isinstance(data, dict) else {}


# --- the calls ------------------------------------------------------------------------------


def retry_after(value: str | None, now: float) -> float | None:
    """Read `Retry-After` (delay-seconds or an HTTP date) as seconds from `now`, or None."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    return max(when.timestamp() - now, 0.0)


class SendGridUpstream:
    """Calls SendGrid's v3 mail send on one pooled session; answers per recipient.

    - 2xx (202): delivered, the reply names the provider's `X-Message-Id`;
    - 400, 413: permanent, with the provider's error text (the request itself is
      refused; a call with another body may pass, the same one never);
    - 401, 403: the API key is refused: transient, logged at error level, as a TLS setup
      fault of the SMTP upstream: a wrong or revoked key is an operator's to fix, and the
      mail must still be there when they have;
    - 429, 5xx, and any other status (a wrong `base_url`'s 404 is fixed by an operator):
      transient, with `Retry-After` when given; after a 429 no call is made until it has
      passed (each answers transient at once), so a throttled account is not hammered;
    - a refused or lost connection: transient; no answer within `upstream.request_timeout`,
      or the connection lost once the request was sent: transient, though the provider may
      have accepted it, so the retry can deliver it twice (as SMTP's missing DATA reply).
    """

    def __init__(
        self,
        settings: UpstreamSettings,
        *,
        wall: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._settings = settings
        self._url = settings.base_url.rstrip("/") + SEND_PATH
        self._session: aiohttp.ClientSession | None = None
        self._wall = wall
        self._monotonic = monotonic
        self._quiet_until = 0.0  # monotonic time before which a 429 asked us not to call

    async def open(self) -> None:
        """Create the pooled session (deliveries create it too, when open was not called)."""
        self._ensure_session()

    def _ensure_session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            s = self._settings
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=s.pool_size),
                timeout=aiohttp.ClientTimeout(total=s.request_timeout, connect=s.connect_timeout),
                headers={"Authorization": f"Bearer {s.api_key.get_secret_value()}"},
                raise_for_status=False,
            )
        return self._session

    async def close(self) -> None:
        """Close the session and its pooled connections."""
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def deliver(
        self, mail_from: str, rcpts: Sequence[str], content: bytes, ids: DeliveryIds
    ) -> list[RecipientResult]:
        """Send the message to `rcpts` in as few calls as the limit allows; answer each."""
        answers = {
            rcpt: RecipientResult(
                rcpt, Outcome.PERMANENT, f"not sent: the recipient address {problem}"
            )
            for rcpt in rcpts
            if (problem := mailbox_problem(rcpt))
        }
        sendable = [rcpt for rcpt in rcpts if rcpt not in answers]
        if sendable:
            try:  # parsing, base64 and JSON of a large message: off the event loop
                calls = await asyncio.to_thread(
                    _encoded, content, sendable, ids, mail_from, self._settings
                )
            except NotConvertible as exc:
                calls = []
                answers.update(_all(sendable, Outcome.PERMANENT, exc.reply))
            for chunk, body in calls:
                answers.update(await self._call(chunk, body))
        return [answers[rcpt] for rcpt in rcpts]

    async def _call(self, rcpts: list[str], body: bytes) -> dict[str, RecipientResult]:
        """Make one call for `rcpts`; every fault becomes their answer."""
        wait = self._quiet_until - self._monotonic()
        if wait > 0:
            reply = f"429 not sent: SendGrid asked to wait, {wait:.0f}s more (Retry-After)"
            return _all(rcpts, Outcome.TRANSIENT, reply, wait)
        session = self._ensure_session()
        try:
            async with session.post(
                self._url, data=body, headers={"Content-Type": "application/json"}
            ) as response:
                text = (await response.content.read(_READ_LIMIT)).decode("utf-8", "replace")
                return self._answer(rcpts, response, text)
        except aiohttp.ConnectionTimeoutError:
            timeout = self._settings.connect_timeout
            reply = f"SendGrid unreachable: no connection within upstream.connect_timeout ({timeout:g}s)"
            return _all(rcpts, Outcome.TRANSIENT, reply)
        except TimeoutError:
            timeout = self._settings.request_timeout
            return _all(
                rcpts,
                Outcome.TRANSIENT,
                f"SendGrid did not answer within upstream.request_timeout ({timeout:g}s): it"
                " may have accepted the message, so the retry can deliver it twice",
            )
        except aiohttp.ClientConnectorError as exc:
            return _all(rcpts, Outcome.TRANSIENT, f"SendGrid unreachable: {exc.os_error}")
        except aiohttp.ClientError as exc:
            return _all(
                rcpts,
                Outcome.TRANSIENT,
                f"SendGrid connection lost ({type(exc).__name__}: {exc}): it may have"
                " accepted the message, so the retry can deliver it twice",
            )

    def _answer(
        self, rcpts: list[str], response: aiohttp.ClientResponse, text: str
    ) -> dict[str, RecipientResult]:
        status = response.status
        if 200 <= status < 300:
            message_id = response.headers.get("X-Message-Id", "none given")
            reply = f"{status} accepted by SendGrid (X-Message-Id {message_id})"
            return _all(rcpts, Outcome.DELIVERED, reply)
        error = _error_text(text) or response.reason or "no reason given"
        if status in KEY_REFUSED:
            log.error("sendgrid_key_refused", status=status, error=error)
            return _all(rcpts, Outcome.TRANSIENT, f"{status} key refused by SendGrid: {error}")
        if status in PERMANENT_STATUSES:
            return _all(rcpts, Outcome.PERMANENT, f"{status} refused by SendGrid: {error}")
        delay = retry_after(response.headers.get("Retry-After"), self._wall())
        if status == 429:
            self._quiet_until = self._monotonic() + (delay or 0.0)
            shown = f" (Retry-After {delay:g}s)" if delay is not None else ""
            return _all(rcpts, Outcome.TRANSIENT, f"429 throttled by SendGrid{shown}", delay)
        return _all(rcpts, Outcome.TRANSIENT, f"{status} SendGrid error: {error}", delay)


def _encoded(
    content: bytes,
    rcpts: Sequence[str],
    ids: DeliveryIds,
    mail_from: str,
    settings: UpstreamSettings,
) -> list[tuple[list[str], bytes]]:
    per_call = settings.personalizations_per_call
    return [
        (chunk, json.dumps(body, ensure_ascii=False).encode("utf-8"))
        for chunk, body in request_bodies(content, rcpts, ids, mail_from, per_call)
    ]


def _error_text(text: str) -> str:
    """SendGrid's `{"errors": [{"message", "field"}]}` as one line, or the text as it is."""
    try:
        errors = json.loads(text).get("errors")
        found = [
            f"{e['field']}: {e['message']}" if e.get("field") else str(e.get("message"))
            for e in errors
            if isinstance(e, dict)
        ]
        joined = "; ".join(found)
    except (ValueError, AttributeError, TypeError, KeyError):
        joined = " ".join(text.split())
    return joined[:MAX_ERROR_TEXT]


def _all(
    rcpts: Sequence[str], outcome: Outcome, reply: str, retry: float | None = None
) -> dict[str, RecipientResult]:
    return {rcpt: RecipientResult(rcpt, outcome, reply, retry) for rcpt in rcpts}
