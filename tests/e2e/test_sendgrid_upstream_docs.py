"""docs/http-sending.md's HTTP upstream examples are what a running gateway sent the fake
provider: the v3 request it made for a message (with its attribution args), the answer,
and a throttled call's recipient as the ops API shows it. With SENDBRAKE_UPDATE_DOCS=1
(`make docs`) it rewrites that section; otherwise it fails when they no longer match.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

from sendgrid.helpers.mail import CustomArg, Mail, Substitution, To

from tests.docs import refresh_or_compare
from tests.esp import sdk
from tests.fakes.sendgrid_provider import KEY, FakeSendGrid, Request
from tests.harness import make_settings, run_gateway
from tests.helpers import eventually

DOC = Path(__file__).resolve().parents[2] / "docs" / "http-sending.md"


def exchange(title: str, request: Request) -> str:
    head = "POST /v3/mail/send\nAuthorization: Bearer <upstream.api_key>\nContent-Type: application/json"
    body = json.dumps(request.body, indent=2, ensure_ascii=False)
    return f"### {title}\n\n```http\n{head}\n\n{body}\n```\n\n```http\n{request.answer}\n```\n"


def campaign(key: str, readers: dict[str, str]) -> Mail:
    mail = Mail(
        from_email=("news@shop.test", "Shop"),
        to_emails=[
            To(email, name, substitutions=[Substitution("-first_name-", name)])
            for email, name in readers.items()
        ],
        subject="-first_name-, the spring collection is here",
        plain_text_content="Dear -first_name-,\n\nour spring collection is in the shop now.\n",
        html_content="<p>Dear -first_name-,</p><p>our spring collection is in the shop now.</p>",
        is_multiple=True,
    )
    mail.add_custom_arg(CustomArg("campaign_id", key))
    mail.add_custom_arg(CustomArg("declared_size", str(len(readers))))
    return mail


async def test_http_upstream_examples_in_the_docs_match_a_live_run(tmp_path):
    provider = FakeSendGrid()
    await provider.start()
    upstream = {"kind": "sendgrid", "base_url": provider.url, "api_key": KEY, "process": "gateway"}
    settings = make_settings(
        tmp_path, esp={"listen": "127.0.0.1:0"}, upstream=upstream, relay={"concurrency": 1}
    )
    parts: list[str] = []
    try:
        async with run_gateway(settings) as gw:
            mail = campaign("spring-2027", {"ada@example.org": "Ada"})
            assert (await asyncio.to_thread(sdk(gw).send, mail)).status_code == 202
            [sent] = await eventually(lambda: provider.delivered)
            parts.append(exchange("The call sendbrake made for ada@example.org's message", sent))
            recipient = await settled(gw, "spring-2027", "relayed")
            parts.append(show("Ada's recipient, as the ops API lists it", recipient))

            provider.throttle_next(1, retry_after="30")
            mail = campaign("autumn-2027", {"grace@example.org": "Grace"})
            assert (await asyncio.to_thread(sdk(gw).send, mail)).status_code == 202
            recipient = await settled(gw, "autumn-2027", "deferred")
            throttled = provider.requests[-1]
            assert throttled.status == 429
            parts.append(f"### The next call, throttled\n\n```http\n{throttled.answer}\n```\n")
            parts.append(show("Grace's recipient waits at least the Retry-After (30 s)", recipient))
            assert recipient["next_attempt_at"] > recipient["updated_at"]
    finally:
        await provider.stop()
    refresh_or_compare(DOC, "\n".join(parts), section="upstream-examples")


async def settled(gw, key: str, state: str) -> dict[str, Any]:
    """The campaign's one recipient once it is in `state`, as the ops API lists it."""

    async def probe() -> dict[str, Any] | None:
        _, page = await gw.api("viewer").get("/api/v1/campaigns")
        found = next(c for c in page["items"] if c["key"] == key)
        _, rows = await gw.api("viewer").get(f"/api/v1/campaigns/{found['id']}/recipients")
        [row] = rows["items"]
        return row if row["state"] == state else None

    return await eventually(probe)


def show(title: str, recipient: dict[str, Any]) -> str:
    text = json.dumps(recipient, indent=2, ensure_ascii=False)
    return f"### {title}\n\n```json\n{text}\n```\n"
