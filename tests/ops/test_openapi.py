"""The OpenAPI document describes what the gateway serves: every route, every answer.

A real gateway (real spool, real tokens) is driven through each route of the served
document, with its successes and its problem documents; each answer's status must be one
the document lists for that route, its media type the documented one, and its JSON body
valid against the documented schema. Every documented (route, status) must be seen.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from jsonschema import Draft202012Validator

from gateway.feedback.sendgrid import parse_batch
from gateway.model import ForwardState
from tests.harness import IDENTITY_TOKENS, TOKENS, docs_policies, held_campaign, run_gateway
from tests.mail import message
from tests.webhooks import Signer, batch, event

MAX_BODY = 4096
BODY_TIMEOUT = 0.2
SIGNER = Signer()  # SendGrid's key, as far as these gateways know


async def slow_body() -> AsyncIterator[bytes]:
    """A JSON body whose second half comes after the gateway stopped waiting for it."""
    yield b'{"reason": '
    await asyncio.sleep(BODY_TIMEOUT * 3)
    yield b'"x"}'


class Checked:
    """Calls the gateway and checks every answer against the served document."""

    def __init__(self, gw: Any, doc: dict[str, Any]) -> None:
        self.gw = gw
        self.doc = doc
        self.seen: set[tuple[str, str, str]] = set()

    async def call(
        self,
        who: str | None,
        method: str,
        template: str,
        path: str | None = None,
        body: Any = None,
        **kwargs: Any,
    ) -> tuple[int, Any]:
        """Call `method path` (documented as `template`) as `who`; return status and body."""
        token = {**TOKENS, **IDENTITY_TOKENS}[who][0] if who else None
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        headers |= kwargs.pop("headers", {})
        url = self.gw.http_url + (path or template)
        async with (
            aiohttp.ClientSession() as http,
            http.request(method, url, json=body, headers=headers, **kwargs) as response,
        ):
            status, media = response.status, response.content_type
            answer = await response.json(content_type=None) if "json" in media else None
        operation = self.doc["paths"][template][method.lower()]
        documented = operation["responses"]
        assert str(status) in documented, f"{method} {template} answered {status}: {answer}"
        (documented_media, spec), *_ = documented[str(status)]["content"].items()
        assert media == documented_media, f"{method} {template} {status}: {media}"
        if "schema" in spec:
            schema = {**spec["schema"], "components": self.doc["components"]}
            errors = [e.message for e in Draft202012Validator(schema).iter_errors(answer)]
            assert errors == [], f"{method} {template} {status}: {errors}"
        self.seen.add((method, template, str(status)))
        return status, answer


def documented(doc: dict[str, Any]) -> set[tuple[str, str, str]]:
    return {
        (method.upper(), path, status)
        for path, item in doc["paths"].items()
        for method, operation in item.items()
        for status in operation["responses"]
    }


def served(app: web.Application) -> set[tuple[str, str]]:
    """(method, path) of every route the router serves, in OpenAPI path syntax.

    The console's pages (/console, a sub-application) are HTML for people, not the API.
    """
    return {
        (route.method, route.resource.canonical.replace("{key:.+}", "{key}"))
        for route in app.router.routes()
        if route.method != "HEAD"
        and isinstance(route.resource, web.Resource)
        and not route.resource.canonical.startswith("/console")
    }


@pytest.fixture
def settings(settings_for, tmp_path):
    return settings_for(
        ops={"two_person_release_above": 10, "auth_max_failures": 100},
        http={"max_body_size": MAX_BODY, "body_timeout": BODY_TIMEOUT},
        segments={"max_upload_size": 1000},
        policies={"dir": str(docs_policies(tmp_path))},
        webhooks={"sendgrid": {"public_key": SIGNER.public_key, "max_body_size": MAX_BODY}},
    )


async def test_the_document_lists_exactly_the_routes_the_router_serves(settings):
    async with run_gateway(settings) as gw:
        status, doc = await gw.api(None).get("/api/v1/openapi.json")
        routes = served(gw.gateway.http_app)
    assert status == 200
    listed = {(method.upper(), path) for path, item in doc["paths"].items() for method in item}
    assert listed == routes
    assert {p for _, p in routes if p.startswith("/api/v1/")} >= {
        "/api/v1/campaigns/{id}/signoffs",
        "/api/v1/policies/reload",
        "/api/v1/segments/{name}",
    }


async def test_every_component_of_the_document_is_a_valid_json_schema(settings):
    async with run_gateway(settings) as gw:
        _, doc = await gw.api(None).get("/api/v1/openapi.json")
    for name, schema in doc["components"]["schemas"].items():
        Draft202012Validator.check_schema(schema)
        assert schema.get("description"), f"{name} has no description"


async def probe_generic_problems(api: Checked, paths: dict[tuple[str, str], str]) -> None:
    """401, 403 and the bad-body answers every route of its kind documents."""
    for (method, template), path in paths.items():
        operation = api.doc["paths"][template][method.lower()]
        if "security" not in operation:
            continue
        await api.call(None, method, template, path, {"reason": "x"})
        outsider = "viewer" if method != "GET" else "platform"
        if not template.endswith("/signoffs"):  # any token may try; 403 is the identity's
            await api.call(outsider, method, template, path, {"reason": "x"})
        if "application/json" not in operation.get("requestBody", {}).get("content", {}):
            continue
        await api.call("admin", method, template, path, data="reason=x")
        json = {"Content-Type": "application/json"}
        await api.call("admin", method, template, path, data="{", headers=json)
        await api.call("admin", method, template, path, {"reason": "x" * MAX_BODY})
        await api.call("admin", method, template, path, {"reason": ""})
        await api.call("admin", method, template, path, data=slow_body(), headers=json)


async def probe_lockout(api: Checked, paths: dict[tuple[str, str], str]) -> None:
    """Fail token checks until this address is locked out; then every route answers 429."""
    for _ in range(200):
        status, _ = await api.call(None, "GET", "/api/v1/relay")
        if status == 429:
            break
    for (method, template), path in paths.items():
        if "security" in api.doc["paths"][template][method.lower()]:
            status, _ = await api.call("admin", method, template, path, {"reason": "x"})
            assert status == 429


async def probe_webhooks(api: Checked, gw: Any) -> None:
    """The webhook (signed, not signed, malformed, too large) and the outbox's routes."""
    hook, now = "/webhooks/sendgrid", time.time()
    events = batch([event("delivered", "a@example.org", "01MSG", "01CAMP", 1, now)])
    await api.call(None, "POST", hook, data=events, headers=SIGNER.headers(events, now))
    for body in (b"[{}]", b"[" + b" " * MAX_BODY + b"]"):  # 400 naming the field, 413
        await api.call(None, "POST", hook, data=body, headers=SIGNER.headers(body, now))
    await api.call(None, "POST", hook, data=events, headers={"Content-Type": "application/json"})

    # No forward URL here: a batch queued by hand is given up on by hand, then retried.
    queued = batch([event("bounce", "b@example.org", "01MSG", "01CAMP", 2, now)])
    outcome = await gw.spool.record_feedback("sendgrid", parse_batch(queued), now, body=queued)
    [claimed] = await gw.spool.claim_forwards("test", now, 10, 60)
    await gw.spool.settle_forward("test", claimed.id, ForwardState.DEAD, now, error="HTTP 500")
    deliveries, retry = "/api/v1/webhooks/deliveries", "/api/v1/webhooks/deliveries/{id}/retry"
    await api.call("viewer", "GET", deliveries, f"{deliveries}?state=dead&limit=1")
    await api.call("viewer", "GET", deliveries, f"{deliveries}?state=lost")
    mine = f"{deliveries}/{outcome.forward_id}/retry"
    status, _ = await api.call("alice", "POST", retry, mine, {"reason": "platform is back"})
    assert status == 200
    status, _ = await api.call("alice", "POST", retry, mine, {"reason": "again"})
    assert status == 409
    await api.call("alice", "POST", retry, f"{deliveries}/nope/retry", {"reason": "x"})


async def test_every_route_answers_what_the_document_says(settings):
    async with run_gateway(settings) as gw:
        _, doc = await gw.api(None).get("/api/v1/openapi.json")
        api = Checked(gw, doc)
        await api.call(None, "GET", "/api/v1/openapi.json")
        await api.call(None, "GET", "/healthz")
        await api.call(None, "GET", "/readyz")
        await api.call(None, "GET", "/metrics")

        big = await held_campaign(gw, 60)
        await gw.api("alice").post("/api/v1/relay/pause", {"reason": "keep mail queued"})
        await gw.send("news@shop.test", ["a@example.org"], message(X_Campaign_ID="small"))
        small = next(
            c["id"] for c in (await gw.api().get("/api/v1/campaigns"))[1]["items"] if c["id"] != big
        )
        sample = (await gw.api().get(f"/api/v1/campaigns/{big}"))[1]["sample"]["id"]
        c, m = "/api/v1/campaigns/{id}", "/api/v1/messages/{id}"
        why = {"reason": "x"}

        await api.call("viewer", "GET", "/api/v1/campaigns", "/api/v1/campaigns?limit=1")
        await api.call("viewer", "GET", "/api/v1/campaigns", "/api/v1/campaigns?state=sleeping")
        await api.call("viewer", "GET", c, f"/api/v1/campaigns/{big}")
        await api.call("viewer", "GET", c, "/api/v1/campaigns/nope")
        recipients = f"{c}/recipients"
        await api.call("viewer", "GET", recipients, f"/api/v1/campaigns/{big}/recipients?limit=2")
        await api.call("viewer", "GET", recipients, f"/api/v1/campaigns/{big}/recipients?limit=0")
        await api.call("viewer", "GET", recipients, "/api/v1/campaigns/nope/recipients")
        await api.call("viewer", "GET", m, f"/api/v1/messages/{sample}")
        await api.call("viewer", "GET", m, "/api/v1/messages/nope")
        await api.call("viewer", "GET", f"{m}/raw", f"/api/v1/messages/{sample}/raw")
        await api.call("viewer", "GET", f"{m}/raw", "/api/v1/messages/nope/raw")
        await api.call("viewer", "GET", "/api/v1/relay")
        await api.call("viewer", "GET", "/api/v1/audit", "/api/v1/audit?cursor=%25")
        await api.call("viewer", "GET", "/api/v1/segments")

        manifest = "/api/v1/campaigns/{key}"
        body = {"reason": "declared", "size": 1, "client": "127.0.0.0/8"}
        await api.call("platform", "PUT", manifest, "/api/v1/campaigns/small", body)

        release = f"/api/v1/campaigns/{big}/release"
        status, _ = await api.call("alice", "POST", f"{c}/release", release, {"reason": "ok"})
        assert status == 202  # 60 held, above ops.two_person_release_above
        await api.call("alice", "POST", f"{c}/release", release, {"reason": "me again"})  # 409
        await api.call("bob", "POST", f"{c}/release", release, {"reason": "agreed"})
        await api.call("alice", "POST", f"{c}/release", "/api/v1/campaigns/nope/release", why)
        hold = f"/api/v1/campaigns/{small}/hold"
        await api.call("alice", "POST", f"{c}/hold", hold, {"reason": "looks off"})
        await api.call("alice", "POST", f"{c}/hold", "/api/v1/campaigns/nope/hold", why)
        signoffs = f"{c}/signoffs"
        mine = f"/api/v1/campaigns/{small}/signoffs"
        await api.call("jane", "POST", signoffs, mine, {"reason": "I wrote it"})
        await api.call("alice", "POST", signoffs, mine, {"reason": "x"})  # no identity: 422
        await api.call("alice", "POST", signoffs, mine, {"identity": "ceo", "reason": "x"})  # 403
        nope = "/api/v1/campaigns/nope/signoffs"
        await api.call("admin", "POST", signoffs, nope, {"identity": "ceo", "reason": "x"})
        reject = f"/api/v1/campaigns/{small}/reject"
        await api.call("alice", "POST", f"{c}/reject", reject, {"reason": "no"})
        await api.call("alice", "POST", f"{c}/reject", "/api/v1/campaigns/nope/reject", why)
        await api.call("alice", "POST", f"{c}/hold", hold, {"reason": "again"})  # rejected: 409
        small_sample = (await gw.api().get(f"/api/v1/campaigns/{small}"))[1]["sample"]["id"]
        assert await gw.spool.retire_bodies(time.time() + 1, time.time()) == 1  # discarded
        await api.call("viewer", "GET", f"{m}/raw", f"/api/v1/messages/{small_sample}/raw")
        await api.call("jane", "POST", signoffs, mine, {"reason": "too late"})  # rejected: 409
        await api.call("alice", "POST", "/api/v1/relay/resume", body={"reason": "go"})
        await api.call("alice", "POST", "/api/v1/relay/pause", body={"reason": "stop"})

        segment, upload = "/api/v1/segments/{name}", "/api/v1/segments/vip?reason=crm"
        csv = {"Content-Type": "text/csv"}
        text = "email\nada@example.org\nnot-an-address\n"
        await api.call("alice", "PUT", segment, upload, data=text, headers=csv)
        await api.call("alice", "PUT", segment, upload, data=text * 100, headers=csv)  # 413
        await api.call("alice", "PUT", segment, "/api/v1/segments/vip", data=text, headers=csv)
        await api.call("alice", "PUT", segment, upload, data="{}", headers={"Content-Type": "a/b"})
        await api.call("alice", "PUT", segment, upload, data=slow_body(), headers=csv)  # 408

        preflight = "/api/v1/preflight"
        draft = "From: Shop <news@shop.test>\nTo: a@example.org\nSubject: Hi {{FirstName}}\n\nHi!\n"
        status, answer = await api.call("platform", "POST", preflight, body={"message": draft})
        assert (status, answer["held"]) == (200, True)

        reload = "/api/v1/policies/reload"
        await api.call("alice", "POST", reload, body={"reason": "merged"})
        folder = Path(settings.policies.dir)
        (folder / "site.yaml").write_text(
            "version: 1\nrules:\n  - {id: ceiling, kind: absolute_ceiling, max_recipients: -1}\n"
        )
        status, problem = await api.call("alice", "POST", reload, body={"reason": "typo"})
        assert (status, problem["type"]) == (422, "https://sendbrake.dev/problems/invalid-policies")

        await probe_webhooks(api, gw)

        paths = {
            (method.upper(), template): template.format(id=big, key="small", name="vip")
            for template, item in doc["paths"].items()
            for method in item
        }
        await probe_generic_problems(api, paths)
        status, audit = await api.call("viewer", "GET", "/api/v1/audit", "/api/v1/audit?limit=1000")
        assert {e["outcome"] for e in audit["items"]} == {"ok", "pending", "refused"}
        await probe_lockout(api, paths)

        await gw.spool.close()  # as if the database went away
        await api.call(None, "GET", "/readyz")
        await gw.spool.open()
    assert documented(doc) - api.seen == set()
