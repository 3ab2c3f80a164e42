"""docs/http-sending.md's examples are real exchanges with a running gateway's send API.

The scenario sends with SendGrid's SDK and with raw requests, and renders each request,
the answer, the message as the upstream received it and the campaign as the ops API shows
it. With SENDBRAKE_UPDATE_DOCS=1 (`make docs`) it rewrites the examples section of
docs/http-sending.md; otherwise it fails when they no longer match (IDs and times aside).
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

from sendgrid.helpers.mail import CustomArg, Mail, Substitution, To

from tests.docs import refresh_or_compare
from tests.esp import post, sdk
from tests.harness import TOKENS, run_gateway
from tests.helpers import eventually

DOC = Path(__file__).resolve().parents[2] / "docs" / "http-sending.md"
KEEP = ("id", "key", "client", "implicit", "state", "declared", "counters")


class Recorder:
    """Sends to the send API and keeps each exchange as Markdown."""

    def __init__(self, gw) -> None:
        self.gw = gw
        self.parts: list[str] = []

    async def send(self, title: str, request: dict[str, Any], key: str | None = "platform"):
        """POST a request (as raw JSON), record it and its answer; return the answer."""
        secret = TOKENS[key][0] if key else "sb_not_a_token"
        status, headers, answer = await post(self.gw, request, key=secret)
        shown = f"<{key}'s API key: a token with role submitter>" if key else "sb_not_a_token"
        self._exchange(title, request, key=shown, status=status, headers=headers, answer=answer)
        return answer

    async def send_with_sdk(self, title: str, mail: Mail) -> None:
        """Send with SendGrid's SDK; record the body it built and the answer."""
        response = await asyncio.to_thread(sdk(self.gw).send, mail)
        headers = dict(response.headers)
        shown = "<platform's API key: a token with role submitter>"
        body = response.body.decode() or None
        self._exchange(
            title, mail.get(), key=shown, status=response.status_code, headers=headers, answer=body
        )

    def _exchange(self, title, request, *, key, status, headers, answer) -> None:
        head = f"POST /v3/mail/send\nAuthorization: Bearer {key}\nContent-Type: application/json"
        text = f"### {title}\n\n```http\n{head}\n\n{json.dumps(request, indent=2)}\n```\n\n"
        answer_head = f"HTTP/1.1 {status}"
        for name in ("X-Message-Id", "Retry-After"):
            if name in headers:
                answer_head += f"\n{name}: {headers[name]}"
        text += f"```http\n{answer_head}\n```\n"
        if answer:
            text += f"\n```json\n{json.dumps(answer, indent=2, ensure_ascii=False)}\n```\n"
        self.parts.append(text)

    def show(self, title: str, text: str, language: str) -> None:
        """Record something the scenario read (a relayed message, a campaign)."""
        self.parts.append(f"### {title}\n\n```{language}\n{text.rstrip()}\n```\n")

    async def campaign(self, title: str, key: str, *, findings: bool = False) -> None:
        """Record the campaign of `key` as `GET /api/v1/campaigns` lists it (an excerpt)."""
        _, page = await self.gw.api("viewer").get("/api/v1/campaigns")
        campaign = next(c for c in page["items"] if c["key"] == key)
        shown = {k: campaign[k] for k in KEEP}
        if findings:
            shown["findings"] = campaign["findings"]
        self.show(title, json.dumps(shown, indent=2, ensure_ascii=False), "json")


def campaign_mail(key: str, readers: dict[str, str]) -> Mail:
    mail = Mail(
        from_email=("news@shop.test", "Shop"),
        to_emails=[
            To(email, name, substitutions=[Substitution("-first_name-", value)])
            for email, (name, value) in readers.items()
        ],
        subject="-first_name-, the spring collection is here",
        plain_text_content="Dear -first_name-,\n\nour spring collection is in the shop now.\n",
        html_content="<p>Dear -first_name-,</p><p>our spring collection is in the shop now.</p>",
        is_multiple=True,
    )
    mail.add_custom_arg(CustomArg("campaign_id", key))
    mail.add_custom_arg(CustomArg("declared_size", str(len(readers))))
    return mail


async def test_http_sending_examples_in_the_docs_match_a_live_run(settings_for, upstream):
    settings = settings_for(upstream.port, esp={"listen": "127.0.0.1:0"})
    async with run_gateway(settings) as gw:
        rec = Recorder(gw)
        readers = {
            "ada@example.org": ("Ada", "Ada"),
            "grace@example.org": ("Grace", "Grace"),
            "alan@example.org": ("Alan", "Alan"),
        }
        await rec.send_with_sdk(
            "A personalised campaign, sent with SendGrid's Python SDK",
            campaign_mail("spring-2027", readers),
        )

        async def relayed() -> bool:
            campaign = await gw.spool.find_campaign("platform", "spring-2027")
            return campaign is not None and campaign.counters.relayed == 3

        await eventually(relayed)  # settled, not only received upstream: the counters show it
        [ada] = [t for t in upstream.transactions if t.rcpt_tos == ["ada@example.org"]]
        rec.show(
            "What the upstream received for ada@example.org",
            ada.content.decode().replace("\r\n", "\n"),
            "email",
        )
        await rec.campaign("The campaign, as the ops API lists it (excerpt)", "spring-2027")

        leaky = dict(readers)
        leaky["grace@example.org"] = ("Grace", "{{first_name}}")  # the platform's bug
        await rec.send_with_sdk(
            "One substitution value that is itself a tag", campaign_mail("autumn-2027", leaky)
        )
        await rec.campaign(
            "Held: the finding names the reader whose data was missing (excerpt)",
            "autumn-2027",
            findings=True,
        )

        await rec.send(
            "A request with wrong fields: every one is named",
            {
                "personalizations": [{"to": [{"email": "ada.example.org"}]}],
                "from": {"email": "news@shop.test"},
                "subject": "Spring",
                "content": [{"type": "text/plain", "value": ""}],
                "mail_settings": {"sandbox_mode": {"enable": True}},
            },
        )
        await rec.send(
            "An unknown API key",
            {
                "personalizations": [{"to": [{"email": "ada@example.org"}]}],
                "from": {"email": "news@shop.test"},
                "subject": "Spring",
                "content": [{"type": "text/plain", "value": "Hello."}],
            },
            key=None,
        )
    refresh_or_compare(DOC, "\n".join(rec.parts))
