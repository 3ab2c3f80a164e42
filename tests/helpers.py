"""Polling with a deadline: the only way tests wait for something to happen.

A deadline only bounds a failure (a condition met returns at once), so deadlines are
generous: `make test` runs its two passes side by side on a machine of two CPUs, where a
step that takes one second alone may take several.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

T = TypeVar("T")


async def eventually(
    probe: Callable[[], Awaitable[T]] | Callable[[], T],
    *,
    timeout: float = 30.0,
    interval: float = 0.01,
    message: str = "condition not met",
) -> T:
    """Call `probe` until it returns something truthy; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        result = probe()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return result  # type: ignore[return-value]
        if time.monotonic() > deadline:
            raise AssertionError(f"{message} within {timeout}s (last: {result!r})")
        await asyncio.sleep(interval)
