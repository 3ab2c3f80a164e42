"""Helpers of the feedback tests: a SendGrid-style signer, reports as mail servers write them.

`Signer` holds a P-256 key made for the test, and signs a body as SendGrid's Signed Event
Webhook does (ECDSA over SHA-256 of timestamp + body, DER, base64). `dsn` and `arf`
build RFC 3464 and RFC 5965 reports about a message the gateway relayed.
"""

from __future__ import annotations

import base64
import json
from typing import Any

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from gateway.feedback.sendgrid import SIGNATURE_HEADER, TIMESTAMP_HEADER


class Signer:
    """A SendGrid account's signing key, made for one test."""

    def __init__(self) -> None:
        self.key = ec.generate_private_key(ec.SECP256R1())
        der = self.key.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        self.public_key = base64.b64encode(der).decode()  # as SendGrid's settings page shows it

    def signature(self, body: bytes, timestamp: str) -> str:
        der = self.key.sign(timestamp.encode() + body, ec.ECDSA(hashes.SHA256()))
        return base64.b64encode(der).decode()

    def headers(self, body: bytes, at: float) -> dict[str, str]:
        """The headers SendGrid sends with `body` at time `at`."""
        stamp = str(int(at))
        return {
            "Content-Type": "application/json",
            SIGNATURE_HEADER: self.signature(body, stamp),
            TIMESTAMP_HEADER: stamp,
        }


def event(  # noqa: PLR0917 - the fields every test gives, in this order
    kind: str, email: str, message: str, campaign: str, n: int, at: float, **more: Any
) -> dict[str, Any]:
    """One SendGrid event about a message relayed with the gateway's custom args."""
    return {
        "email": email,
        "timestamp": int(at),
        "event": kind,
        "sg_event_id": f"sg-event-{n}",
        "sg_message_id": f"sg-message-{n}.filter0001",
        "sendbrake_campaign": campaign,
        "sendbrake_message": message,
        **more,
    }


def batch(events: list[dict[str, Any]]) -> bytes:
    return json.dumps(events).encode()


def dsn(recipient: str, message_id: str, *, action: str = "failed", status: str = "5.1.1") -> bytes:
    """A bounce report (RFC 3464) as Postfix writes one, quoting the relayed header block."""
    return (
        "From: MAILER-DAEMON@mx.example.net (Mail Delivery System)\r\n"
        "To: bounces@shop.test\r\n"
        "Subject: Undelivered Mail Returned to Sender\r\n"
        "Message-ID: <20240101100000.ABC@mx.example.net>\r\n"
        "MIME-Version: 1.0\r\n"
        'Content-Type: multipart/report; report-type=delivery-status; boundary="B1"\r\n'
        "\r\n--B1\r\n"
        "Content-Type: text/plain; charset=us-ascii\r\n\r\n"
        "I'm sorry to have to inform you that your message could not be delivered.\r\n"
        "\r\n--B1\r\n"
        "Content-Type: message/delivery-status\r\n\r\n"
        "Reporting-MTA: dns; mx.example.net\r\n"
        "Arrival-Date: Mon,  1 Jan 2024 10:00:00 +0000 (UTC)\r\n\r\n"
        f"Final-Recipient: rfc822; {recipient}\r\n"
        f"Original-Recipient: rfc822;{recipient}\r\n"
        f"Action: {action}\r\n"
        f"Status: {status}\r\n"
        "Remote-MTA: dns; mx.example.org\r\n"
        f"Diagnostic-Code: smtp; 550 {status} <{recipient}>: Recipient address rejected\r\n"
        "\r\n--B1\r\n"
        "Content-Type: text/rfc822-headers\r\n\r\n"
        "From: Shop <news@shop.test>\r\n"
        f"To: {recipient}\r\n"
        "Subject: Spring sale\r\n"
        f"X-Sendbrake-Message: {message_id}\r\n"
        "X-Sendbrake-Campaign: 01CAMPAIGN\r\n"
        "\r\n--B1--\r\n"
    ).encode()


def arf(recipient: str, message_id: str) -> bytes:
    """An abuse report (RFC 5965) carrying the whole relayed message."""
    return (
        "From: abuse@isp.example\r\n"
        "To: bounces@shop.test\r\n"
        "Subject: FW: Spring sale\r\n"
        "MIME-Version: 1.0\r\n"
        'Content-Type: multipart/report; report-type=feedback-report; boundary="B2"\r\n'
        "\r\n--B2\r\n"
        "Content-Type: text/plain\r\n\r\n"
        "This is an email abuse report.\r\n"
        "\r\n--B2\r\n"
        "Content-Type: message/feedback-report\r\n\r\n"
        "Feedback-Type: abuse\r\n"
        "User-Agent: SomeGenerator/1.0\r\n"
        "Version: 1\r\n"
        f"Original-Rcpt-To: <{recipient}>\r\n"
        "\r\n--B2\r\n"
        "Content-Type: message/rfc822\r\n\r\n"
        "From: Shop <news@shop.test>\r\n"
        f"To: {recipient}\r\n"
        "Subject: Spring sale\r\n"
        f"X-Sendbrake-Message: {message_id}\r\n"
        "\r\n"
        "Hello!\r\n"
        "\r\n--B2--\r\n"
    ).encode()
