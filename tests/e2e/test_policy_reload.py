"""Policy reload: POST /api/v1/policies/reload and SIGHUP swap the policy set atomically;
an invalid set keeps the old one, says why (file:line: key) and is logged and audited."""

from __future__ import annotations

import os
import signal
import smtplib

import aiohttp
import pytest

from tests.harness import run_gateway
from tests.helpers import eventually
from tests.mail import message
from tests.metrics import samples
from tests.process import GatewayProcess

BASE_POLICY = "version: 1\nrules:\n  - {id: blast-declared, kind: declared_size}\n"
TAGS_POLICY = "version: 1\nrules:\n  - {id: merge-tags, kind: merge_tags}\n"
BROKEN = "version: 1\nrules:\n  - {id: tags, kind: merge_tags}\n  - {id: x, kind: send_nothing}\n"


def folder_with(tmp_path, **files: str):
    folder = tmp_path / "policies"
    folder.mkdir(exist_ok=True)
    for name, text in files.items():
        (folder / f"{name}.yaml").write_text(text)
    return folder


async def policy_in_force(gw) -> str:
    """The version /metrics reports (sendbrake_policy_info), so replicas can be compared."""
    async with aiohttp.ClientSession() as http, http.get(f"{gw.http_url}/metrics") as response:
        text = await response.text()
    [version] = [
        dict(labels)["version"] for name, labels in samples(text) if name == "sendbrake_policy_info"
    ]
    return version


async def campaign(gw, key: str) -> dict | None:
    found = await gw.spool.find_campaign("127.0.0.0/8", key)
    if found is None or found.counters.queued or found.counters.deferred:
        return None
    status, body = await gw.api().get(f"/api/v1/campaigns/{found.id}")
    assert status == 200
    return body


async def test_reload_over_the_api_applies_new_rules_to_later_mail(
    settings_for, upstream, tmp_path
):
    folder = folder_with(tmp_path, base=BASE_POLICY)
    leak = {"subject": "Hi {{FirstName}}"}
    async with run_gateway(settings_for(upstream.port, policies={"dir": str(folder)})) as gw:
        before = gw.gateway.engine.policies.version
        reported = [await policy_in_force(gw)]
        await gw.send("news@shop.test", ["a@example.org"], message(**leak, X_Campaign_ID="one"))
        first = await eventually(lambda: campaign(gw, "one"))
        (folder / "tags.yaml").write_text(TAGS_POLICY)
        status, reloaded = await gw.api("alice").post("/api/v1/policies/reload", {"reason": "tags"})
        reported.append(await policy_in_force(gw))
        await gw.send("news@shop.test", ["b@example.org"], message(**leak, X_Campaign_ID="two"))
        second = await eventually(lambda: campaign(gw, "two"))
        _, audit = await gw.api().get("/api/v1/audit?limit=1")
    assert status == 200, reloaded
    assert reloaded["previous"] == before
    assert reported == [before, reloaded["version"]]
    assert reloaded["changed"] is True
    assert reloaded["files"] == ["base.yaml", "tags.yaml"]
    assert [r["id"] for r in reloaded["rules"]] == ["blast-declared", "merge-tags"]
    assert first["state"] == "open"
    assert second["state"] == "held"
    [finding] = second["findings"]
    assert finding["policy_version"] == reloaded["version"] != before
    [entry] = audit["items"]
    assert (entry["action"], entry["outcome"]) == ("reload policies", "ok")


async def test_an_invalid_set_keeps_the_old_one_and_answers_422_with_every_problem(
    settings_for, upstream, tmp_path
):
    folder = folder_with(tmp_path, tags=TAGS_POLICY)
    async with run_gateway(settings_for(upstream.port, policies={"dir": str(folder)})) as gw:
        before = gw.gateway.engine.policies.version
        (folder / "tags.yaml").write_text(BROKEN)
        status, problem = await gw.api("alice").post("/api/v1/policies/reload", {"reason": "oops"})
        await gw.send("news@shop.test", ["a@example.org"], message(subject="Hi {{FirstName}}"))
        held = await eventually(gw.spool.campaigns)
        _, audit = await gw.api().get("/api/v1/audit?limit=1")
    assert status == 422
    assert problem["version"] == before
    assert problem["errors"] == [
        {
            "field": f"{folder}/tags.yaml:4: rules.1.kind",
            "detail": problem["errors"][0]["detail"],
        }
    ]
    assert problem["errors"][0]["detail"].startswith("unknown rule kind 'send_nothing'")
    assert gw.gateway.engine.policies.version == before
    assert held[0].state == "held"  # the old merge-tags rule still judges new mail
    assert held[0].findings[0].policy_version == before
    [entry] = audit["items"]
    assert (entry["action"], entry["outcome"]) == ("reload policies", "refused")


async def test_only_operators_may_reload(settings_for, upstream, tmp_path):
    async with run_gateway(settings_for(upstream.port)) as gw:
        status, problem = await gw.api("viewer").post("/api/v1/policies/reload", {"reason": "x"})
    assert status == 403, problem


@pytest.mark.slow
async def test_sighup_reloads_the_policies_and_a_broken_set_is_logged_and_kept(tmp_path):
    folder = folder_with(tmp_path, base=BASE_POLICY)
    env = {
        "PATH": os.environ.get("PATH", ""),
        "SENDBRAKE_SMTP__LISTEN": "127.0.0.1:0",
        "SENDBRAKE_HTTP__LISTEN": "127.0.0.1:0",
        "SENDBRAKE_POLICIES__DIR": str(folder),
        "SENDBRAKE_LOG__FORMAT": "json",
        "SENDBRAKE_LOG__LEVEL": "info",
    }
    gateway = GatewayProcess(env, tmp_path / "gateway.log", cwd=tmp_path)

    def event(name: str) -> list[dict]:
        return [e for e in gateway.events() if e.get("event") == name]

    try:
        started = (await gateway.listening())["policies"]
        (folder / "tags.yaml").write_text(TAGS_POLICY)
        gateway.proc.send_signal(signal.SIGHUP)
        [reloaded] = await eventually(lambda: event("policies_reloaded"))
        (folder / "tags.yaml").write_text(BROKEN)
        gateway.proc.send_signal(signal.SIGHUP)
        [failed] = await eventually(lambda: event("policies_reload_failed"))
        with smtplib.SMTP(*await gateway.smtp_address(), timeout=10) as client:
            client.sendmail("a@example.com", ["b@example.com"], b"Subject: still up\r\n\r\nyes\r\n")
        gateway.proc.send_signal(signal.SIGTERM)
        assert await gateway.wait(timeout=60) == 0
    finally:
        gateway.close()
    assert reloaded["previous"] == started
    assert reloaded["actor"] == "SIGHUP"
    assert failed["version"] == reloaded["version"]
    assert "send_nothing" in failed["error"]
