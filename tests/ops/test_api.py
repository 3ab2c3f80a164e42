"""The ops API: auth and audit, the two-operator rule, problem documents, paging."""

from __future__ import annotations

import asyncio

from tests.harness import held_campaign, run_gateway
from tests.helpers import eventually
from tests.mail import message


async def relayed(gw, campaign_id: str, count: int) -> dict | None:
    """The campaign once `count` recipients are recorded as relayed."""
    _, campaign = await gw.api().get(f"/api/v1/campaigns/{campaign_id}")
    return campaign if campaign["counters"]["relayed"] == count else None


async def audit_entries(gw) -> list[dict]:
    status, body = await gw.api("viewer").get("/api/v1/audit")
    assert status == 200
    return body["items"]


async def test_release_without_token_is_401_and_with_a_viewer_token_403_both_audited(settings_for):
    async with run_gateway(settings_for()) as gw:
        campaign_id = await held_campaign(gw, 60)
        status, problem = await gw.api(None).post(
            f"/api/v1/campaigns/{campaign_id}/release", {"reason": "x"}
        )
        assert status == 401
        assert problem["status"] == 401
        assert problem["type"].endswith("/unauthenticated")
        status, problem = await gw.api("viewer").post(
            f"/api/v1/campaigns/{campaign_id}/release", {"reason": "x"}
        )
        assert status == 403
        assert "viewer" in problem["detail"]
        entries = await audit_entries(gw)
        status, campaign = await gw.api("viewer").get(f"/api/v1/campaigns/{campaign_id}")
    refused = [(e["actor"], e["action"], e["outcome"], e["details"]["status"]) for e in entries]
    assert refused == [
        ("viewer", "release campaign", "refused", 403),
        ("anonymous", "release campaign", "refused", 401),
    ]
    assert campaign["state"] == "held"


async def test_reads_need_a_token_too(settings_for):
    async with run_gateway(settings_for()) as gw:
        status, _ = await gw.api(None).get("/api/v1/campaigns")
        assert status == 401
        status, _ = await gw.api("platform").get("/api/v1/campaigns")
    assert status == 403  # a submitter token declares campaigns but cannot read them


async def test_large_release_needs_two_different_operators(settings_for, upstream):
    settings = settings_for(upstream.port, ops={"two_person_release_above": 10})
    async with run_gateway(settings) as gw:
        campaign_id = await held_campaign(gw, 100)
        path = f"/api/v1/campaigns/{campaign_id}/release"
        status, pending = await gw.api("alice").post(path, {"reason": "checked the list"})
        assert status == 202
        assert (pending["status"], pending["approvals"], pending["required"]) == (
            "pending_approval",
            ["alice"],
            2,
        )
        assert pending["campaign"]["state"] == "held"
        status, problem = await gw.api("alice").post(path, {"reason": "me again"})
        assert status == 409
        assert "already approved" in problem["detail"]
        status, released = await gw.api("bob").post(path, {"reason": "second pair of eyes"})
        assert status == 200
        assert released["state"] == "released"
        await eventually(lambda: len(upstream.recipients) == 100)
        entries = await audit_entries(gw)
    assert [(e["actor"], e["outcome"]) for e in entries[:3]] == [
        ("bob", "ok"),
        ("alice", "refused"),
        ("alice", "pending"),
    ]
    events = [e["event"] for e in released["timeline"]]
    assert events == ["created", "held", "release_approved", "release_approved", "released"]
    first = released["timeline"][2]
    assert (first["actor"], first["reason"], first["recipients"]) == (
        "alice",
        "checked the list",
        100,
    )


async def test_small_partial_release_sends_only_that_many_and_keeps_the_rest_held(
    settings_for, upstream
):
    async with run_gateway(settings_for(upstream.port)) as gw:
        campaign_id = await held_campaign(gw, 100)
        status, campaign = await gw.api("alice").post(
            f"/api/v1/campaigns/{campaign_id}/release",
            {"reason": "sample first", "max_recipients": 10},
        )
        assert status == 200
        assert campaign["state"] == "held"
        assert campaign["counters"]["held"] == 90
        await eventually(lambda: len(upstream.recipients) == 10)
        status, rest = await gw.api("alice").get(
            f"/api/v1/campaigns/{campaign_id}/recipients?state=held&limit=1000"
        )
    assert len(rest["items"]) == 90
    assert campaign["timeline"][-1]["event"] == "partially_released"


async def test_manual_hold_stops_an_open_campaign_and_reject_is_idempotent(settings_for, upstream):
    async with run_gateway(settings_for(upstream.port)) as gw:
        status, _ = await gw.api("alice").post("/api/v1/relay/pause", {"reason": "freeze"})
        await gw.send(
            "news@shop.test", ["a@example.org"], message(X_Campaign_ID="calm", X_Declared_Size="10")
        )
        campaign_id = (await gw.api().get("/api/v1/campaigns"))[1]["items"][0]["id"]
        status, held = await gw.api("alice").post(
            f"/api/v1/campaigns/{campaign_id}/hold", {"reason": "looks off"}
        )
        assert status == 200
        assert held["state"] == "held"
        assert held["findings"][0]["kind"] == "manual_hold"
        assert held["findings"][0]["evidence"] == {"actor": "alice", "reason": "looks off"}
        assert held["counters"]["held"] == 1
        first = await gw.api("alice").post(
            f"/api/v1/campaigns/{campaign_id}/reject", {"reason": "no"}
        )
        second = await gw.api("bob").post(
            f"/api/v1/campaigns/{campaign_id}/reject", {"reason": "no"}
        )
        status, _problem = await gw.api("alice").post(
            f"/api/v1/campaigns/{campaign_id}/hold", {"reason": "again"}
        )
        await gw.api("alice").post("/api/v1/relay/resume", {"reason": "thaw"})
    assert first[1]["counters"] == second[1]["counters"]
    assert first[1]["counters"]["discarded"] == 1
    assert status == 409
    assert upstream.recipients == []


async def test_invalid_input_is_a_problem_document_naming_the_field(settings_for):
    async with run_gateway(settings_for()) as gw:
        campaign_id = await held_campaign(gw, 60)
        path = f"/api/v1/campaigns/{campaign_id}/release"
        status, problem = await gw.api("alice").post(path, {"max_recipients": 0})
        assert status == 422
        assert {e["field"] for e in problem["errors"]} == {"reason", "max_recipients"}
        status, problem = await gw.api("alice").post(path, {"reason": "x", "colour": "red"})
        assert (status, problem["errors"][0]["field"]) == (422, "colour")
        status, problem = await gw.api("alice").post(
            path, data="not json", headers={"Content-Type": "application/json"}
        )
        assert status == 400
        status, problem = await gw.api("alice").post(path, data="reason=x")
        assert status == 415
        status, problem = await gw.api("alice").get("/api/v1/campaigns?state=sleeping")
        assert (status, problem["errors"][0]["field"]) == (422, "state")
        status, problem = await gw.api("alice").get("/api/v1/campaigns?cursor=%%%")
        assert (status, problem["errors"][0]["field"]) == (422, "cursor")
        status, problem = await gw.api("alice").get("/api/v1/campaigns/nope")
        assert (status, problem["title"]) == (404, "Not Found")
        status, campaign = await gw.api("alice").get(f"/api/v1/campaigns/{campaign_id}")
    assert campaign["state"] == "held"  # nothing above changed anything


async def test_request_bodies_over_the_limit_are_refused(settings_for):
    async with run_gateway(settings_for(http={"max_body_size": 1024})) as gw:
        status, problem = await gw.api("alice").post("/api/v1/relay/pause", {"reason": "x" * 5000})
    assert status == 413
    assert problem["status"] == 413


async def test_campaign_list_pages_with_an_opaque_cursor(settings_for):
    async with run_gateway(settings_for()) as gw:
        for i in range(5):
            await gw.send("news@shop.test", ["a@example.org"], message(X_Campaign_ID=f"c{i}"))
        seen, cursor = [], None
        while True:
            query = "?limit=2" + (f"&cursor={cursor}" if cursor else "")
            status, page = await gw.api("viewer").get(f"/api/v1/campaigns{query}")
            assert status == 200
            assert len(page["items"]) <= 2
            seen += [c["key"] for c in page["items"]]
            cursor = page["next"]
            if cursor is None:
                break
    assert seen == ["c4", "c3", "c2", "c1", "c0"]


async def test_message_endpoints_show_headers_preview_and_raw_bytes(settings_for):
    async with run_gateway(settings_for()) as gw:
        await gw.api("alice").post("/api/v1/relay/pause", {"reason": "keep it queued"})
        original = message(subject="Hello", body="Plain words here.", X_Campaign_ID="m")
        await gw.send("news@shop.test", ["a@example.org"], original)
        campaign = (await gw.api().get("/api/v1/campaigns"))[1]["items"][0]
        detail = (await gw.api().get(f"/api/v1/campaigns/{campaign['id']}"))[1]
        status, shown = await gw.api("viewer").get(detail["sample"]["url"])
        assert status == 200
        status, raw = await gw.api("viewer").get(detail["sample"]["raw_url"])
    assert shown["subject"] == "Hello"
    assert shown["preview"] == "Plain words here."
    assert ["Subject", "Hello"] in [[n.title(), v] for n, v in shown["headers"]]
    assert shown["recipients"][0]["state"] == "queued"
    assert raw.encode().endswith(original)


async def test_concurrent_releases_queue_each_recipient_once(settings_for, upstream):
    async with run_gateway(settings_for(upstream.port)) as gw:
        campaign_id = await held_campaign(gw, 200)
        path = f"/api/v1/campaigns/{campaign_id}/release"
        results = await asyncio.gather(
            *(gw.api(who).post(path, {"reason": "go"}) for who in ("alice", "bob") * 3)
        )
        assert {status for status, _ in results} == {200}
        campaign = await eventually(lambda: relayed(gw, campaign_id, 200))
    assert len(upstream.recipients) == 200
    assert len(set(upstream.recipients)) == 200
    assert [e["event"] for e in campaign["timeline"]].count("released") == 1
