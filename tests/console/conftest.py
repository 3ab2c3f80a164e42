"""One Chromium for each console test module (a context per test), on the module's loop.

The upstream fixture runs on that loop too: a module here that uses it marks its tests
`pytest.mark.asyncio(loop_scope="module")`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest_asyncio
from playwright.async_api import Browser, async_playwright

from tests.console.browser import CHROMIUM, LAUNCH_ARGS
from tests.fakes.upstream import CapturingUpstream


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def browser() -> AsyncIterator[Browser]:
    async with async_playwright() as playwright:
        chromium = await playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=LAUNCH_ARGS
        )
        yield chromium
        await chromium.close()


@pytest_asyncio.fixture(loop_scope="module")
async def upstream() -> AsyncIterator[CapturingUpstream]:
    """The capturing upstream, on the loop the module's tests run on."""
    up = CapturingUpstream()
    await up.start()
    yield up
    await up.stop()
