"""A fake of SendGrid's v3 mail send API on a real socket (aiohttp), told how to misbehave.

It checks the bearer key (others get 401 in SendGrid's error shape), checks a request as
SendGrid does where the gateway could get it wrong (1 to 1,000 personalizations, a `from`,
a subject or template, non-empty content with text/plain first, no reserved header, string
custom args), records every request, and answers 202 with an `X-Message-Id`. Knobs:
- `fail_next(n, status, message)`: answer the next n requests with `status` (500, 400, ...);
- `throttle_next(n, retry_after)`: answer the next n requests 429 with that `Retry-After`;
- `hang`: read requests and never answer (until `stop`).

`requests` holds every request (body, headers, monotonic time, the status answered);
`delivered` the accepted ones, each with the X-Message-Id it was given.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import time
from dataclasses import dataclass
from typing import Any

from aiohttp import web

KEY = "SG.fake-key-for-tests.0123456789abcdefghijklmnop"  # SendGrid's key shape (tests/leaks)
RESERVED = {
    "x-sg-id",
    "x-sg-eid",
    "received",
    "dkim-signature",
    "content-type",
    "content-transfer-encoding",
    "to",
    "from",
    "subject",
    "reply-to",
    "cc",
    "bcc",
}


@dataclass
class Request:
    body: Any
    headers: dict[str, str]
    at: float  # time.monotonic() when it arrived
    status: int = 0
    message_id: str = ""
    answer: str = ""  # the answer's headers that matter and its body, as an HTTP excerpt

    @property
    def recipients(self) -> list[str]:
        return [to["email"] for p in self.body["personalizations"] for to in p["to"]]


class FakeSendGrid:
    """Start with `await provider.start()`; `provider.url` is the base URL to configure."""

    def __init__(self, key: str = KEY) -> None:
        self.key = key
        self.requests: list[Request] = []
        self.hang = False
        self.port = 0
        self.changed = asyncio.Event()
        self._failures: list[tuple[int, dict[str, str], str]] = []
        self._ids = itertools.count(1)
        self._release = asyncio.Event()
        self._runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def delivered(self) -> list[Request]:
        return [r for r in self.requests if r.status == 202]

    @property
    def recipients(self) -> list[str]:
        """Every recipient of an accepted request, in order (a duplicate shows twice)."""
        return [rcpt for r in self.delivered for rcpt in r.recipients]

    def fail_next(self, count: int, status: int = 500, message: str = "Internal error") -> None:
        self._failures = [(status, {}, message)] * count

    def throttle_next(self, count: int, retry_after: str = "1") -> None:
        headers = {"Retry-After": retry_after}
        self._failures = [(429, headers, "too many requests")] * count

    async def start(self) -> None:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_post("/v3/mail/send", self._send)
        self._runner = web.AppRunner(app, shutdown_timeout=1.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]

    async def stop(self) -> None:
        self._release.set()
        if self._runner is not None:
            await self._runner.cleanup()

    async def _send(self, request: web.Request) -> web.Response:
        raw = await request.read()
        try:
            body = json.loads(raw)
        except ValueError:
            body = None
        seen = Request(body, dict(request.headers), time.monotonic())
        self.requests.append(seen)
        try:
            response = await self._answer(request, seen)
        finally:
            self.changed.set()
        seen.status = response.status
        shown = [f"HTTP/1.1 {response.status}"] + [
            f"{name}: {response.headers[name]}"
            for name in ("X-Message-Id", "Retry-After", "Content-Type")
            if name in response.headers
        ]
        seen.answer = "\n".join(shown) + (f"\n\n{response.text}" if response.text else "")
        return response

    async def _answer(self, request: web.Request, seen: Request) -> web.Response:
        if request.headers.get("Authorization") != f"Bearer {self.key}":
            return _errors(401, [(None, "The provided authorization grant is invalid")])
        if self.hang:
            await self._release.wait()
            return _errors(503, [(None, "stopped")])
        if self._failures:
            status, headers, message = self._failures.pop(0)
            return _errors(status, [(None, message)], headers)
        if problems := _problems(seen.body):
            return _errors(400, problems)
        seen.message_id = f"fake-{next(self._ids)}"
        return web.Response(status=202, headers={"X-Message-Id": seen.message_id})


def _problems(body: Any) -> list[tuple[str | None, str]]:
    """What SendGrid would refuse in `body` (the checks the gateway could get wrong)."""
    if not isinstance(body, dict):
        return [(None, "Bad Request")]
    found: list[tuple[str | None, str]] = []
    people = body.get("personalizations") or []
    if not 1 <= len(people) <= 1000:
        found.append(("personalizations", "between 1 and 1000 personalizations"))
    if not (body.get("from") or {}).get("email"):
        found.append(("from.email", "The from email is required"))
    template = body.get("template_id")
    if not body.get("subject") and not template:
        found.append(("subject", "The subject is required"))
    content = body.get("content") or []
    if not content and not template:
        found.append(("content", "Unless a template is used, content is required"))
    if any(not c.get("value") for c in content):
        found.append(("content.value", "The content value must be at least one character"))
    types = [c.get("type") for c in content]
    if "text/html" in types and "text/plain" in types[types.index("text/html") :]:
        found.append(("content", "text/plain must come first"))
    return found + _more_problems(body, people)


def _more_problems(body: dict[str, Any], people: list[Any]) -> list[tuple[str | None, str]]:
    found: list[tuple[str | None, str]] = [
        (f"headers.{name}", "This header is reserved")
        for name in body.get("headers") or {}
        if name.lower() in RESERVED
    ]
    for n, person in enumerate(people):
        args = person.get("custom_args") or {}
        if any(not isinstance(v, str) for v in args.values()):
            found.append((f"personalizations.{n}.custom_args", "values must be strings"))
    for n, attachment in enumerate(body.get("attachments") or []):
        if attachment.get("disposition") == "inline" and not attachment.get("content_id"):
            found.append((f"attachments.{n}.content_id", "required for inline"))
    return found


def _errors(
    status: int, errors: list[tuple[str | None, str]], headers: dict[str, str] | None = None
) -> web.Response:
    payload = {"errors": [{"message": m, "field": f, "help": None} for f, m in errors]}
    return web.json_response(payload, status=status, headers=headers)
