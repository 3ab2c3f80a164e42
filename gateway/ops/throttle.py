"""Per-client-address limits of the ops API: failed token checks, and refusals audited.

The client address is the TCP peer, or, when the peer is a trusted proxy, the nearest
address of `X-Forwarded-For` that is not one (`ClientAddress`): each proxy appends the
address it saw, so only the hops after the last untrusted one can be believed.

Failed bearer-token checks are counted per client address by
`gateway.failures.FailedAttempts`; past its limit the address gets `429 Too Many
Requests` with `Retry-After`, before any token is looked up. `RefusalBudget`
lets at most `per_window` refused calls of one address into the audit log per window,
then one summarising row; the number left out is recorded on that address's first row
of a later window. Both are plain, clocked objects; memory is bounded by the addresses
active within one window.
"""

from __future__ import annotations

import enum
import ipaddress
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from gateway.failures import PRUNE_ABOVE

Net = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True)
class ClientAddress:
    """Who the client is: the peer, or what trusted proxies say it is."""

    trusted: tuple[Net, ...] = ()

    @classmethod
    def of(cls, networks: Sequence[str]) -> ClientAddress:
        """Build from the networks of `ops.trusted_proxies`."""
        return cls(tuple(ipaddress.ip_network(n, strict=False) for n in networks))

    def trusts(self, address: str) -> bool:
        """Tell whether `address` is one of the trusted proxies."""
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            return False
        return any(ip in network for network in self.trusted)

    def __call__(self, peer: str | None, forwarded_for: str | None) -> str:
        """Return the client's address from the peer and its X-Forwarded-For header."""
        client = peer or "unknown"
        if not self.trusted or not self.trusts(client) or not forwarded_for:
            return client
        for hop in reversed([h.strip() for h in forwarded_for.split(",")]):
            try:
                address = str(ipaddress.ip_address(hop))
            except ValueError:
                return client  # a hop we cannot read: believe nothing before it
            if not self.trusts(address):
                return address
            client = address
        return client


class Audit(enum.Enum):
    """What to do with one refused call."""

    ROW = "row"  # audit it
    SUMMARY = "summary"  # audit one row saying later ones are left out for a while
    SKIP = "skip"  # counted only


@dataclass
class _Window:
    start: float
    refused: int = 0
    skipped: int = 0
    carried: int = 0  # left out in earlier windows, not yet recorded


@dataclass
class RefusalBudget:
    """At most `per_window` audited refusals per client address and window."""

    per_window: int
    window: float = 60.0
    clock: Callable[[], float] = time.monotonic
    _windows: dict[str, _Window] = field(default_factory=dict)

    def decide(self, client: str) -> tuple[Audit, int]:
        """Return how to audit `client`'s refusal now, and how many earlier ones were left out.

        The count is reported once, on the first row after the window that left them out.
        """
        now = self.clock()
        current = self._windows.get(client)
        if current is None or now - current.start >= self.window:
            if len(self._windows) > PRUNE_ABOVE:
                self._prune(now)
            carried = current.skipped + current.carried if current else 0
            current = self._windows[client] = _Window(now, carried=carried)
        current.refused += 1
        if current.refused > self.per_window + 1:
            current.skipped += 1
            return Audit.SKIP, 0
        carried, current.carried = current.carried, 0
        return (Audit.ROW if current.refused <= self.per_window else Audit.SUMMARY), carried

    def until(self, client: str) -> float:
        """When `client`'s current window ends (clock time)."""
        current = self._windows.get(client)
        return (current.start if current else self.clock()) + self.window

    def _prune(self, now: float) -> None:
        # An expired window with uncounted refusals is kept: its count is still owed.
        for address, w in list(self._windows.items()):
            if now - w.start >= self.window and not (w.skipped or w.carried):
                del self._windows[address]
