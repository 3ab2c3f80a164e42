"""Console sign-ins: server-side sessions behind an opaque cookie, and their CSRF tokens.

A session is a random cookie value whose SHA-256 keys a record in this process's memory:
the SHA-256 of the API token it was opened with (never the token), the token's name, a
per-session CSRF token, and when it started and was last used. It ends at
`console.session_lifetime` after sign-in, after `console.idle_timeout` unused, on
sign-out, or when the token is revoked (every request looks the token up again). At most
`console.max_sessions` are kept; a new one past that ends the oldest. Sessions live in
the process: a restart signs everyone out, and replicas behind a load balancer need it
to keep a reviewer on one replica (docs/console.md). Must not know about pages.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from aiohttp import web

from gateway.settings import ConsoleSettings

COOKIE = "sb_console"
SIGNIN_COOKIE = "sb_console_signin"  # the sign-in form's CSRF value (double submit)
PATH = "/console"


def _key(cookie: str) -> str:
    """Sessions are kept under the cookie's hash: a memory dump shows no usable cookie."""
    return hashlib.sha256(cookie.encode()).hexdigest()


def same(given: str | None, expected: str) -> bool:
    """Compare a submitted CSRF value with the expected one in constant time."""
    return given is not None and given.isascii() and hmac.compare_digest(given, expected)


@dataclass
class Session:
    """One reviewer signed in: which token (by hash), its CSRF token, when."""

    token_sha256: str
    name: str
    csrf: str
    started: float
    seen: float
    notice: tuple[str, str] | None = None  # (kind, text) shown once on the next page

    def pop_notice(self) -> tuple[str, str] | None:
        """Return the notice for the next page and forget it."""
        notice, self.notice = self.notice, None
        return notice


class SessionStore:
    """The signed-in sessions of this process, bounded and expiring."""

    def __init__(self, settings: ConsoleSettings, clock: Callable[[], float] = time.time) -> None:
        self._settings = settings
        self._clock = clock
        self._sessions: OrderedDict[str, Session] = OrderedDict()  # oldest sign-in first

    def start(self, token_sha256: str, name: str) -> tuple[str, Session]:
        """Open a session; return the cookie value (shown once) and the session."""
        now = self._clock()
        self._prune(now)
        while len(self._sessions) >= self._settings.max_sessions:
            self._sessions.popitem(last=False)
        cookie = secrets.token_urlsafe(32)
        session = Session(token_sha256, name, secrets.token_urlsafe(32), now, now)
        self._sessions[_key(cookie)] = session
        return cookie, session

    def get(self, cookie: str | None) -> Session | None:
        """Return the live session of a cookie value and mark it used, or None."""
        if not cookie or not cookie.isascii():
            return None
        key = _key(cookie)
        session = self._sessions.get(key)
        if session is None:
            return None
        now = self._clock()
        if self._expired(session, now):
            del self._sessions[key]
            return None
        session.seen = now
        return session

    def end(self, cookie: str | None) -> None:
        """End a session (sign-out, revoked token); an unknown cookie changes nothing."""
        if cookie and cookie.isascii():
            self._sessions.pop(_key(cookie), None)

    def __len__(self) -> int:
        return len(self._sessions)

    def _expired(self, session: Session, now: float) -> bool:
        return (
            now - session.started >= self._settings.session_lifetime
            or now - session.seen >= self._settings.idle_timeout
        )

    def _prune(self, now: float) -> None:
        for key in [k for k, s in self._sessions.items() if self._expired(s, now)]:
            del self._sessions[key]


def set_cookie(
    response: web.StreamResponse,
    name: str,
    value: str,
    *,
    secure: bool,
    max_age: float,
    path: str = PATH,
) -> None:
    """Set a console cookie: HttpOnly, SameSite=Strict, Secure when it came over TLS."""
    response.set_cookie(
        name,
        value,
        max_age=int(max_age),
        path=path,
        httponly=True,
        samesite="Strict",
        secure=secure,
    )
