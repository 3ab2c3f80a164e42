"""Logs alone tell each campaign's story: one JSON event per decision, with counts.

Accepted, held (by a rule or by hand), released, rejected, relayed, deferred and failed
each log one event that names the campaign and how many recipients it concerned, so an
operator with nothing but the log can say what happened to a campaign and to how many.
"""

from __future__ import annotations

import io
import json

from gateway.log import configure
from tests.clock import ManualClock
from tests.harness import advance, run_gateway, send_campaign
from tests.helpers import eventually
from tests.mail import addresses

# The field that says how many recipients an event concerns, per event.
COUNTS = {
    "message_accepted": "recipients",
    "campaign_held": "recipients",
    "campaign_released": "recipients",
    "campaign_rejected": "discarded",
    "recipients_relayed": "recipients",
    "recipients_deferred": "recipients",
    "recipients_failed": "recipients",
}


def story(log: io.StringIO, campaign_id: str) -> list[str]:
    """Rebuild one campaign's story from the JSON log lines, in order."""
    lines = []
    for line in log.getvalue().splitlines():
        if not line.startswith("{"):
            continue
        event = json.loads(line)
        if event.get("campaign") != campaign_id:
            continue
        name = event["event"]
        parts = [name]
        if name in COUNTS:
            parts.append(f"{COUNTS[name]}={event[COUNTS[name]]}")
        if "rule" in event:
            parts.append(f"rule={event['rule']}")
        if "rules" in event:
            parts.append(f"rules={','.join(event['rules'])}")
        if event.get("actor") not in (None, "policy"):
            parts.append(f"by={event['actor']}")
        lines.append(" ".join(parts))
    return lines


async def counters(gw, campaign_id: str) -> dict:
    status, body = await gw.api().get(f"/api/v1/campaigns/{campaign_id}")
    assert status == 200
    return body["counters"]


async def until(gw, campaign_id: str, **expected: int) -> None:
    async def reached() -> bool:
        got = await counters(gw, campaign_id)
        return all(got[name] == value for name, value in expected.items())

    await eventually(reached, timeout=30, message=f"{campaign_id} never reached {expected}")


async def test_logs_alone_reconstruct_each_campaigns_decisions_and_counts(settings_for, upstream):
    log = io.StringIO()
    configure("json", "info", stream=log)
    upstream.rcpt_replies["nobody@example.org"] = "550 5.1.1 no such user"
    clock = ManualClock()  # moved on only for the retry of the last campaign
    async with run_gateway(settings_for(upstream.port), clock=clock) as gw:
        alice = gw.api("alice")
        # Grows past its declaration (limit 55) with its second message; then released.
        survey = await send_campaign(gw, "survey", addresses("s", 40), declared=5)
        await until(gw, survey, relayed=40)
        await send_campaign(gw, "survey", addresses("t", 30), declared=5)
        await alice.post(f"/api/v1/campaigns/{survey}/release", {"reason": "list checked"})
        await until(gw, survey, relayed=70)

        # Held at once, then rejected.
        promo = await send_campaign(gw, "promo", addresses("p", 60), declared=5)
        await alice.post(f"/api/v1/campaigns/{promo}/reject", {"reason": "wrong audience"})

        # Held by hand while the relay is paused; released; one recipient refused.
        await alice.post("/api/v1/relay/pause", {"reason": "provider maintenance"})
        digest = await send_campaign(
            gw, "digest", ["d1@example.org", "d2@example.org", "nobody@example.org"]
        )
        await alice.post(f"/api/v1/campaigns/{digest}/hold", {"reason": "typo in subject"})
        await alice.post("/api/v1/relay/resume", {"reason": "maintenance over"})
        await alice.post(f"/api/v1/campaigns/{digest}/release", {"reason": "fine after all"})
        await until(gw, digest, relayed=2, failed=1)

        # The provider asks to try again once.
        upstream.fail_next(1)
        alert = await send_campaign(gw, "alert", ["ops@example.org"])
        await until(gw, alert, deferred=1)
        advance(gw, clock, 1.0)  # the retry is due
        await until(gw, alert, relayed=1)

    assert story(log, survey) == [
        "message_accepted recipients=40",
        "recipients_relayed recipients=40",
        "message_accepted recipients=30",
        "policy_finding rule=blast-declared",
        "campaign_held recipients=30 rules=blast-declared",
        "campaign_released recipients=30 by=alice",
        "recipients_relayed recipients=30",
    ]
    assert story(log, promo) == [
        "message_accepted recipients=60",
        "policy_finding rule=blast-declared",
        "campaign_held recipients=60 rules=blast-declared",
        "campaign_rejected discarded=60 by=alice",
    ]
    assert story(log, digest) == [
        "message_accepted recipients=3",
        "campaign_held recipients=3 rules=manual by=alice",
        "campaign_released recipients=3 by=alice",
        "recipients_relayed recipients=2",
        "recipients_failed recipients=1",
    ]
    assert story(log, alert) == [
        "message_accepted recipients=1",
        "recipients_deferred recipients=1",
        "recipients_relayed recipients=1",
    ]
    pauses = [json.loads(line) for line in log.getvalue().splitlines() if '"relay_' in line]
    assert [
        (e["event"], e.get("actor")) for e in pauses if e["event"].endswith(("paused", "resumed"))
    ] == [
        ("relay_paused", "alice"),
        ("relay_resumed", "alice"),
    ]
