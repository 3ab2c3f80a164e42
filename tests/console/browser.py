"""Driving the console in Debian's Chromium with Playwright, for tests/console.

The browser is /usr/bin/chromium (the `chromium` package `make test` installs), never one
Playwright downloads. `signed_in` opens a browser context on a running gateway and signs
in through the form as a person would; `Requests` records every request a page makes;
`Watch` is a local web server that records every request it gets (what a hostile
message would phone home to); `axe_violations` runs axe-core (the copy bundled in the
axe-playwright-python package) in the page and returns its serious and critical violations.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from importlib import resources
from urllib.parse import urlsplit

from aiohttp import web
from playwright.async_api import Browser, Page, Request

from gateway.ops.auth import token_hash
from gateway.ops.console.sessions import COOKIE
from tests.harness import TOKENS, Running

CHROMIUM = "/usr/bin/chromium"
# As root, Chromium's own sandbox cannot start; the page's sandboxing (iframe sandbox,
# CSP) is Blink's and stays on.
LAUNCH_ARGS = ["--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu"]
LAPTOP = {"width": 1280, "height": 800}
PHONE = {"width": 390, "height": 844}
AXE = (resources.files("axe_playwright_python") / "axe.min.js").read_text(encoding="utf-8")


async def sign_in(page: Page, who: str) -> None:
    """Sign in through the console's form with one of the test tokens."""
    await page.goto("/console/")
    await page.get_by_label("API token").fill(TOKENS[who][0])
    await page.get_by_role("button", name="Sign in").click()
    await page.get_by_role("button", name="Sign out").wait_for()


@contextlib.asynccontextmanager
async def signed_in(
    browser: Browser,
    gw: Running,
    who: str,
    viewport: dict[str, int] = LAPTOP,
    *,
    through_the_form: bool = False,
) -> AsyncIterator[Page]:
    """A page of a fresh browser context, signed in to the gateway's console as `who`.

    Unless `through_the_form`, the session is opened in the gateway's own store and its
    cookie handed to the browser, as the form would (the tests of signing in use the form;
    the others save its two page loads).
    """
    context = await browser.new_context(base_url=gw.http_url, viewport=viewport)
    try:
        page = await context.new_page()
        if through_the_form:
            await sign_in(page, who)
        else:
            sessions = gw.gateway.console.sessions
            cookie, _ = sessions.start(token_hash(TOKENS[who][0]), who)
            await context.add_cookies(
                [{"name": COOKIE, "value": cookie, "url": gw.http_url + "/console/"}]
            )
        yield page
    finally:
        await context.close()


class Requests:
    """Every request a page (and its frames) made, in order."""

    def __init__(self, page: Page) -> None:
        self.urls: list[str] = []
        page.on("request", self._seen)

    def _seen(self, request: Request) -> None:
        self.urls.append(request.url)

    def leaving(self, allowed: str) -> list[str]:
        """The requests for anything but `allowed` (scheme://host:port) and inline data."""
        return [
            url
            for url in self.urls
            if urlsplit(url).scheme not in {"data", "about"}
            and f"{urlsplit(url).scheme}://{urlsplit(url).netloc}" != allowed
        ]


async def axe_violations(page: Page) -> list[dict]:
    """Run axe-core in the page; return its serious and critical violations.

    Evaluated through the DevTools protocol, which the page's `script-src 'self'` does
    not govern: the console's policy stays as it is served.
    """
    await page.evaluate(AXE)
    result = await page.evaluate("axe.run(document, {resultTypes: ['violations']})")
    return [
        {"id": v["id"], "impact": v["impact"], "nodes": [n["html"] for n in v["nodes"]][:3]}
        for v in result["violations"]
        if v["impact"] in {"serious", "critical"}
    ]


@dataclass
class Watch:
    """A web server on 127.0.0.1 that answers everything and records each path asked for."""

    hits: list[str] = field(default_factory=list)
    url: str = ""


@contextlib.asynccontextmanager
async def watch_server() -> AsyncIterator[Watch]:
    """Run a `Watch` for the duration of the block."""
    watch = Watch()

    async def record(request: web.Request) -> web.Response:
        watch.hits.append(request.path_qs)
        return web.Response(text="seen")

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", record)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    watch.url = f"http://{host}:{port}"
    try:
        yield watch
    finally:
        await runner.cleanup()
