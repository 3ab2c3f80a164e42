"""docs/feedback.md's examples are real exchanges with a running gateway.

With SENDBRAKE_UPDATE_DOCS=1 (`make docs`) this rewrites the examples section of
docs/feedback.md; otherwise it fails when the committed examples no longer match what the
gateway answers (IDs, times and the per-run signature aside).
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path
from typing import Any

import aiohttp

from gateway.states import RecipientState
from tests.clock import ManualClock
from tests.docs import refresh_or_compare
from tests.fakes.platform import FakePlatform
from tests.harness import POLICIES, Running, held_campaign, run_gateway, send_campaign
from tests.helpers import eventually
from tests.webhooks import Signer, batch, dsn, event

DOC = Path(__file__).resolve().parents[2] / "docs" / "feedback.md"
HOOK = "/webhooks/sendgrid"


def block(kind: str, text: str) -> str:
    return f"```{kind}\n{text.rstrip()}\n```\n"


def pretty(data: Any) -> str:
    return json.dumps(data, indent=2, ensure_ascii=False)


async def post_hook(gw: Running, body: bytes, headers: dict[str, str]) -> tuple[int, Any]:
    async with (
        aiohttp.ClientSession() as http,
        http.post(gw.http_url + HOOK, data=body, headers=headers) as response,
    ):
        return response.status, await response.json(content_type=None)


def hook_request(body: bytes, *, signed: bool) -> str:
    lines = [f"POST {HOOK}", "Content-Type: application/json"]
    if signed:
        lines += [
            "X-Twilio-Email-Event-Webhook-Signature: <base64 DER ECDSA signature>",
            "X-Twilio-Email-Event-Webhook-Timestamp: <unix time>",
        ]
    return "\n".join(lines) + "\n\n" + pretty(json.loads(body))


async def test_feedback_examples_in_the_docs_match_a_live_run(settings_for, tmp_path):
    # A whole second, so the ages that problem documents name do not depend on rounding.
    signer, clock = Signer(), ManualClock(float(int(time.time())))
    platform = await FakePlatform().start()
    settings = settings_for(
        webhooks={
            "sendgrid": {
                "public_key": signer.public_key,
                "forward_url": platform.url,
                "max_age": "3d",
                "poll_interval": "50ms",
            }
        },
        feedback={"dsn_recipients": ["bounces@shop.test"]},
    )
    parts: list[str] = []
    try:
        async with run_gateway(settings, clock=clock) as gw:
            rcpts = ["ada@example.org", "bob@example.org", "cy@example.org"]
            campaign = await send_campaign(gw, "spring-sale", rcpts)
            rows = {r.address: r for r in await gw.spool.recipients(campaign_id=campaign)}
            mid = rows["ada@example.org"].message_id
            events = [
                event("delivered", "ada@example.org", mid, campaign, 1, clock.now),
                event(
                    "bounce",
                    "bob@example.org",
                    mid,
                    campaign,
                    2,
                    clock.now,
                    type="bounce",
                    status="5.1.1",
                    reason="550 5.1.1 The email account that you tried to reach does not exist",
                ),
                event("spamreport", "cy@example.org", mid, campaign, 3, clock.now),
                event("open", "ada@example.org", mid, campaign, 4, clock.now),
            ]
            body = batch(events)
            platform.fail_next(1)
            status, receipt = await post_hook(gw, body, signer.headers(body, clock.now))
            parts.append(
                "### A signed batch of events\n\n"
                + block("http", hook_request(body, signed=True))
                + f"\n`{status}`\n\n"
                + block("json", pretty(receipt))
            )
            status, again = await post_hook(gw, body, signer.headers(body, clock.now))
            parts.append(
                "### The same batch again (SendGrid's retry): counted and forwarded once\n\n"
                f"`{status}`\n\n" + block("json", pretty(again))
            )
            _, detail = await gw.api("viewer").get(f"/api/v1/campaigns/{campaign}")
            excerpt = {k: detail[k] for k in ("id", "key", "feedback", "feedback_samples")}
            parts.append(
                "### The campaign's feedback (an excerpt of its JSON)\n\n"
                + block("http", f"GET /api/v1/campaigns/{campaign}")
                + "\n`200`\n\n"
                + block("json", pretty(excerpt))
            )
            unsigned = {"Content-Type": "application/json"}
            status, problem = await post_hook(gw, body, unsigned)
            parts.append(
                "### Without a valid signature: 401, nothing stored\n\n"
                + block("http", hook_request(body, signed=False))
                + f"\n`{status}`\n\n"
                + block("json", pretty(problem))
            )
            stale = signer.headers(body, clock.now - 600)
            status, problem = await post_hook(gw, body, stale)
            parts.append(
                "### Signed ten minutes ago: 401\n\n"
                f"`{status}`\n\n" + block("json", pretty(problem))
            )
            wrong = json.dumps([{"event": "delivered", "timestamp": int(clock.now)}]).encode()
            status, problem = await post_hook(gw, wrong, signer.headers(wrong, clock.now))
            parts.append(
                "### Signed but not a batch of events: 400 naming the field\n\n"
                + block("http", hook_request(wrong, signed=True))
                + f"\n`{status}`\n\n"
                + block("json", pretty(problem))
            )

            await eventually(lambda: platform.attempts == 1)
            viewer = gw.api("viewer")

            async def pending() -> Any:
                _, page = await viewer.get("/api/v1/webhooks/deliveries?state=pending")
                return page if page["items"] and page["items"][0]["attempts"] == 1 else None

            page = await eventually(pending)
            parts.append(
                "### The platform failed once: the batch waits for its next attempt\n\n"
                + block("http", "GET /api/v1/webhooks/deliveries?state=pending")
                + "\n`200`\n\n"
                + block("json", pretty(page))
            )
            clock.advance(60)
            gw.gateway.forwarder.wake()
            await eventually(lambda: len(platform.accepted) == 1)
            forwarded, headers = platform.accepted[0]
            shown = ["POST /hooks/sendgrid"] + [
                f"{name}: {headers[name]}"
                for name in ("Content-Type", "User-Agent", "X-Sendbrake-Forward-Id")
            ]
            parts.append(
                "### What the platform receives\n\n"
                + block("http", "\n".join(shown) + "\n\n" + forwarded.decode())
            )

            platform.fail_next(1000, status=503)
            late = batch([event("delivered", "bob@example.org", mid, campaign, 5, clock.now)])
            await post_hook(gw, late, signer.headers(late, clock.now))
            await eventually(lambda: platform.attempts == 3)
            # The failed attempt is settled (and its retry planned) before the clock moves
            # past max_age; otherwise it would die at its first attempt, not its second.
            await eventually(pending)
            clock.advance(3 * 86400 + 1)
            gw.gateway.forwarder.wake()

            async def dead() -> Any:
                _, page = await viewer.get("/api/v1/webhooks/deliveries?state=dead")
                return page if page["items"] else None

            page = await eventually(dead)
            parts.append(
                "### Past `webhooks.sendgrid.max_age`: a dead letter\n\n"
                + block("http", "GET /api/v1/webhooks/deliveries?state=dead")
                + "\n`200`\n\n"
                + block("json", pretty(page))
            )
            platform.recover()
            letter = page["items"][0]["id"]
            why = {"reason": "platform endpoint fixed (INC-42)"}
            status, retried = await gw.api("alice").post(
                f"/api/v1/webhooks/deliveries/{letter}/retry", why
            )
            parts.append(
                "### Retry a dead letter (operator; audited)\n\n"
                + block(
                    "http",
                    f"POST /api/v1/webhooks/deliveries/{letter}/retry\n"
                    "Authorization: Bearer <alice's token: operator>\n"
                    "Content-Type: application/json\n\n" + pretty(why),
                )
                + f"\n`{status}`\n\n"
                + block("json", pretty(retried))
            )
            await eventually(lambda: len(platform.accepted) == 2)

            report = dsn("ada@example.org", mid)
            assert await gw.send("", ["bounces@shop.test"], report) == {}
            _, detail = await viewer.get(f"/api/v1/campaigns/{campaign}")
            parts.append(
                "### A DSN sent to the return path over SMTP\n\n"
                + block("email", report.decode().replace("\r\n", "\n"))
                + "\nThe gateway answers `250 2.0.0 queued as <id>`, relays nothing, and counts"
                " a bounce of ada@example.org in the campaign:\n\n"
                + block("json", pretty({"feedback": detail["feedback"]}))
            )
    finally:
        await platform.stop()
    refresh_or_compare(DOC, "\n".join(parts))


async def test_canary_examples_in_the_docs_match_a_live_run(settings_for, upstream, tmp_path):
    signer, clock = Signer(), ManualClock(float(int(time.time())))
    policies = tmp_path / "policies"
    policies.mkdir()
    shutil.copy(POLICIES / "default.yaml", policies)
    (policies / "breaker.yaml").write_text(f"version: 1\nrules:\n  - {CANARY_BREAKER}\n")
    settings = settings_for(
        upstream.port,
        ops={"canary_poll_interval": "20ms"},
        policies={"dir": str(policies)},
        webhooks={"sendgrid": {"public_key": signer.public_key}},
    )
    parts: list[str] = []
    async with run_gateway(settings, clock=clock) as gw:
        campaign = await held_campaign(gw, 200)
        api = gw.api("alice")
        ask = {"reason": "new list: 5 % first", "canary": "5%", "observe": "30m"}
        status, started = await api.post(f"/api/v1/campaigns/{campaign}/release", ask)
        parts.append(
            "### Release 5 % first\n\n"
            + block(
                "http",
                f"POST /api/v1/campaigns/{campaign}/release\n"
                "Authorization: Bearer <alice's token: operator>\n"
                "Content-Type: application/json\n\n" + pretty(ask),
            )
            + f"\n`{status}` (an excerpt of the campaign)\n\n"
            + block("json", pretty(_canary_excerpt(started)))
        )

        async def observing() -> Any:
            _, detail = await api.get(f"/api/v1/campaigns/{campaign}")
            return detail if detail["canary"]["state"] == "observing" else None

        detail = await eventually(observing)
        parts.append(
            "### The slice is out: its feedback is awaited until `decide_at`\n\n"
            + block("json", pretty(_canary_excerpt(detail)))
        )
        rows = await gw.spool.recipients(campaign_id=campaign, state=RecipientState.RELAYED)
        complaints = [
            event("spamreport", row.address, row.message_id, campaign, n, clock.now)
            for n, row in enumerate(rows[:2])
        ]
        body = batch(complaints)
        status, _ = await post_hook(gw, body, signer.headers(body, clock.now))
        assert status == 200

        async def failed() -> Any:
            _, detail = await api.get(f"/api/v1/campaigns/{campaign}")
            found = [f for f in detail["findings"] if f["rule"] == "breaker"]
            return detail if detail["canary"]["state"] == "failed" and found else None

        detail = await eventually(failed)
        breaker = [f for f in detail["findings"] if f["rule"] == "breaker"]
        parts.append(
            "### Two of the ten report it as spam: the canary fails, the rest stays held\n\n"
            + block("json", pretty({**_canary_excerpt(detail), "findings": breaker}))
        )
    refresh_or_compare(DOC, "\n".join(parts), "canary-examples")


CANARY_BREAKER = "{id: breaker, kind: feedback, min_sent: 10, max_rate: {complained: 0.05}}"


def _canary_excerpt(detail: dict[str, Any]) -> dict[str, Any]:
    counters = {k: detail["counters"][k] for k in ("received", "held", "queued", "relayed")}
    return {"state": detail["state"], "counters": counters, "canary": detail["canary"]}
