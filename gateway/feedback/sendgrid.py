"""SendGrid's Signed Event Webhook: the signature check and the batch's events.

SendGrid signs each POST with ECDSA P-256 over SHA-256 of the timestamp header's text
followed by the raw body, and sends the DER signature in base64
(`X-Twilio-Email-Event-Webhook-Signature`, `X-Twilio-Email-Event-Webhook-Timestamp`);
the public key it shows is a base64 DER SubjectPublicKeyInfo. This is the scheme of
SendGrid's own SDK (`sendgrid.helpers.eventwebhook.EventWebhook.verify_signature`), with
a freshness check of the timestamp on top so a captured request cannot be replayed later.
Pure functions and a verifier object; no I/O.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from gateway.mail.addresses import normalise_address
from gateway.model import FeedbackEvent

SIGNATURE_HEADER = "X-Twilio-Email-Event-Webhook-Signature"
TIMESTAMP_HEADER = "X-Twilio-Email-Event-Webhook-Timestamp"
CAMPAIGN_ARG, MESSAGE_ARG = "sendbrake_campaign", "sendbrake_message"  # custom_args on relay
SOURCE = "sendgrid"
# SendGrid's event names and what each counts as; the rest (processed, deferred, open,
# click, group_resubscribe) is forwarded but not counted.
KINDS = {
    "delivered": "delivered",
    "bounce": "bounced",
    "dropped": "dropped",
    "spamreport": "complained",
    "unsubscribe": "unsubscribed",
    "group_unsubscribe": "unsubscribed",
}
EVIDENCE = ("event", "email", "timestamp", "type", "reason", "status", "response",
            "bounce_classification", "sg_event_id", "sg_message_id")  # fmt: skip
MAX_EVIDENCE = 300  # characters of one evidence value kept
MAX_ID = 200  # characters of an ID taken from an event


class SignatureError(Exception):
    """The request is not signed by the configured key, or not recently: answered 401."""


@dataclass(frozen=True, slots=True)
class BatchError(Exception):
    """The body is not a batch of events: which field, and what is wrong (answered 400)."""

    field: str
    detail: str

    def __str__(self) -> str:
        return f"{self.field}: {self.detail}"


def load_public_key(text: str) -> ec.EllipticCurvePublicKey:
    """Read SendGrid's verification key (base64 DER, or PEM); ValueError naming what is wrong."""
    text = text.strip()
    try:
        if text.startswith("-----BEGIN"):
            key = serialization.load_pem_public_key(text.encode("ascii"))
        else:
            key = serialization.load_der_public_key(base64.b64decode(text, validate=True))
    except (ValueError, binascii.Error, TypeError, UnicodeError) as exc:
        raise ValueError(f"not a base64 DER or PEM public key ({exc})") from None
    if not isinstance(key, ec.EllipticCurvePublicKey) or key.curve.name != "secp256r1":
        raise ValueError("not an ECDSA P-256 public key, which SendGrid signs with")
    return key


class Verifier:
    """Checks a request's signature and freshness against one public key."""

    def __init__(
        self, key: ec.EllipticCurvePublicKey, tolerance: float, clock: Callable[[], float]
    ) -> None:
        self._key = key
        self._tolerance = tolerance
        self._clock = clock

    def verify(self, body: bytes, signature: str | None, timestamp: str | None) -> float:
        """Return the signed timestamp, or raise `SignatureError` saying what is wrong."""
        if not signature or not timestamp:
            raise SignatureError(f"the request has no {SIGNATURE_HEADER} and {TIMESTAMP_HEADER}")
        try:
            at = float(timestamp)
            der = base64.b64decode(signature, validate=True)
        except (ValueError, binascii.Error):
            raise SignatureError("the signature or timestamp header is malformed") from None
        if not timestamp.isascii() or not math.isfinite(at):
            raise SignatureError("the timestamp header is malformed")
        try:
            self._key.verify(der, timestamp.encode("ascii") + body, ec.ECDSA(hashes.SHA256()))
        except InvalidSignature:
            raise SignatureError("the signature does not match the body and timestamp") from None
        skew = self._clock() - at
        if abs(skew) > self._tolerance:
            when = "old" if skew > 0 else "far in the future"
            raise SignatureError(
                f"the signed timestamp is {abs(skew):.0f} s {when} (tolerance"
                f" {self._tolerance:.0f} s): a replay, or a clock out of step"
            )
        return at


def parse_batch(body: bytes, *, casefold_local: bool = True) -> list[FeedbackEvent]:
    """Return the events of a batch, in order; `BatchError` names the first wrong field."""
    try:
        data = json.loads(body)
    except (ValueError, RecursionError) as exc:
        raise BatchError("body", f"not valid JSON ({exc})") from None
    if not isinstance(data, list):
        raise BatchError("body", "must be a JSON array of events")
    return [_event(index, item, casefold_local) for index, item in enumerate(data)]


def _event(index: int, item: Any, casefold_local: bool) -> FeedbackEvent:
    where = f"[{index}]"
    if not isinstance(item, dict):
        raise BatchError(where, "each event must be a JSON object")
    event, email, at = item.get("event"), item.get("email"), item.get("timestamp")
    if not isinstance(event, str) or not event:
        raise BatchError(f"{where}.event", "required: the event's name")
    if not isinstance(email, str):
        raise BatchError(f"{where}.email", "required: the recipient's address")
    if isinstance(at, bool) or not isinstance(at, int | float) or not math.isfinite(at):
        raise BatchError(f"{where}.timestamp", "required: seconds since the epoch")
    raw = json.dumps(item, ensure_ascii=False, separators=(",", ":")).encode()
    event_id = item.get("sg_event_id")
    if not isinstance(event_id, str) or not event_id or len(event_id) > MAX_ID:
        event_id = "sha256:" + hashlib.sha256(raw).hexdigest()  # the same event, the same id
    message_id = item.get(MESSAGE_ARG)
    return FeedbackEvent(
        event_id=event_id,
        event=event,
        kind=KINDS.get(event),
        recipient=normalise_address(email, casefold_local) or email.strip().casefold(),
        message_id=message_id if isinstance(message_id, str) and len(message_id) <= MAX_ID else "",
        at=float(at),
        evidence={k: _short(item[k]) for k in EVIDENCE if k in item},
        raw=raw,
    )


def _short(value: Any) -> Any:
    if isinstance(value, str) and len(value) > MAX_EVIDENCE:
        return value[:MAX_EVIDENCE] + "…"
    return value if isinstance(value, str | int | float | bool) or value is None else str(value)
