"""Delivery status notifications (RFC 3464) and abuse reports (ARF, RFC 5965) as events.

A report is a `multipart/report`: a human part, a machine part (`message/delivery-status`
with one block of fields per recipient, or `message/feedback-report`), and the returned
message or its header block (`message/rfc822`, `text/rfc822-headers`), which carries the
gateway's `X-Sendbrake-Message` header when the mail went out through it. Each
recipient's block becomes one `FeedbackEvent`: `Action: failed` is a bounce, `delivered`
(or `relayed`, `expanded`) a delivery, `delayed` nothing counted; an ARF report of any
feedback type is a complaint. Pure: the standard library's email parser, no I/O.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from email import message_from_bytes, policy
from email.message import Message
from email.parser import HeaderParser
from typing import Any

from gateway.mail.addresses import normalise_address
from gateway.model import FeedbackEvent

MESSAGE_HEADER = "X-Sendbrake-Message"
CAMPAIGN_HEADER = "X-Sendbrake-Campaign"
SOURCE = "dsn"
ACTIONS = {"failed": "bounced", "delivered": "delivered", "relayed": "delivered",
           "expanded": "delivered", "delayed": None}  # fmt: skip
MAX_FIELD = 300  # characters of a report field kept as evidence


@dataclass(frozen=True, slots=True)
class _Report:
    """What every event of one report shares."""

    digest: str  # of the whole report: the same report received twice counts once
    message_id: str  # the gateway's, from the returned header block, or ""
    now: float
    casefold: bool

    def event(
        self, event: str, kind: str | None, recipient: str, evidence: dict[str, Any]
    ) -> FeedbackEvent:
        mailbox = normalise_address(recipient, self.casefold) or recipient.casefold()
        return FeedbackEvent(
            event_id=f"{self.digest}:{mailbox}",
            event=event,
            kind=kind,
            recipient=mailbox,
            message_id=self.message_id,
            at=self.now,
            evidence={"email": recipient, **evidence},
        )


def parse_report(
    content: bytes, now: float, *, casefold_local: bool = True
) -> list[FeedbackEvent] | None:
    """Return the events a report carries (possibly none), or None when it is no report.

    The events' IDs are digests of the report and the recipient, so the same report
    received twice counts once.
    """
    message = message_from_bytes(content, policy=policy.compat32)
    if message.get_content_type() != "multipart/report":
        return None
    returned = _returned_headers(message)
    report = _Report(
        digest=hashlib.sha256(content).hexdigest()[:32],
        message_id=_clean(returned.get(MESSAGE_HEADER, "")) if returned else "",
        now=now,
        casefold=casefold_local,
    )
    for part in message.walk():
        kind = part.get_content_type()
        if kind == "message/delivery-status":
            return _dsn_events(report, _blocks(part)[1:])
        if kind == "message/feedback-report":
            return _arf_events(report, _blocks(part), returned)
    return []


def _dsn_events(report: _Report, blocks: list[Message]) -> list[FeedbackEvent]:
    """Return one event per recipient block whose action is known."""
    events = []
    for block in blocks:
        recipient = _address(block.get("Final-Recipient") or block.get("Original-Recipient"))
        action = _clean(block.get("Action", "")).lower()
        if not recipient or action not in ACTIONS:
            continue
        evidence = {
            name.lower(): _clean(block.get(name, ""))[:MAX_FIELD]
            for name in ("Action", "Status", "Diagnostic-Code", "Remote-MTA")
            if block.get(name)
        }
        events.append(report.event(action, ACTIONS[action], recipient, evidence))
    return events


def _arf_events(
    report: _Report, blocks: list[Message], returned: Message | None
) -> list[FeedbackEvent]:
    """Return the complaint an abuse report makes, if it names whom it is about."""
    fields = blocks[0] if blocks else Message()
    recipient = _address(fields.get("Original-Rcpt-To")) or (
        _address(returned.get("To")) if returned else ""
    )
    if not recipient:
        return []
    feedback_type = _clean(fields.get("Feedback-Type", "abuse")).lower()
    evidence = {"feedback-type": feedback_type[:MAX_FIELD]}
    if fields.get("User-Agent"):
        evidence["user-agent"] = _clean(fields["User-Agent"])[:MAX_FIELD]
    return [report.event(feedback_type, "complained", recipient, evidence)]


def _blocks(part: Message) -> list[Message]:
    """Return the field blocks of a machine-readable part, however the parser left them."""
    payload = part.get_payload()
    if isinstance(payload, list):
        return [p for p in payload if isinstance(p, Message)]
    text = payload if isinstance(payload, str) else ""
    return [HeaderParser().parsestr(b.strip() + "\n") for b in text.split("\n\n") if b.strip()]


def _returned_headers(message: Message) -> Message | None:
    """Return the header block of the message the report is about, if it came back."""
    for part in message.walk():
        kind = part.get_content_type()
        if kind in ("message/rfc822", "message/rfc822-headers"):
            inner = part.get_payload()
            if isinstance(inner, list) and inner and isinstance(inner[0], Message):
                return inner[0]
        if kind == "text/rfc822-headers":
            raw = part.get_payload(decode=True)
            text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else ""
            return HeaderParser().parsestr(text)
    return None


def _address(value: str | None) -> str:
    """Return the address of an `rfc822; addr` field (RFC 3464 2.3.2), or ""."""
    if not value:
        return ""
    _, _, address = _clean(value).rpartition(";")
    return address.strip().strip("<>").strip()


def _clean(value: object) -> str:
    return " ".join(str(value).split())
