"""Segmentation policies end to end: segments uploaded over HTTP, mail over SMTP, decisions
and deliveries checked at a capturing upstream."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from tests.harness import run_gateway, upload_segment
from tests.helpers import eventually
from tests.mail import message

POLICY = """\
version: 1
internal_domains: [shop.test]
segments:
  staff: {{file: staff.txt}}
rules:
  - {{id: winback-not-active, kind: segment_exclude, when: {{category: win-back}},
     segment: active-users, action: {action}}}
  - {{id: test-internal-only, kind: segment_only, when: {{category: test}}, internal: true}}
  - {{id: no-mixing, kind: segment_mix, segments: [customers, leads]}}
  - {{id: whole-db, kind: segment_coverage, segment: all-contacts, max_percent: 50,
     allow: {{category: [all-hands]}}}}
  - {{id: automated-cap, kind: frequency_cap, when: {{category: automated}},
     max_per_recipient: 2, window: 7d, action: suppress}}
"""

RECIPIENTS = [f"reader{i}@example.org" for i in range(1000)]
ACTIVE = RECIPIENTS[::33][:30] + [f"fan{i}@example.net" for i in range(2000)]


def policies(tmp_path: Path, action: str = "hold") -> Path:
    folder = tmp_path / "policies"
    folder.mkdir(exist_ok=True)
    (folder / "site.yaml").write_text(POLICY.format(action=action))
    (folder / "staff.txt").write_text("ops@shop.test\nceo@shop.test\n")
    return folder


async def load_audience(gw) -> None:
    await upload_segment(gw.api(), "active-users", ACTIVE)
    await upload_segment(
        gw.api(), "customers", [f"customer{i}@example.com" for i in range(50)], csv=True
    )
    await upload_segment(gw.api(), "leads", [f"lead{i}@example.com" for i in range(50)])
    await upload_segment(gw.api(), "all-contacts", [f"contact{i}@example.com" for i in range(100)])


async def campaign_of(gw, key: str) -> dict:
    status, page = await gw.api().get("/api/v1/campaigns?limit=100")
    assert status == 200
    [found] = [c for c in page["items"] if c["key"] == key]
    return found


async def settled(gw, key: str) -> dict | None:
    campaign = await campaign_of(gw, key)
    counters = campaign["counters"]
    return campaign if counters["queued"] == 0 and counters["deferred"] == 0 else None


async def send_winback(gw) -> dict:
    """Load the audience, send the win-back to RECIPIENTS, return the settled campaign."""
    await load_audience(gw)
    await gw.send(
        "news@shop.test",
        RECIPIENTS,
        message(X_Campaign_ID="come-back", X_Campaign_Category="win-back"),
    )
    return await eventually(lambda: settled(gw, "come-back"))


async def test_winback_reaching_active_users_is_held_with_the_overlap(
    settings_for, upstream, tmp_path
):
    settings = settings_for(upstream.port, policies={"dir": str(policies(tmp_path))})
    async with run_gateway(settings) as gw:
        campaign = await send_winback(gw)
    assert campaign["state"] == "held"
    assert campaign["counters"]["held"] == 1000
    [finding] = campaign["findings"]
    assert (finding["rule"], finding["kind"]) == ("winback-not-active", "segment_overlap")
    assert finding["evidence"]["overlap"] == 30
    assert finding["evidence"]["sample"] == ACTIVE[:10]
    assert upstream.recipients == []


async def test_winback_with_suppress_delivers_everyone_but_active_users(
    settings_for, upstream, tmp_path
):
    settings = settings_for(upstream.port, policies={"dir": str(policies(tmp_path, "suppress"))})
    async with run_gateway(settings) as gw:
        campaign = await send_winback(gw)
        status, suppressed = await gw.api().get(
            f"/api/v1/campaigns/{campaign['id']}/recipients?state=suppressed&limit=100"
        )
    assert campaign["state"] == "open"
    assert campaign["counters"]["suppressed"] == 30
    assert campaign["counters"]["relayed"] == 970
    assert sorted(upstream.recipients) == sorted(set(RECIPIENTS) - set(ACTIVE))
    assert status == 200
    assert sorted(r["address"] for r in suppressed["items"]) == sorted(ACTIVE[:30])
    assert {r["last_reply"] for r in suppressed["items"]} == {
        "suppressed by rule winback-not-active"
    }


async def test_test_sends_reach_internal_addresses_only(settings_for, upstream, tmp_path):
    settings = settings_for(upstream.port, policies={"dir": str(policies(tmp_path))})
    async with run_gateway(settings) as gw:
        await load_audience(gw)
        test = message(X_Campaign_ID="test-1", X_Campaign_Category="test")
        await gw.send("news@shop.test", ["ops@shop.test", "qa@eu.shop.test"], test)
        leaky = message(X_Campaign_ID="test-2", X_Campaign_Category="test")
        await gw.send("news@shop.test", ["ops@shop.test", "customer1@example.com"], leaky)
        internal = await eventually(lambda: settled(gw, "test-1"))
        outside = await eventually(lambda: settled(gw, "test-2"))
    assert internal["state"] == "open"
    assert internal["counters"]["relayed"] == 2
    assert outside["state"] == "held"
    assert outside["findings"][0]["evidence"]["sample"] == ["customer1@example.com"]


async def test_mixing_customers_and_leads_is_held(settings_for, upstream, tmp_path):
    settings = settings_for(upstream.port, policies={"dir": str(policies(tmp_path))})
    async with run_gateway(settings) as gw:
        await load_audience(gw)
        await gw.send("news@shop.test", ["customer1@example.com"], message(X_Campaign_ID="mixed"))
        first = await eventually(lambda: settled(gw, "mixed"))
        assert first["state"] == "open"
        await gw.send("news@shop.test", ["lead7@example.com"], message(X_Campaign_ID="mixed"))
        campaign = await eventually(lambda: settled(gw, "mixed"))
    assert campaign["state"] == "held"
    assert campaign["findings"][0]["evidence"] == {"reached": {"customers": 1, "leads": 1}}
    assert upstream.recipients == ["customer1@example.com"]


@pytest.mark.parametrize(("category", "state"), [(None, "held"), ("all-hands", "open")])
async def test_covering_most_of_all_contacts_is_held_unless_declared_all_hands(
    settings_for, upstream, tmp_path, category, state
):
    settings = settings_for(upstream.port, policies={"dir": str(policies(tmp_path))})
    headers = {"X_Campaign_ID": "everyone"} | (
        {"X_Campaign_Category": category} if category else {}
    )
    async with run_gateway(settings) as gw:
        await load_audience(gw)
        await gw.send(
            "news@shop.test", [f"contact{i}@example.com" for i in range(90)], message(**headers)
        )
        campaign = await eventually(lambda: settled(gw, "everyone"))
    assert campaign["state"] == state
    if state == "held":
        assert campaign["findings"][0]["evidence"]["percent"] == 90


async def test_a_rule_naming_a_segment_not_loaded_holds_until_it_is_uploaded(
    settings_for, upstream, tmp_path
):
    settings = settings_for(upstream.port, policies={"dir": str(policies(tmp_path))})
    async with run_gateway(settings) as gw:
        await gw.send("news@shop.test", ["a@example.org"], message(X_Campaign_ID="early"))
        early = await eventually(lambda: settled(gw, "early"))
        await load_audience(gw)
        await gw.send("news@shop.test", ["a@example.org"], message(X_Campaign_ID="later"))
        later = await eventually(lambda: settled(gw, "later"))
    assert early["state"] == "held"
    assert {f["kind"] for f in early["findings"]} == {"segment_missing"}
    assert later["state"] == "open"


async def test_release_only_segment_sends_just_those_held_recipients(
    settings_for, upstream, tmp_path
):
    settings = settings_for(upstream.port, policies={"dir": str(policies(tmp_path))})
    async with run_gateway(settings) as gw:
        campaign = await send_winback(gw)
        await upload_segment(gw.api(), "first-ten", RECIPIENTS[:10])
        status, after = await gw.api("alice").post(
            f"/api/v1/campaigns/{campaign['id']}/release",
            {"reason": "pilot", "only_segment": "first-ten"},
        )
        await eventually(lambda: len(upstream.recipients) == 10)
        status_missing, problem = await gw.api("alice").post(
            f"/api/v1/campaigns/{campaign['id']}/release", {"reason": "x", "only_segment": "nope"}
        )
    assert status == 200
    assert after["state"] == "held"
    assert after["counters"]["held"] == 990
    assert sorted(upstream.recipients) == sorted(RECIPIENTS[:10])
    assert after["timeline"][-1]["only_segment"] == "first-ten"
    assert (status_missing, problem["errors"][0]["field"]) == (422, "only_segment")


async def test_frequency_cap_drops_recipients_past_their_limit_across_campaigns(
    settings_for, upstream, tmp_path
):
    settings = settings_for(upstream.port, policies={"dir": str(policies(tmp_path))})
    async with run_gateway(settings) as gw:
        await load_audience(gw)
        for n in range(3):
            await gw.send(
                "robot@shop.test",
                ["busy@example.org", f"new{n}@example.org"],
                message(X_Campaign_ID=f"reminder-{n}", X_Campaign_Category="automated"),
            )
            await eventually(lambda n=n: settled(gw, f"reminder-{n}"))
        third = await campaign_of(gw, "reminder-2")
    assert upstream.recipients.count("busy@example.org") == 2
    assert third["counters"]["suppressed"] == 1
    assert third["state"] == "open"


async def test_file_segments_load_at_start_and_segments_survive_a_restart(
    settings_for, upstream, tmp_path
):
    settings = settings_for(upstream.port, policies={"dir": str(policies(tmp_path))})
    async with run_gateway(settings) as gw:
        await load_audience(gw)
        status, first = await gw.api("viewer").get("/api/v1/segments")
    async with run_gateway(settings) as gw:
        status, second = await gw.api("viewer").get("/api/v1/segments")
    assert status == 200
    assert second == first  # nothing reloaded: same versions, same load times
    by_name = {s["name"]: s for s in second["items"]}
    assert set(by_name) == {"active-users", "customers", "leads", "all-contacts", "staff"}
    assert by_name["staff"]["size"] == 2
    assert by_name["staff"]["source"] == f"file:{(tmp_path / 'policies' / 'staff.txt').resolve()}"
    assert by_name["active-users"]["size"] == len(ACTIVE)


async def test_replacing_a_segment_under_load_is_atomic(settings_for, upstream, tmp_path):
    # Version 1 holds x_i, version 2 holds y_i (after filler, so the load takes a while).
    # Mail keeps going to pairs (x_i, y_i) while version 2 loads, and after. With suppress,
    # exactly one of each pair must be dropped: the old list or the new one, never half.
    folder = tmp_path / "atomic"
    folder.mkdir()
    (folder / "p.yaml").write_text(
        "version: 1\nrules:\n  - {id: ex, kind: segment_exclude, segment: s, action: suppress}\n"
    )
    async with run_gateway(settings_for(upstream.port, policies={"dir": str(folder)})) as gw:
        await upload_segment(gw.api(), "s", [pair(i)[0] for i in range(2000)])
        filler = [f"filler{i}@example.com" for i in range(150_000)]
        replacing = asyncio.create_task(
            upload_segment(gw.api(), "s", filler + [pair(i)[1] for i in range(2000)])
        )
        sent = during = 0
        while not replacing.done() or sent < during + 5:
            if not replacing.done():
                during = sent + 1
            await gw.send("news@shop.test", list(pair(sent)), message(X_Campaign_ID="pairs"))
            sent += 1
        report = await replacing
        campaign = await eventually(lambda: settled(gw, "pairs"))
        _, page = await gw.api().get(f"/api/v1/campaigns/{campaign['id']}/recipients?limit=1000")
    assert report["version"] == 2
    dropped = {r["address"] for r in page["items"] if r["state"] == "suppressed"}
    outcomes = [(pair(i)[0] in dropped, pair(i)[1] in dropped) for i in range(sent)]
    assert all(old != new for old, new in outcomes), "a message saw neither or both lists"
    assert outcomes[0] == (True, False)  # before the switch: the old list
    assert outcomes[-1] == (False, True)  # after it: the new one
    assert during > 5  # mail really went on while the new version loaded


def pair(i: int) -> tuple[str, str]:
    return f"x{i}@example.org", f"y{i}@example.org"
