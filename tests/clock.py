"""A clock tests move by hand, for the windows the relay reads from its injected clock.

Retry delays, the maximum age and lease expiry are compared with `clock()`, so a test
that holds the clock still and then `advance`s it past a window proves the window
without waiting for it. What runs on the event loop's own time (socket timeouts, the
lease renewer's period, the idle poll) is untouched.
"""

from __future__ import annotations

import time


class ManualClock:
    """Stands still until `advance`d; starts at the wall time (or `start`) when built."""

    def __init__(self, start: float | None = None) -> None:
        self.now = time.time() if start is None else start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> float:
        """Move the clock forward by `seconds`; return the new time."""
        self.now += seconds
        return self.now
