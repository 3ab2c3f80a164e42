"""Bearer tokens, roles, who may do what, and the audit of every mutating call.

Tokens are random strings shown once; only their SHA-256 is stored (in the config file or
in the spool). A fast hash is enough because tokens carry 256 bits of randomness, unlike
passwords. Tokens added to the spool while the gateway runs work at once: each request
looks them up.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from gateway.model import AuditEntry, Role
from gateway.ops.problems import Problem
from gateway.ops.views import shown
from gateway.settings import TokenSettings
from gateway.spool.base import Access

TOKEN_PREFIX = "sb_"  # noqa: S105 - a visible prefix, not a secret

# What each kind of call needs; admin may do everything.
PERMISSIONS: dict[str, frozenset[Role]] = {
    "read": frozenset({Role.VIEWER, Role.OPERATOR, Role.ADMIN}),
    "declare": frozenset({Role.SUBMITTER, Role.OPERATOR, Role.ADMIN}),
    "operate": frozenset({Role.OPERATOR, Role.ADMIN}),
    # Any token may try; the handler checks the identity it is bound to (admins: any).
    "sign off": frozenset(Role),
}


def new_token() -> str:
    """Return a new random API token."""
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def token_hash(token: str) -> str:
    """Return the hex SHA-256 under which a token is stored."""
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass(frozen=True)
class Principal:
    """Who is calling: the token's name, roles and bound identity."""

    name: str
    roles: frozenset[Role]
    identity: str | None = None

    def may(self, permission: str) -> bool:
        """Tell whether this caller holds a role that grants `permission`."""
        return bool(self.roles & PERMISSIONS[permission])


class Authenticator:
    """Finds the principal behind a request's bearer token."""

    def __init__(self, spool: Access, configured: Sequence[TokenSettings]) -> None:
        self._spool = spool
        self._configured = {
            t.sha256: Principal(t.name, frozenset(Role(r) for r in t.roles), t.identity)
            for t in configured
        }

    async def principal(self, request: web.Request) -> Principal | None:
        """Return the caller, or None without a valid token."""
        scheme, _, secret = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not secret.strip():
            return None
        if not secret.isascii():  # tokens are ASCII; others cannot even be hashed as sent
            return None
        digest = token_hash(secret.strip())
        for known, principal in self._configured.items():
            if hmac.compare_digest(known, digest):
                return principal
        token = await self._spool.token_by_hash(digest)
        return None if token is None else Principal(token.name, token.roles, token.identity)


class Gate:
    """Who may call what, and the audit log of every mutating call, refused ones included."""

    def __init__(
        self, auth: Authenticator, spool: Access, clock: Callable[[], float] = time.time
    ) -> None:
        self._auth = auth
        self._spool = spool
        self._clock = clock

    async def caller(
        self, request: web.Request, permission: str, action: str, target: str
    ) -> Principal:
        """Authenticate and authorise; refusals of mutating calls are audited."""
        principal = await self._auth.principal(request)
        if principal is not None and principal.may(permission):
            return principal
        if principal is None:
            actor, problem = (
                "anonymous",
                Problem(
                    401,
                    "a valid bearer token is required",
                    slug="unauthenticated",
                    headers={"WWW-Authenticate": 'Bearer realm="sendbrake"'},
                ),
            )
        else:
            roles = ", ".join(sorted(principal.roles))
            detail = f"token {principal.name!r} (roles: {roles}) may not {action}"
            actor, problem = principal.name, Problem(403, detail, slug="forbidden")
        if request.method != "GET":  # only mutating calls are audited, refused ones too
            raise await self.refuse(actor, action, target, "", problem)
        raise problem

    async def refuse(
        self, actor: str, action: str, target: str, reason: str, problem: Problem, **details: Any
    ) -> Problem:
        """Audit a refused call with the problem's status; return the problem to raise."""
        await self.audit(actor, action, target, reason, "refused", status=problem.status, **details)
        return problem

    async def audit(
        self, actor: str, action: str, target: str, reason: str, outcome: str, **details: Any
    ) -> None:
        """Append one entry to the audit log.

        The target comes from the request's path, refused calls included: it is stored
        escaped and bounded (`views.shown`), as a reason is checked before it gets here.
        """
        entry = AuditEntry(self._clock(), actor, action, shown(target), reason, outcome, details)
        await self._spool.append_audit(entry)
