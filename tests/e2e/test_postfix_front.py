"""A real Postfix as the platform's MTA: `sendmail` -> private Postfix -> sendbrake -> upstream.

Debian's postfix runs as a private instance on loopback ports, started and stopped by each
test (tests/postfix.py; it needs root, which the machine and CI have). Bounces go to the
platform's return-path domain, which Postfix delivers to a second capturing SMTP server:
the platform's bounce mailbox.
"""

from __future__ import annotations

import email
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import pytest

from tests.fakes.upstream import CapturingUpstream
from tests.harness import Running, run_gateway
from tests.helpers import eventually
from tests.mail import addresses, message
from tests.postfix import Postfix, private_postfix, require_root

DOMAIN = "platform.test"
SENDER = f"bounces@{DOMAIN}"
DEADLINE = 20.0  # seconds: Postfix hands a message on within a second or two
# sendbrake's reply to mail of a rejected campaign (gateway/ingress/smtp.py).
REFUSED = "550 5.7.1 Campaign win-back was rejected by an operator; not accepted"


@dataclass
class Front:
    gw: Running
    postfix: Postfix
    upstream: CapturingUpstream
    mailbox: CapturingUpstream  # the platform's bounce mailbox

    async def submit(self, key: str, rcpts: list[str], **headers: str) -> None:
        await self.postfix.sendmail(
            SENDER, rcpts, message(subject=key, X_Campaign_ID=key, **headers)
        )

    async def queue_empty(self) -> bool:
        """Postfix holds nothing any more: each message was delivered or bounced.

        Asked only once the outcome was seen at the far end (upstream, gateway, mailbox):
        showq scans `active` before `incoming`, so a message moving between the two in that
        moment would be missed; past that point a message is in `active` or gone."""
        return await self.postfix.queue() == []

    def logged(self, needle: str, count: int) -> bool:
        """The maillog has `needle` `count` times (postlogd writes it after the fact)."""
        return self.postfix.log().count(needle) == count

    async def campaign(self, key: str) -> dict | None:
        status, page = await self.gw.api().get("/api/v1/campaigns")
        assert status == 200
        return next((c for c in page["items"] if c["key"] == key), None)

    async def wait(self, probe, what: str) -> Any:
        """`eventually` with Postfix's own account (its maillog) added when it times out."""
        try:
            return await eventually(probe, timeout=DEADLINE, message=what)
        except AssertionError as exc:
            raise AssertionError(f"{exc}\nmaillog:\n{self.postfix.log()[-4000:]}") from None


@pytest.fixture
async def front(tmp_path, settings_for, upstream) -> AsyncIterator[Front]:
    require_root()
    mailbox = CapturingUpstream()
    await mailbox.start()
    try:
        async with (
            run_gateway(settings_for(upstream.port)) as gw,
            private_postfix(
                tmp_path,
                relay_port=gw.addresses.smtp[1],
                domain=DOMAIN,
                mailbox_port=mailbox.port,
            ) as postfix,
        ):
            yield Front(gw, postfix, upstream, mailbox)
    finally:
        await mailbox.stop()


async def hold(front: Front, key: str) -> dict:
    """Submit a campaign declared at 2 with 60 recipients (past 2 + 50): it holds whole."""
    await front.submit(key, addresses("held", 60), X_Declared_Size="2")
    campaign = await front.wait(lambda: _held(front, key), "campaign not held")
    await front.wait(front.queue_empty, "postfix queue not empty")
    return campaign


async def _held(front: Front, key: str) -> dict | None:
    campaign = await front.campaign(key)
    ok = campaign and campaign["state"] == "held" and campaign["counters"]["held"] == 60
    return campaign if ok else None


def unfolded(text: str) -> str:
    return " ".join(text.split())


def dsn_parts(raw: bytes) -> tuple[str, dict[str, str]]:
    """A DSN's human-readable text and its per-recipient delivery-status fields, unfolded
    (Postfix wraps long diagnostics over several lines)."""
    report = email.message_from_bytes(raw)
    assert report.get_content_type() == "multipart/report", report.get_content_type()
    text, status = report.get_payload()[:2]
    assert status.get_content_type() == "message/delivery-status"
    per_recipient = status.get_payload()[-1]
    fields = {name: unfolded(str(value)) for name, value in per_recipient.items()}
    return unfolded(text.get_payload(decode=True).decode()), fields


async def test_mail_submitted_with_sendmail_reaches_the_upstream_through_sendbrake(front):
    rcpts = ["ann@example.org", "ben@example.org"]
    await front.submit("spring-sale", rcpts)

    await front.wait(lambda: front.upstream.transactions, "nothing upstream")
    await front.wait(front.queue_empty, "postfix queue not empty")
    [txn] = front.upstream.transactions
    assert txn.mail_from == SENDER
    assert txn.rcpt_tos == rcpts
    relayed = email.message_from_bytes(txn.content)
    assert relayed["X-Campaign-ID"] == "spring-sale"
    # Both hops are on the trace: sendbrake's Received line above Postfix's.
    received = relayed.get_all("Received")
    assert "(sendbrake)" in received[0]
    assert f"mta.{DOMAIN}" in received[1]
    await front.wait(lambda: front.logged(" status=sent ", 2), "delivery not logged")
    assert front.mailbox.transactions == []  # no bounce


async def test_held_campaign_stays_held_while_postfix_considers_it_delivered(front):
    await front.submit(
        "survey-q3", ["first@example.org", "second@example.org"], X_Declared_Size="2"
    )
    await front.wait(lambda: front.upstream.transactions, "nothing upstream")

    campaign = await hold(front, "survey-q3")

    counters = campaign["counters"]
    assert (counters["received"], counters["relayed"], counters["queued"]) == (62, 2, 0)
    assert [f["rule"] for f in campaign["findings"]] == ["blast-declared"]
    # Postfix got sendbrake's 250 for the held message and forgot it: sent, not deferred.
    sent = "status=sent (250 2.0.0 queued as "
    await front.wait(lambda: front.logged(sent, 62), "not every recipient logged as sent")
    assert "status=deferred" not in front.postfix.log()
    assert front.mailbox.transactions == []
    # Nothing of the held part went on: the upstream saw only the first message.
    assert front.upstream.recipients == ["first@example.org", "second@example.org"]


async def test_later_mail_of_a_rejected_campaign_bounces_in_postfix_with_sendbrakes_550(front):
    campaign = await hold(front, "win-back")
    status, rejected = await front.gw.api("alice").post(
        f"/api/v1/campaigns/{campaign['id']}/reject", {"reason": "wrong audience"}
    )
    assert status == 200
    assert rejected["state"] == "rejected"

    await front.submit("win-back", ["late@example.org"])

    [bounce] = await front.wait(lambda: front.mailbox.transactions, "no bounce")
    await front.wait(front.queue_empty, "postfix queue not empty")
    assert bounce.mail_from == "<>"  # a DSN has the null return path
    assert bounce.rcpt_tos == [SENDER]
    text, fields = dsn_parts(bounce.content)
    assert f"<late@example.org>: host 127.0.0.1[127.0.0.1] said: {REFUSED}" in text
    assert fields["Final-Recipient"] == "rfc822; late@example.org"
    assert fields["Action"] == "failed"
    assert fields["Status"] == "5.7.1"
    assert fields["Diagnostic-Code"] == f"smtp; {REFUSED}"
    assert front.upstream.transactions == []
    status, after = await front.gw.api().get(f"/api/v1/campaigns/{campaign['id']}")
    assert status == 200
    assert after["counters"]["relayed"] == 0
    assert after["counters"]["received"] == 60  # the refused message was never taken in
