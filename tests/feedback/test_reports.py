"""DSNs (RFC 3464) and abuse reports (RFC 5965) as feedback events."""

from __future__ import annotations

from gateway.mail.dsn import parse_report
from tests.mail import message
from tests.webhooks import arf, dsn

NOW = 1_800_000_000.0


def test_a_failed_action_is_a_bounce_of_the_recipient_of_the_quoted_message():
    [bounce] = parse_report(dsn("Ada@Example.org", "01MSG"), NOW)
    assert (bounce.kind, bounce.event, bounce.recipient) == ("bounced", "failed", "ada@example.org")
    assert (bounce.message_id, bounce.at) == ("01MSG", NOW)
    assert bounce.evidence["status"] == "5.1.1"
    assert "Recipient address rejected" in bounce.evidence["diagnostic-code"]


def test_delayed_is_not_counted_and_delivered_is_a_delivery():
    [delayed] = parse_report(dsn("a@x.test", "m", action="delayed", status="4.4.1"), NOW)
    [delivered] = parse_report(dsn("a@x.test", "m", action="delivered", status="2.0.0"), NOW)
    assert (delayed.kind, delivered.kind) == (None, "delivered")


def test_the_same_report_twice_has_the_same_event_id_and_another_report_another():
    first = parse_report(dsn("a@x.test", "m"), NOW)[0].event_id
    assert parse_report(dsn("a@x.test", "m"), NOW + 60)[0].event_id == first
    assert parse_report(dsn("a@x.test", "other"), NOW)[0].event_id != first


def test_an_abuse_report_is_a_complaint():
    [complaint] = parse_report(arf("a@x.test", "01MSG"), NOW)
    assert (complaint.kind, complaint.recipient, complaint.message_id) == (
        "complained",
        "a@x.test",
        "01MSG",
    )
    assert complaint.evidence["feedback-type"] == "abuse"


def test_a_report_without_the_gateways_header_has_no_message_to_attribute_to():
    report = dsn("a@x.test", "m").replace(b"X-Sendbrake-Message: m\r\n", b"")
    [bounce] = parse_report(report, NOW)
    assert bounce.message_id == ""


def test_mail_that_is_no_report_is_told_apart():
    assert parse_report(message(subject="Out of office"), NOW) is None
