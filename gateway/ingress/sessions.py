"""How many SMTP sessions are open, in all and per client address, against the limits.

One counter for the whole listener, touched only on the event loop (no lock). Clients in
the allowed networks (the platforms) have no per-client limit, as Postfix exempts
`mynetworks`; the total holds for everyone.
"""

from __future__ import annotations

from typing import Protocol

from gateway.settings import SmtpSettings

# What a refused session is told, by the reason its metric counts it under.
REFUSALS = {
    "max_sessions": "Too many concurrent sessions",
    "max_sessions_per_client": "Too many concurrent sessions from your address",
}


class SessionCounter(Protocol):
    """What counts sessions in and out: `Sessions`, or an ingress process's proxy."""

    def open(self, host: str, *, exempt: bool) -> str | None:
        """Count a new session in, or say why it may not (a `REFUSALS` key)."""
        ...

    def close(self, host: str) -> None:
        """Count a session out."""
        ...


class Sessions:
    """Counts open SMTP sessions, in all and per client address, against the limits."""

    def __init__(self, settings: SmtpSettings) -> None:
        self._limit = settings.max_sessions
        self._per_client = settings.max_sessions_per_client
        self._open = 0
        self._by_client: dict[str, int] = {}

    def open(self, host: str, *, exempt: bool) -> str | None:
        """Count a new session from `host` in, or say why it may not (a `REFUSALS` key).

        A refused session is not counted. `exempt` clients (in the allowed networks, the
        platforms) have no per-client limit.
        """
        if self._open >= self._limit:
            return "max_sessions"
        count = self._by_client.get(host, 0)
        if not exempt and count >= self._per_client:
            return "max_sessions_per_client"
        self._open += 1
        self._by_client[host] = count + 1
        return None

    def close(self, host: str) -> None:
        """Count a session of `host` out."""
        self._open -= 1
        left = self._by_client.pop(host, 1) - 1
        if left:
            self._by_client[host] = left
