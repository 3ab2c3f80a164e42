"""docs/api.md's examples are real exchanges with a running gateway.

This test drives a scenario through the API and renders every request and response. With
SENDBRAKE_UPDATE_DOCS=1 (`make docs`) it rewrites the examples section of docs/api.md;
otherwise it fails when the committed examples no longer match what the API answers
(IDs, times and durations aside, which differ on every run).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tests.docs import refresh_or_compare
from tests.harness import IDENTITY_TOKENS, TOKENS, docs_policies, run_gateway
from tests.helpers import eventually
from tests.mail import message

DOC = Path(__file__).resolve().parents[2] / "docs" / "api.md"


class Recorder:
    """Calls the API and keeps each exchange as Markdown."""

    def __init__(self, gw) -> None:
        self.gw = gw
        self.parts: list[str] = []

    async def call(
        self,
        title: str,
        who: str | None,
        method: str,
        path: str,
        body: Any = None,
        *,
        text: str | None = None,
        content_type: str = "text/plain",
    ) -> Any:
        api = self.gw.api(who)
        if text is None:
            status, answer = await api.call(method, path, body)
        else:
            headers = {"Content-Type": content_type}
            status, answer = await api.call(method, path, data=text.encode(), headers=headers)
        request = f"{method} {path}\n"
        if who:
            roles = ", ".join({**TOKENS, **IDENTITY_TOKENS}[who][1])
            bound = f", identity {IDENTITY_TOKENS[who][2]}" if who in IDENTITY_TOKENS else ""
            request += f"Authorization: Bearer <{who}'s token: {roles}{bound}>\n"
        if body is not None:
            request += "Content-Type: application/json\n\n" + json.dumps(body, indent=2) + "\n"
        if text is not None:
            request += f"Content-Type: {content_type}\n\n{text}"
        response = json.dumps(answer, indent=2, ensure_ascii=False)
        self.parts.append(
            f"### {title}\n\n```http\n{request}```\n\n`{status}`\n\n```json\n{response}\n```\n"
        )
        return answer


async def test_api_examples_in_the_docs_match_a_live_run(settings_for, upstream, tmp_path):
    folder = docs_policies(tmp_path)
    settings = settings_for(
        upstream.port, ops={"two_person_release_above": 50}, policies={"dir": str(folder)}
    )
    async with run_gateway(settings) as gw:
        rec = Recorder(gw)
        await rec.call(
            "Declare a campaign before sending (manifest)",
            "platform",
            "PUT",
            "/api/v1/campaigns/spring-sale",
            {
                "size": 20,
                "category": "newsletter",
                "locale": "en",
                "reason": "spring sale, list v3",
            },
        )
        content = message(
            subject="Spring sale: 20% off",
            body="Hello!\r\n\r\nOur spring sale starts today.",
            X_Campaign_ID="spring-sale",
        )
        await gw.send("news@shop.test", [f"customer{i}@example.org" for i in range(40)], content)
        await gw.send(
            "news@shop.test", [f"customer{i}@example.org" for i in range(40, 120)], content
        )
        campaign = await gw.spool.find_campaign("127.0.0.0/8", "spring-sale")
        base = f"/api/v1/campaigns/{campaign.id}"
        await eventually(lambda: _relayed(gw, base, 40))  # the first 40 went out before the hold
        await rec.call(
            "List held campaigns", "viewer", "GET", "/api/v1/campaigns?state=held&limit=10"
        )
        await rec.call(
            "Inspect a campaign: findings, sample message, timeline", "viewer", "GET", base
        )
        await rec.call(
            "Page through its held recipients",
            "viewer",
            "GET",
            f"{base}/recipients?state=held&limit=2",
        )
        await rec.call(
            "Without a token: 401", None, "POST", f"{base}/release", {"reason": "looks fine"}
        )
        await rec.call(
            "A viewer may not release: 403",
            "viewer",
            "POST",
            f"{base}/release",
            {"reason": "looks fine"},
        )
        await rec.call(
            "Invalid input names the field: 422",
            "alice",
            "POST",
            f"{base}/release",
            {"max_recipients": 0},
        )
        await rec.call(
            "Release a sample of 5 first",
            "alice",
            "POST",
            f"{base}/release",
            {"reason": "send 5 and check the rendering", "max_recipients": 5},
        )
        await eventually(lambda: _relayed(gw, base, 45))  # the sample went out
        await rec.call(
            "Releasing more than ops.two_person_release_above needs a second operator: 202",
            "alice",
            "POST",
            f"{base}/release",
            {"reason": "rendering is fine, list checked"},
        )
        await rec.call(
            "The second operator's release sends the rest",
            "bob",
            "POST",
            f"{base}/release",
            {"reason": "agreed with alice"},
        )
        await rec.call(
            "Pause all relaying (ingest keeps accepting)",
            "alice",
            "POST",
            "/api/v1/relay/pause",
            {"reason": "provider incident"},
        )
        await rec.call(
            "Resume", "alice", "POST", "/api/v1/relay/resume", {"reason": "provider recovered"}
        )
        await rec.call(
            "Upload a segment (streamed; text: one address per line, or CSV with a header)",
            "alice",
            "PUT",
            "/api/v1/segments/vip?reason=VIP%20list%20from%20CRM",
            text=(
                "email,name\nada@example.org,Ada\nBOB@Example.org,Bob\n"
                "not-an-address,Eve\nada@example.org,Ada again\n"
            ),
            content_type="text/csv",
        )
        await rec.call("List segments", "viewer", "GET", "/api/v1/segments")
        note = message(
            subject="A note from Jane",
            body="We have missed you.\r\n\r\nThanks,\r\nJane",
            X_Campaign_ID="founder-note",
        )
        await gw.send("jane@shop.test", [f"friend{i}@example.org" for i in range(150)], note)
        founder = await eventually(lambda: gw.spool.find_campaign("127.0.0.0/8", "founder-note"))
        await rec.call(
            "A founder-signed note to 150 people waits for her sign-off",
            "viewer",
            "GET",
            f"/api/v1/campaigns/{founder.id}",
        )
        await rec.call(
            "Only a token bound to that identity (or an admin, on its behalf) signs off: 403",
            "alice",
            "POST",
            f"/api/v1/campaigns/{founder.id}/signoffs",
            {"identity": "ceo", "reason": "looks like Jane"},
        )
        await rec.call(
            "The founder signs off with her own token; the campaign is released",
            "jane",
            "POST",
            f"/api/v1/campaigns/{founder.id}/signoffs",
            {"reason": "I wrote it; send it"},
        )
        await rec.call(
            "Reload the policy files (SIGHUP does the same)",
            "alice",
            "POST",
            "/api/v1/policies/reload",
            {"reason": "merged the Q3 rules"},
        )
        (folder / "site.yaml").write_text(
            "version: 1\nrules:\n  - {id: ceiling, kind: absolute_ceiling, max_recipients: -1}\n"
        )
        await rec.call(
            "An invalid policy set is refused and the old one stays in force: 422",
            "alice",
            "POST",
            "/api/v1/policies/reload",
            {"reason": "typo in site.yaml"},
        )
        draft = (
            "From: Shop <news@shop.test>\nTo: reader@example.org\n"
            "Subject: Hi {{FirstName}}, our survey\n\nTell us how we did.\n"
        )
        await rec.call(
            "Preflight a draft before the send: the findings, nothing stored or sent",
            "platform",
            "POST",
            "/api/v1/preflight",
            {"message": draft, "size": 200, "category": "survey"},
        )
        await rec.call("The audit log, newest first", "viewer", "GET", "/api/v1/audit?limit=4")

    fresh = "\n".join(rec.parts).replace(f"{folder}/", "policies/")  # not the test's tmp path
    refresh_or_compare(DOC, fresh)


async def _relayed(gw, path: str, count: int) -> bool:
    _, campaign = await gw.api().get(path)
    return campaign["counters"]["relayed"] == count
