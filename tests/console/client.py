"""A plain HTTP client of the console for tests that need no browser: headers, cookies,
sessions, refusals. It keeps cookies as a browser would (for 127.0.0.1 too) and reads
the CSRF value out of the page it was given."""

from __future__ import annotations

import re
from typing import Any, Self

import aiohttp

from tests.harness import TOKENS

_CSRF = re.compile(r'name="csrf" value="([^"]+)"')


class ConsoleClient:
    """One browser-like visitor: `async with ConsoleClient(url) as c: await c.sign_in(...)`."""

    def __init__(self, base: str, headers: dict[str, str] | None = None) -> None:
        self.base = base
        self.http = aiohttp.ClientSession(
            cookie_jar=aiohttp.CookieJar(unsafe=True), headers=headers or {}
        )
        self.csrf = ""

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.http.close()

    async def get(self, path: str, **kwargs: Any) -> tuple[aiohttp.ClientResponse, str]:
        async with self.http.get(self.base + path, allow_redirects=False, **kwargs) as r:
            text = await r.text()
        found = _CSRF.search(text)
        if found:
            self.csrf = found.group(1)
        return r, text

    async def post(self, path: str, form: dict[str, str], **kwargs: Any):
        async with self.http.post(
            self.base + path, data=form, allow_redirects=False, **kwargs
        ) as r:
            return r, await r.text()

    async def sign_in(self, who: str | None = None, secret: str | None = None, **kwargs: Any):
        """Fill in the sign-in form; return the answer to its POST."""
        await self.get("/console/signin")
        token = secret if secret is not None else TOKENS[who or "alice"][0]
        return await self.post(
            "/console/signin", {"csrf": self.csrf, "token": token, "next": ""}, **kwargs
        )
