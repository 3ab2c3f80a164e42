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
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

import structlog
from aiohttp import web

from gateway.failures import FailedAttempts
from gateway.model import AuditEntry, Role
from gateway.ops.problems import Problem
from gateway.ops.throttle import Audit, ClientAddress, RefusalBudget
from gateway.ops.views import shown, timestamp
from gateway.settings import OpsSettings, TokenSettings
from gateway.spool.base import Access

log = structlog.get_logger(__name__)
TOKEN_PREFIX = "sb_"  # noqa: S105 - a visible prefix, not a secret

# What each kind of call needs; admin may do everything.
PERMISSIONS: dict[str, frozenset[Role]] = {
    "read": frozenset({Role.VIEWER, Role.OPERATOR, Role.ADMIN}),
    "declare": frozenset({Role.SUBMITTER, Role.OPERATOR, Role.ADMIN}),
    "operate": frozenset({Role.OPERATOR, Role.ADMIN}),
    "preflight": frozenset(Role),  # a platform's CI (submitter) and every reviewer
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
        if scheme.lower() != "bearer":
            return None
        return await self.of_token(secret)

    async def of_token(self, secret: str) -> Principal | None:
        """Return the principal of a token as typed.

        A bearer header's, a sign-in form's, or an HTTP send API key (these are tokens).
        """
        if not secret.strip() or not secret.isascii():  # tokens are ASCII: others cannot match
            return None
        return await self.by_hash(token_hash(secret.strip()))

    async def by_hash(self, digest: str) -> Principal | None:
        """Return the live principal of a token's SHA-256 (a console session keeps only that)."""
        # Compared in constant time, all of them: which configured token matched, or how
        # much of a hash did, must not show in the answer's timing.
        matches = [p for known, p in self._configured.items() if hmac.compare_digest(known, digest)]
        if matches:
            return matches[0]
        # A lookup by SHA-256 needs no constant-time compare: the database compares
        # digests, and timing can leak at most a prefix of the digest of a guess, which
        # tells nothing about any token (finding a preimage of a digest is infeasible).
        token = await self._spool.token_by_hash(digest)
        return None if token is None else Principal(token.name, token.roles, token.identity)


class Gate:
    """Who may call what, and the audit log of every mutating call, refused ones included.

    Failed token checks are limited per client address (`FailedAttempts`: 429 past the
    limit, before any lookup), and so are the rows refused calls add to the audit log
    (`RefusalBudget`), so that nobody without a token can flood either.
    """

    def __init__(
        self,
        auth: Authenticator,
        spool: Access,
        clock: Callable[[], float] = time.time,
        *,
        limits: OpsSettings | None = None,
    ) -> None:
        limits = limits or OpsSettings()
        self._auth = auth
        self._spool = spool
        self._clock = clock
        self._failures = FailedAttempts(limits.auth_max_failures, limits.auth_failure_window, clock)
        self._refusals = RefusalBudget(limits.audit_refusals_per_minute, 60.0, clock)
        self._client = ClientAddress.of(limits.trusted_proxies)

    async def caller(
        self, request: web.Request, permission: str, action: str, target: str
    ) -> Principal:
        """Authenticate the bearer token and authorise; refusals of mutating calls are audited."""
        return await self._admit(
            request, lambda: self._auth.principal(request), permission, action, target
        )

    async def signing_in(
        self, request: web.Request, token: str, permission: str, action: str, target: str
    ) -> Principal:
        """Authenticate a token typed into the console's sign-in form, as `caller` would.

        Failed tries count against the client address like failed bearer tokens.
        """
        return await self._admit(
            request, lambda: self._auth.of_token(token), permission, action, target
        )

    async def known(self, digest: str) -> Principal | None:
        """Return the live principal of a token's SHA-256: a revoked token's is gone at once."""
        return await self._auth.by_hash(digest)

    async def allow(
        self, request: web.Request, principal: Principal, permission: str, action: str, target: str
    ) -> Principal:
        """Authorise an authenticated principal (a console session's), auditing a refusal."""
        if principal.may(permission):
            return principal
        problem = _forbidden(principal, action)
        if request.method != "GET":
            await self._audit_refusal(self.client(request), principal.name, action, target, problem)
        raise problem

    def client(self, request: web.Request) -> str:
        """Return the client's address: the peer, or what trusted proxies say it is."""
        return self._client(request.remote, request.headers.get("X-Forwarded-For"))

    def trusts(self, request: web.Request) -> bool:
        """Tell whether the request's peer is one of `ops.trusted_proxies`."""
        return request.remote is not None and self._client.trusts(request.remote)

    async def _admit(
        self,
        request: web.Request,
        lookup: Callable[[], Awaitable[Principal | None]],
        permission: str,
        action: str,
        target: str,
    ) -> Principal:
        """Authenticate with `lookup` and authorise; refusals of mutating calls are audited."""
        client = self.client(request)
        wait = self._failures.retry_after(client)
        if wait is None:
            checked = await self._check(lookup, permission, action, client)
            if isinstance(checked, Principal):
                return checked
            actor, problem = checked
        else:
            actor, problem = (
                "anonymous",
                Problem(
                    429,
                    f"too many failed token checks from {client}; try again in {wait} s",
                    slug="too-many-failures",
                    headers={"Retry-After": str(wait)},
                ),
            )
        if request.method != "GET":  # only mutating calls are audited, refused ones too
            await self._audit_refusal(client, actor, action, target, problem)
        raise problem

    async def _check(
        self,
        lookup: Callable[[], Awaitable[Principal | None]],
        permission: str,
        action: str,
        client: str,
    ) -> Principal | tuple[str, Problem]:
        """Return the authorised caller, or who was refused and the problem to raise."""
        principal = await lookup()
        if principal is not None and principal.may(permission):
            return principal
        if principal is None:
            self._failures.failed(client)
            locked_for = self._failures.retry_after(client)
            if locked_for is not None:  # this failure used up the address's budget
                log.warning("api_client_locked_out", client=client, seconds=locked_for)
            return "anonymous", Problem(
                401,
                "a valid bearer token is required",
                slug="unauthenticated",
                headers={"WWW-Authenticate": 'Bearer realm="sendbrake"'},
            )
        return principal.name, _forbidden(principal, action)

    async def _audit_refusal(
        self, client: str, actor: str, action: str, target: str, problem: Problem
    ) -> None:
        """Audit a refused call within the address's budget; past it, one summary row."""
        decision, left_out = self._refusals.decide(client)
        if decision is Audit.SKIP:
            return
        details: dict[str, Any] = {"client": client}
        if left_out:
            details["unaudited_before"] = left_out
        if decision is Audit.SUMMARY:
            until = timestamp(self._refusals.until(client))
            details["summary"] = (
                f"more refused calls from {client} until {until} are counted, not audited"
                " one by one; their number is on this address's next row"
            )
            log.warning("audit_refusals_throttled", client=client, until=until)
        await self.refuse(actor, action, target, "", problem, **details)

    async def refuse(
        self, actor: str, action: str, target: str, reason: str, problem: Problem, **details: Any
    ) -> Problem:
        """Audit a refused call with the problem's status; return the problem to raise."""
        await self.audit(actor, action, target, reason, "refused", status=problem.status, **details)
        return problem

    def entry(
        self, actor: str, action: str, target: str, reason: str, outcome: str, **details: Any
    ) -> AuditEntry:
        """Describe one call for the audit log; a change's entry goes in with the change.

        The target comes from the request's path, refused calls included: it is stored
        escaped and bounded (`views.shown`), as a reason is checked before it gets here.
        """
        return AuditEntry(self._clock(), actor, action, shown(target), reason, outcome, details)

    async def audit(
        self, actor: str, action: str, target: str, reason: str, outcome: str, **details: Any
    ) -> None:
        """Append one entry to the audit log, for a call that changed nothing."""
        await self._spool.append_audit(
            self.entry(actor, action, target, reason, outcome, **details)
        )


def _forbidden(principal: Principal, action: str) -> Problem:
    """Return the 403 of a principal whose roles do not allow `action`."""
    roles = ", ".join(sorted(principal.roles))
    detail = f"token {principal.name!r} (roles: {roles}) may not {action}"
    return Problem(403, detail, slug="forbidden")
