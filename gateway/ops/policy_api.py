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
from dataclasses import KW_ONLY, dataclass

import structlog
from aiohttp import web

from gateway.errors import ConfigError, Conflict, PolicyError
from gateway.model import Campaign, Role, Signoff
from gateway.ops import routes
from gateway.ops import schemas as s
from gateway.ops.auth import Gate, Principal
from gateway.ops.bodies import ReasonBody, SignoffBody
from gateway.ops.exchange import plausible_id, read_body, respond
from gateway.ops.openapi import Handlers
from gateway.ops.problems import Problem, found
from gateway.policy.loader import PolicySet
from gateway.review.signoffs import sign_off
from gateway.spool.base import Spool
from gateway.states import CampaignState

log = structlog.get_logger(__name__)

Reload = Callable[[str], Awaitable[tuple[PolicySet, PolicySet]]]  # actor -> (before, after)
SIGN_OFF = "sign off campaign"


@dataclass(eq=False)  # handlers are bound methods: keep identity hashing
class PolicyApi(Handlers):
    """Handlers of sign-offs and policy reloads."""

    spool: Spool
    gate: Gate
    _: KW_ONLY
    policies: Callable[[], PolicySet]
    reload: Reload
    detail: Callable[[Campaign], Awaitable[s.CampaignDetail]]
    clock: Callable[[], float] = time.time
    wake_relay: Callable[[], None] = lambda: None

    ROUTES = routes.POLICIES

    async def _refuse(
        self, caller: Principal, target: str, reason: str, status: int, detail: str
    ) -> Problem:
        slug = "forbidden" if status == 403 else "invalid-input"
        problem = Problem(status, detail, slug=slug)
        return await self.gate.refuse(caller.name, SIGN_OFF, target, reason, problem, detail=detail)

    async def signoff(self, request: web.Request) -> web.Response:
        """POST /campaigns/{id}/signoffs: an identity approves a campaign sent or signed as it."""
        campaign_id = request.match_info["id"]
        caller = await self.gate.caller(request, "sign off", SIGN_OFF, campaign_id)
        body = await read_body(request, SignoffBody)
        identity = body.identity or caller.identity
        if identity is None:
            detail = f"token {caller.name!r} is bound to no identity; name the identity"
            raise await self._refuse(caller, campaign_id, body.reason, 422, detail)
        known = {i.id for i in self.policies().identities}
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
        plausible_id(campaign_id, "campaign")
        before = found(await self.spool.campaign(campaign_id), "campaign", campaign_id)
        signoff = Signoff(campaign_id, identity, caller.name, body.reason, self.clock(), on_behalf)
        try:
            added = await self.spool.transact(lambda tx: sign_off(tx, signoff))
        except Conflict as exc:
            problem = Problem(409, str(exc), slug="conflict")
            raise await self.gate.refuse(
                caller.name, SIGN_OFF, campaign_id, body.reason, problem
            ) from None
        campaign = found(added, "campaign", campaign_id)
        released = before.state is CampaignState.HELD and campaign.state is CampaignState.RELEASED
        bound = log.bind(campaign=campaign_id, key=campaign.key, actor=caller.name)
        bound.info(
            "campaign_signed_off", identity=identity, on_behalf=on_behalf, reason=body.reason
        )
        if released:
            self.wake_relay()
            bound.info(
                "campaign_released",
                reason=f"signed off by {identity}",
                recipients=before.counters.held,
                still_held=campaign.counters.held,
            )
        await self.gate.audit(
            caller.name,
            SIGN_OFF,
            campaign_id,
            body.reason,
            "ok",
            identity=identity,
            on_behalf=on_behalf,
            released=released,
        )
        return respond(await self.detail(campaign))

    async def reload_policies(self, request: web.Request) -> web.Response:
        """POST /policies/reload: load the policy folder again; keep the old set if invalid."""
        caller = await self.gate.caller(request, "operate", "reload policies", "policies")
        body = await read_body(request, ReasonBody)
        current = self.policies().version
        try:
            before, after = await self.reload(caller.name)
        except ConfigError as exc:
            problems = exc.problems if isinstance(exc, PolicyError) else (exc,)
            errors = [
                {"field": f"{p.where}: {p.key}".rstrip(": "), "detail": p.reason} for p in problems
            ]
            problem = Problem(
                422,
                f"the policy files have {len(errors)} problem(s); version {current} stays in force",
                slug="invalid-policies",
                errors=errors,
                shape=s.InvalidPolicies,
                version=current,
            )
            raise await self.gate.refuse(
                caller.name,
                "reload policies",
                "policies",
                body.reason,
                problem,
                problems=[str(ConfigError.__str__(p)) for p in problems],
            ) from None
        await self.gate.audit(
            caller.name,
            "reload policies",
            "policies",
            body.reason,
            "ok",
            previous=before.version,
            version=after.version,
        )
        return respond(
            s.PolicyReload(
                version=after.version,
                previous=before.version,
                changed=before.version != after.version,
                files=list(after.files),
                rules=[s.PolicyRule(id=a.id, kind=a.rule.kind, mode=a.mode) for a in after.rules],
                identities=[i.id for i in after.identities],
            )
        )
