"""JSON shapes of the ops API (DESIGN.md §10): campaigns, findings, recipients, audit.

Pure functions from model records to plain data; the contract's field names live here.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import asdict
from datetime import UTC, datetime
from typing import Any

from gateway.mime import HeaderBlock, text_preview
from gateway.model import (
    AuditEntry,
    Campaign,
    CampaignEvent,
    Finding,
    RecipientRecord,
    StoredMessage,
)
from gateway.signoffs import Signoff


def timestamp(value: float | None) -> str | None:
    """Render epoch seconds as RFC 3339 UTC."""
    if value is None:
        return None
    return (
        datetime.fromtimestamp(value, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    )


def finding_json(finding: Finding) -> dict[str, Any]:
    """Render one finding."""
    data = asdict(finding)
    data["at"] = timestamp(finding.at)
    return data


def campaign_json(campaign: Campaign) -> dict[str, Any]:
    """Render a campaign as listed and shown."""
    return {
        "id": campaign.id,
        "key": campaign.key,
        "client": campaign.client,
        "implicit": campaign.implicit,
        "state": str(campaign.state),
        "sender": campaign.sender,
        "subject": campaign.subject,
        "declared": asdict(campaign.declared),
        "counters": asdict(campaign.counters),
        "duplicates": campaign.duplicates,
        "findings": [finding_json(f) for f in campaign.findings],
        "acknowledged": [
            {"rule": rule, "kind": kind} for rule, kind in sorted(campaign.acknowledged)
        ],
        "held_at": timestamp(campaign.held_at),
        "created_at": timestamp(campaign.created_at),
        "updated_at": timestamp(campaign.updated_at),
    }


def signoff_json(signoff: Signoff) -> dict[str, Any]:
    """Render one sign-off."""
    return {
        "identity": signoff.identity,
        "actor": signoff.actor,
        "on_behalf": signoff.on_behalf,
        "reason": signoff.reason,
        "at": timestamp(signoff.at),
    }


def event_json(event: CampaignEvent) -> dict[str, Any]:
    """Render one timeline step."""
    return {"at": timestamp(event.at), "event": event.event, "actor": event.actor, **event.details}


def message_summary(message: StoredMessage, base: str) -> dict[str, Any]:
    """Render a short view of a message: envelope, subject, preview and links."""
    headers = HeaderBlock.parse(message.content)
    return {
        "id": message.id,
        "mail_from": message.mail_from,
        "from": headers.get("From"),
        "subject": headers.get("Subject"),
        "received_at": timestamp(message.received_at),
        "size": len(message.content),
        "preview": text_preview(message.content),
        "url": f"{base}/messages/{message.id}",
        "raw_url": f"{base}/messages/{message.id}/raw",
    }


def message_json(
    message: StoredMessage, recipients: list[RecipientRecord], base: str
) -> dict[str, Any]:
    """Render a message with decoded headers and its recipients' states."""
    headers = HeaderBlock.parse(message.content)
    return {
        **message_summary(message, base),
        "campaign_id": message.campaign_id,
        "client": message.client,
        "ingress": message.ingress,
        "headers": [
            [name, headers.get(name)] for name in dict.fromkeys(n for n, _ in headers.fields)
        ],
        "recipients": [recipient_json(r) for r in recipients],
    }


def recipient_json(record: RecipientRecord) -> dict[str, Any]:
    """Render one recipient row."""
    return {
        "id": record.id,
        "address": record.address,
        "state": str(record.state),
        "message_id": record.message_id,
        "attempts": record.attempts,
        "next_attempt_at": timestamp(record.next_attempt_at),
        "last_reply": record.last_reply,
        "updated_at": timestamp(record.updated_at),
    }


def audit_json(entry: AuditEntry) -> dict[str, Any]:
    """Render one audit entry."""
    return {**asdict(entry), "at": timestamp(entry.at)}


def encode_cursor(value: str | int) -> str:
    """Make an opaque page cursor."""
    return base64.urlsafe_b64encode(str(value).encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> str:
    """Read a page cursor; raises ValueError when it was not made by `encode_cursor`."""
    try:
        value = base64.b64decode(cursor + "=" * (-len(cursor) % 4), altchars=b"-_", validate=True)
        text = value.decode()
    except (binascii.Error, UnicodeDecodeError) as exc:
        raise ValueError("not a cursor from this API") from exc
    if not text.isalnum():
        raise ValueError("not a cursor from this API")
    return text
