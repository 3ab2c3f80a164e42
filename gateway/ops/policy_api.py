"""The policy side of the ops API: identities' sign-offs and reloading the policy files.

`POST /api/v1/campaigns/{id}/signoffs` registers a protected identity's sign-off. A token
bound to that identity signs for itself; an admin may record one on another identity's
behalf, with a reason. Both land in the audit log; refusals too. When the sign-off was all
a held campaign waited for, the spool releases it in the same transaction.

`POST /api/v1/policies/reload` builds a new policy set from the policy folder and swaps it
in; an invalid set keeps the old one and answers 422 with every problem (file:line: key).
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any

import structlog
from aiohttp import web
from pydantic import Field

from gateway.errors import ConfigError, Conflict, PolicyError
from gateway.model import Campaign, CampaignState, Role
from gateway.ops.api import BASE, _Body, _body, _found
from gateway.ops.auth import Gate, Principal
from gateway.ops.problems import Problem
from gateway.policy.loader import PolicySet
from gateway.signoffs import Signoff
from gateway.spool.base import Spool

log = structlog.get_logger(__name__)

Reload = Callable[[str], Awaitable[tuple[PolicySet, PolicySet]]]  # actor -> (before, after)


class SignoffBody(_Body):
    """Body of POST /campaigns/{id}/signoffs."""

    identity: str | None = Field(
        None, min_length=1, description="Identity signing off; default: the token's own."
    )


class PolicyApi:
    """Handlers of sign-offs and policy reloads."""

    def __init__(
        self,
        spool: Spool,
        gate: Gate,
        *,
        policies: Callable[[], PolicySet],
        reload: Reload,
        detail: Callable[[Campaign], Awaitable[dict[str, Any]]],
        clock: Callable[[], float] = time.time,
        wake_relay: Callable[[], None] = lambda: None,
    ) -> None:
        self._spool = spool
        self._gate = gate
        self._policies = policies
        self._reload = reload
        self._detail = detail
        self._clock = clock
        self._wake_relay = wake_relay

    def routes(self) -> list[web.RouteDef]:
        """Return the routes of this part of the API."""
        return [
            web.post(f"{BASE}/campaigns/{{id}}/signoffs", self.signoff),
            web.post(f"{BASE}/policies/reload", self.reload),
        ]

    async def _refuse(
        self, caller: Principal, target: str, reason: str, status: int, detail: str
    ) -> Problem:
        await self._gate.audit(
            caller.name,
            "sign off campaign",
            target,
            reason,
            "refused",
            status=status,
            detail=detail,
        )
        slug = "forbidden" if status == 403 else "invalid-input"
        return Problem(status, detail, slug=slug)

    async def signoff(self, request: web.Request) -> web.Response:
        """POST /campaigns/{id}/signoffs: an identity approves a campaign sent or signed as it."""
        campaign_id = request.match_info["id"]
        caller = await self._gate.caller(request, "sign off", "sign off campaign", campaign_id)
        body = await _body(request, SignoffBody)
        identity = body.identity or caller.identity
        if identity is None:
            detail = f"token {caller.name!r} is bound to no identity; name the identity"
            raise await self._refuse(caller, campaign_id, body.reason, 422, detail)
        known = {i.id for i in self._policies().identities}
        if identity not in known:
            detail = f"no protected identity {identity!r} in the policy files"
            raise await self._refuse(caller, campaign_id, body.reason, 422, detail)
        on_behalf = identity != caller.identity
        if on_behalf and Role.ADMIN not in caller.roles:
            bound = caller.identity or "no identity"
            detail = (
                f"token {caller.name!r} signs for {bound}; only an admin may sign for {identity}"
            )
            raise await self._refuse(caller, campaign_id, body.reason, 403, detail)
        before = _found(await self._spool.campaign(campaign_id), campaign_id)
        signoff = Signoff(campaign_id, identity, caller.name, body.reason, self._clock(), on_behalf)
        try:
            campaign = _found(await self._spool.add_signoff(signoff), campaign_id)
        except Conflict as exc:
            await self._gate.audit(
                caller.name, "sign off campaign", campaign_id, body.reason, "refused", status=409
            )
            raise Problem(409, str(exc), slug="conflict") from None
        released = before.state is CampaignState.HELD and campaign.state is CampaignState.RELEASED
        bound = log.bind(campaign=campaign_id, key=campaign.key, actor=caller.name)
        bound.info(
            "campaign_signed_off", identity=identity, on_behalf=on_behalf, reason=body.reason
        )
        if released:
            self._wake_relay()
            bound.info(
                "campaign_released",
                reason=f"signed off by {identity}",
                recipients=before.counters.held,
                still_held=campaign.counters.held,
            )
        await self._gate.audit(
            caller.name,
            "sign off campaign",
            campaign_id,
            body.reason,
            "ok",
            identity=identity,
            on_behalf=on_behalf,
            released=released,
        )
        return web.json_response(await self._detail(campaign))

    async def reload(self, request: web.Request) -> web.Response:
        """POST /policies/reload: load the policy folder again; keep the old set if invalid."""
        caller = await self._gate.caller(request, "operate", "reload policies", "policies")
        body = await _body(request, _Body)
        current = self._policies().version
        try:
            before, after = await self._reload(caller.name)
        except ConfigError as exc:
            problems = exc.problems if isinstance(exc, PolicyError) else (exc,)
            errors = [
                {"field": f"{p.where}: {p.key}".rstrip(": "), "detail": p.reason} for p in problems
            ]
            await self._gate.audit(
                caller.name,
                "reload policies",
                "policies",
                body.reason,
                "refused",
                status=422,
                problems=[str(ConfigError.__str__(p)) for p in problems],
            )
            raise Problem(
                422,
                f"the policy files have {len(errors)} problem(s); version {current} stays in force",
                slug="invalid-policies",
                errors=errors,
                version=current,
            ) from None
        await self._gate.audit(
            caller.name,
            "reload policies",
            "policies",
            body.reason,
            "ok",
            previous=before.version,
            version=after.version,
        )
        return web.json_response(
            {
                "version": after.version,
                "previous": before.version,
                "changed": before.version != after.version,
                "files": list(after.files),
                "rules": [{"id": a.id, "kind": a.rule.kind, "mode": a.mode} for a in after.rules],
                "identities": [i.id for i in after.identities],
            }
        )
