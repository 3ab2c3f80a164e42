"""Blast radius and quarantine over real sockets: smtplib sessions -> sendbrake -> upstream,
with operators deciding over the HTTP API."""

from __future__ import annotations

import asyncio
import io
import json
import math
import smtplib
from collections import Counter

import pytest

from gateway.log import configure
from tests.harness import run_gateway
from tests.helpers import eventually
from tests.mail import message

DECLARED = 200
RATIO = 1.5
LIMIT = math.ceil(DECLARED * RATIO)  # what may reach the provider before the hold
# `settled` asks the API, which asks the spool: polled every 10 ms while thousands of
# messages are relayed, it took a good share of the event loop the gateway runs on.
POLL = 0.1


async def push(
    gw,
    count: int,
    sessions: int,
    *,
    key: str = "survey-q3",
    declared: int | None = DECLARED,
    start: int = 0,
) -> list[str]:
    """Send `count` one-recipient messages through `sessions` concurrent SMTP sessions."""
    headers = {"X_Campaign_ID": key} if key else {}
    if declared is not None:
        headers["X_Declared_Size"] = str(declared)
    content = message(subject="Quick survey", **headers)
    rcpts = [f"user{start + i}@example.org" for i in range(count)]

    def session(chunk: list[str]) -> None:
        with gw.smtp() as client:
            for rcpt in chunk:
                client.sendmail("survey@shop.test", [rcpt], content)

    await asyncio.gather(*(asyncio.to_thread(session, rcpts[i::sessions]) for i in range(sessions)))
    return rcpts


async def settled(gw, campaign_id: str) -> dict | None:
    """The campaign once nothing of it is queued or in flight any more."""
    status, body = await gw.api().get(f"/api/v1/campaigns/{campaign_id}")
    assert status == 200
    counters = body["counters"]
    return body if counters["queued"] == 0 and counters["deferred"] == 0 else None


async def only_campaign(gw) -> dict:
    status, body = await gw.api().get("/api/v1/campaigns")
    assert status == 200
    [campaign] = body["items"]
    return campaign


async def assert_held_at_blast_radius(gw, upstream, total: int) -> dict:
    campaign_id = (await only_campaign(gw))["id"]
    campaign = await eventually(lambda: settled(gw, campaign_id), timeout=90, interval=POLL)
    delivered = len(upstream.recipients)
    assert delivered <= LIMIT
    assert campaign["state"] == "held"
    assert campaign["counters"]["received"] == total
    assert campaign["counters"]["relayed"] == delivered
    assert campaign["counters"]["held"] == total - delivered
    assert campaign["counters"]["escaped"] == delivered
    [finding] = [f for f in campaign["findings"] if f["rule"] == "blast-declared"]
    # The only enforced finding: a survey of this size also lacks unsubscribe headers,
    # which the shipped unsubscribe rule records in shadow.
    enforced = [f for f in campaign["findings"] if f["mode"] == "enforce"]
    assert enforced == [finding], campaign["findings"]
    assert (finding["rule"], finding["kind"], finding["mode"]) == (
        "blast-declared",
        "over_declared_size",
        "enforce",
    )
    assert finding["evidence"]["declared"] == DECLARED
    assert finding["evidence"]["limit"] == LIMIT
    assert finding["evidence"]["received"] == total  # rules keep running while held
    assert finding["policy_version"].startswith("sha256:")
    assert campaign["sample"]["subject"] == "Quick survey"
    assert campaign["timeline"][1]["event"] == "held"
    return campaign


async def test_oversize_campaign_stops_at_its_blast_radius_and_release_delivers_the_rest_once(
    settings_for, upstream
):
    async with run_gateway(settings_for(upstream.port)) as gw:
        rcpts = await push(gw, 2000, 20)
        campaign = await assert_held_at_blast_radius(gw, upstream, 2000)

        status, released = await gw.api("alice").post(
            f"/api/v1/campaigns/{campaign['id']}/release",
            {"reason": "survey list was right after all"},
        )
        assert status == 200
        assert released["state"] == "released"
        assert released["acknowledged"] == [
            {"rule": "blast-declared", "kind": "over_declared_size"}
        ]
        await eventually(lambda: len(upstream.recipients) >= 2000, timeout=90)
        final = await eventually(lambda: settled(gw, campaign["id"]), timeout=90, interval=POLL)
        # Releasing again is harmless.
        status, again = await gw.api("bob").post(
            f"/api/v1/campaigns/{campaign['id']}/release", {"reason": "double click"}
        )
        assert status == 200
        assert again["counters"] == final["counters"]
    assert Counter(upstream.recipients) == Counter(rcpts)  # every recipient exactly once
    assert final["counters"]["relayed"] == 2000
    assert final["counters"]["held"] == 0


async def test_rejected_campaign_delivers_nothing_more_and_later_mail_gets_550(
    settings_for, upstream
):
    async with run_gateway(settings_for(upstream.port)) as gw:
        await push(gw, 2000, 20)
        campaign = await assert_held_at_blast_radius(gw, upstream, 2000)
        delivered = len(upstream.recipients)
        status, rejected = await gw.api("alice").post(
            f"/api/v1/campaigns/{campaign['id']}/reject", {"reason": "wrong audience"}
        )
        assert status == 200
        assert rejected["state"] == "rejected"
        assert rejected["counters"]["discarded"] == 2000 - delivered
        assert rejected["counters"]["held"] == 0

        def late() -> None:
            with gw.smtp() as client:
                client.sendmail(
                    "survey@shop.test",
                    ["late@example.org"],
                    message(subject="Quick survey", X_Campaign_ID="survey-q3"),
                )

        with pytest.raises(smtplib.SMTPDataError) as refused:
            await asyncio.to_thread(late)
        status, after = await gw.api().get(f"/api/v1/campaigns/{campaign['id']}")
    assert refused.value.smtp_code == 550
    assert b"survey-q3" in refused.value.smtp_error
    assert len(upstream.recipients) == delivered
    assert after["counters"]["relayed"] == delivered


async def test_declaration_registered_beforehand_stops_the_campaign_the_same_way(
    settings_for, upstream
):
    async with run_gateway(settings_for(upstream.port)) as gw:
        status, manifest = await gw.api("platform").put(
            "/api/v1/campaigns/survey-q3",
            {"size": DECLARED, "category": "survey", "reason": "Q3 survey"},
        )
        assert status == 200
        assert manifest["declared"] == {"size": DECLARED, "category": "survey", "locale": None}
        await push(gw, 2000, 20, declared=None)
        campaign = await assert_held_at_blast_radius(gw, upstream, 2000)
    assert campaign["declared"]["size"] == DECLARED
    assert campaign["declared"]["category"] == "survey"


async def test_manifest_wins_over_declaration_headers(settings_for, upstream):
    async with run_gateway(settings_for(upstream.port)) as gw:
        await gw.api("platform").put(
            "/api/v1/campaigns/survey-q3", {"size": DECLARED, "reason": "plan"}
        )
        await push(gw, 400, 4, declared=100000)  # the header claims far more than the plan
        campaign = await assert_held_at_blast_radius(gw, upstream, 400)
    assert campaign["declared"]["size"] == DECLARED


async def test_undeclared_campaign_holds_at_its_limit(settings_for, upstream):
    # No key header and no declaration: an implicit, undeclared campaign; default limit 5000.
    async with run_gateway(settings_for(upstream.port)) as gw:
        content = message(subject="Weekly digest")
        for batch in range(6):
            rcpts = [f"reader{batch}-{i}@example.org" for i in range(1000)]
            await gw.send("digest@shop.test", rcpts, content)
        campaign_id = (await only_campaign(gw))["id"]
        campaign = await eventually(lambda: settled(gw, campaign_id), timeout=90, interval=POLL)
    assert campaign["implicit"] is True
    assert campaign["key"] == "implicit:digest@shop.test:weekly digest"
    assert campaign["state"] == "held"
    assert campaign["counters"]["relayed"] == 5000
    assert campaign["counters"]["held"] == 1000
    assert campaign["findings"][0]["kind"] == "undeclared_over_limit"
    assert campaign["findings"][0]["evidence"] == {"received": 6000, "limit": 5000}
    assert len(upstream.recipients) == 5000


async def test_a_held_campaign_survives_a_restart_and_can_be_released_after_it(
    settings_for, upstream
):
    settings = settings_for(upstream.port)
    async with run_gateway(settings) as gw:
        rcpts = await push(gw, 600, 6)
        before = await assert_held_at_blast_radius(gw, upstream, 600)
    async with run_gateway(settings) as gw:
        status, after = await gw.api().get(f"/api/v1/campaigns/{before['id']}")
        assert status == 200
        assert after["state"] == "held"
        assert after["counters"] == before["counters"]
        status, _ = await gw.api("alice").post(
            f"/api/v1/campaigns/{before['id']}/release", {"reason": "ok"}
        )
        assert status == 200
        await eventually(lambda: len(upstream.recipients) >= 600, timeout=90)
    assert Counter(upstream.recipients) == Counter(rcpts)


async def test_shadow_rule_lets_the_campaign_through_but_records_and_logs_the_finding(
    settings_for, upstream, tmp_path
):
    policies = tmp_path / "policies"
    policies.mkdir()
    (policies / "p.yaml").write_text(
        "version: 1\nrules:\n"
        "  - {id: blast-declared, kind: declared_size, ratio: 1.5, slack: 50, mode: shadow}\n"
    )
    log = io.StringIO()
    configure("json", "info", stream=log)
    async with run_gateway(settings_for(upstream.port, policies={"dir": str(policies)})) as gw:
        rcpts = await push(gw, 2000, 20)
        campaign_id = (await only_campaign(gw))["id"]
        await eventually(lambda: len(upstream.recipients) >= 2000, timeout=90)
        campaign = await eventually(lambda: settled(gw, campaign_id), timeout=90, interval=POLL)
    assert Counter(upstream.recipients) == Counter(rcpts)
    assert campaign["state"] == "open"
    [finding] = campaign["findings"]
    assert (finding["rule"], finding["mode"]) == ("blast-declared", "shadow")
    assert finding["count"] == 2000 - LIMIT
    events = [json.loads(line) for line in log.getvalue().splitlines() if line.startswith("{")]
    shadow = [e for e in events if e["event"] == "policy_finding" and e["mode"] == "shadow"]
    assert len(shadow) == 2000 - LIMIT
    assert shadow[0]["rule"] == "blast-declared"
    assert shadow[0]["campaign"] == campaign_id
    assert not [e for e in events if e["event"] == "campaign_held"]


async def test_duplicate_recipients_hold_the_sent_twice_campaign(settings_for, upstream):
    async with run_gateway(settings_for(upstream.port)) as gw:
        await push(gw, 50, 5, declared=50)
        await push(gw, 1, 1, declared=50)  # user0 again: the campaign goes out twice
        campaign_id = (await only_campaign(gw))["id"]
        campaign = await eventually(lambda: settled(gw, campaign_id))
    assert campaign["state"] == "held"
    assert campaign["findings"][0]["kind"] == "duplicate_recipients"
    assert campaign["findings"][0]["evidence"]["sample"] == ["user0@example.org"]
    assert Counter(upstream.recipients)["user0@example.org"] == 1


async def test_paused_relay_keeps_accepting_and_resumes_where_it_stopped(settings_for, upstream):
    async with run_gateway(settings_for(upstream.port)) as gw:
        status, body = await gw.api("alice").post(
            "/api/v1/relay/pause", {"reason": "provider incident"}
        )
        assert (status, body["paused"]) == (200, True)
        rcpts = await push(gw, 40, 4, declared=40)
        campaign = await only_campaign(gw)
        assert campaign["counters"]["queued"] == 40
        assert upstream.recipients == []
        status, body = await gw.api("alice").post(
            "/api/v1/relay/resume", {"reason": "provider back"}
        )
        assert (status, body["paused"]) == (200, False)
        await eventually(lambda: len(upstream.recipients) == 40)
    assert sorted(upstream.recipients) == sorted(rcpts)


async def test_conflicting_declarations_inside_one_campaign_hold_it(settings_for, upstream):
    async with run_gateway(settings_for(upstream.port)) as gw:
        await push(gw, 3, 1, declared=200)
        await eventually(lambda: len(upstream.recipients) == 3)  # sent before the change
        await push(gw, 1, 1, declared=20000, start=3)  # someone changed the plan mid-send
        campaign_id = (await only_campaign(gw))["id"]
        campaign = await eventually(lambda: settled(gw, campaign_id))
    assert campaign["state"] == "held"
    assert campaign["declared"]["size"] == 200
    [finding] = campaign["findings"]
    assert finding["kind"] == "conflicting_declaration"
    assert finding["evidence"] == {"size": {"kept": 200, "sent": 20000}}
    assert sorted(upstream.recipients) == [
        "user0@example.org",
        "user1@example.org",
        "user2@example.org",
    ]
