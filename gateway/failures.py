"""Failed attempts per client address over a sliding window: SMTP AUTH and API tokens.

Past `limit` failures within `window` an address must wait until its oldest counted
failure leaves the window. Memory is bounded by the addresses active within one window.
"""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

PRUNE_ABOVE = 4096  # tracked addresses before expired ones are swept


@dataclass
class FailedAttempts:
    """Failed attempts (a login, a token check) per client address over a sliding window."""

    limit: int
    window: float
    clock: Callable[[], float] = time.monotonic
    _failures: dict[str, deque[float]] = field(default_factory=dict)

    def retry_after(self, client: str) -> int | None:
        """Seconds until `client` may try again, or None when it may now."""
        failures = self._failures.get(client)
        if failures is None:
            return None
        now = self.clock()
        while failures and failures[0] <= now - self.window:
            failures.popleft()
        if not failures:
            del self._failures[client]
            return None
        if len(failures) < self.limit:
            return None
        # The client may try once the failure that filled its budget leaves the window.
        return max(1, math.ceil(failures[-self.limit] + self.window - now))

    def failed(self, client: str) -> None:
        """Count one failed attempt of `client`."""
        if len(self._failures) > PRUNE_ABOVE:
            for address in list(self._failures):
                self.retry_after(address)  # drops addresses whose failures all expired
        self._failures.setdefault(client, deque()).append(self.clock())

    def succeeded(self, client: str) -> None:
        """Forget `client`'s failures: it knows the secret."""
        self._failures.pop(client, None)
