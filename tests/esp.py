"""Talking to a test gateway's HTTP send API: SendGrid's own SDK, and raw requests.

`sdk` returns the official `sendgrid` client pointed at the gateway (it appends
/v3/mail/send to its host); its calls are blocking (urllib), so tests run them with
`asyncio.to_thread`. `post` sends any body, even one the SDK would never build, and
returns (status, headers, parsed JSON or text). `body` builds a small valid request;
`personalised` a campaign as a platform builds it with the SDK.
"""

from __future__ import annotations

import json
from typing import Any

import aiohttp
from sendgrid import SendGridAPIClient
from sendgrid.helpers.mail import CustomArg, Mail, Substitution, To

from tests.harness import TOKENS, Running


def sdk(gw: Running, who: str = "platform") -> SendGridAPIClient:
    """The official client, authenticated with one of TOKENS as its API key."""
    return SendGridAPIClient(api_key=TOKENS[who][0], host=gw.esp_url)


async def post(
    gw: Running,
    body: Any,
    *,
    key: str | None = TOKENS["platform"][0],
    raw: bytes | None = None,
    headers: dict[str, str] | None = None,
) -> tuple[int, dict[str, str], Any]:
    """POST /v3/mail/send with a JSON body (or `raw` bytes); return status, headers, answer."""
    sent = {"Content-Type": "application/json", **(headers or {})}
    if key is not None:
        sent["Authorization"] = f"Bearer {key}"
    data = raw if raw is not None else json.dumps(body).encode()
    async with (
        aiohttp.ClientSession() as http,
        http.post(gw.esp_url + "/v3/mail/send", data=data, headers=sent) as response,
    ):
        text = await response.text()
        try:
            answer = json.loads(text) if text else None
        except ValueError:
            answer = text
        return response.status, dict(response.headers), answer


def body(recipients: int = 1, **extra: Any) -> dict[str, Any]:
    """A valid request: one personalization per recipient, a text and an HTML body."""
    return {
        "personalizations": [
            {"to": [{"email": f"r{i}@example.org", "name": f"Reader {i}"}]}
            for i in range(recipients)
        ],
        "from": {"email": "news@shop.test", "name": "Shop"},
        "subject": "Our spring collection",
        "content": [
            {"type": "text/plain", "value": "The spring collection is in the shop now."},
            {"type": "text/html", "value": "<p>The spring collection is in the shop now.</p>"},
        ],
        **extra,
    }


def personalised(count: int, *, campaign: str, declared: int | None = None, leak: int = -1) -> Mail:
    """A campaign as a platform builds it with the SDK: one personalization per reader."""
    readers = [
        To(
            f"reader{i}@example.org",
            f"Name{i}",
            substitutions=[
                Substitution("-first_name-", "{{first_name}}" if i == leak else f"Name{i}")
            ],
        )
        for i in range(count)
    ]
    mail = Mail(
        from_email=("news@shop.test", "Shop"),
        to_emails=readers,
        subject="A spring note for -first_name-",
        plain_text_content="Dear -first_name-, the spring collection is in the shop now.",
        html_content="<p>Dear -first_name-, the spring collection is in the shop now.</p>",
        is_multiple=True,
    )
    mail.add_custom_arg(CustomArg("campaign_id", campaign))
    if declared is not None:
        mail.add_custom_arg(CustomArg("declared_size", str(declared)))
    return mail
