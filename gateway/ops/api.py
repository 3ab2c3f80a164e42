"""The ops API (DESIGN.md §4): campaigns, messages, relay pause, audit.

Thin handlers over the spool. Each mutating call needs a `reason`, is checked against the
caller's roles, and lands in the append-only audit log, refused calls included. Each
decision that changes a campaign is also logged as one event (`campaign_held`,
`campaign_released`, `campaign_rejected`, ...) with the campaign, actor and counts, so the
logs alone tell a campaign's story next to the stages' events.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, TypeVar

import structlog
from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from gateway.errors import Conflict
from gateway.metrics import MANUAL_RULE, Metrics
from gateway.model import (
    Campaign,
    CampaignState,
    Declaration,
    Finding,
    Manifest,
    RecipientState,
)
from gateway.ops import views
from gateway.ops.auth import Gate, Principal
from gateway.ops.problems import Problem, invalid
from gateway.settings import OpsSettings
from gateway.spool.base import Spool

BASE = "/api/v1"
B = TypeVar("B", bound=BaseModel)
log = structlog.get_logger(__name__)


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    reason: str = Field(min_length=1, description="Why; written to the audit log.")


class ReasonBody(_Body):
    """Body of hold, reject, pause and resume."""


class ReleaseBody(_Body):
    """Body of release: all held recipients, or only some."""

    max_recipients: int | None = Field(
        None, ge=1, description="Release at most this many, oldest first."
    )
    only_segment: str | None = Field(
        None, description="Release only held recipients in this segment."
    )


class ManifestBody(_Body):
    """Body of PUT /campaigns/{key}: what the campaign is meant to be."""

    size: int | None = Field(None, ge=0, description="Intended number of recipients.")
    category: str | None = Field(
        None, min_length=1, description="e.g. newsletter, survey, win-back."
    )
    locale: str | None = Field(None, min_length=1, description="e.g. en, de-AT.")
    client: str = Field("*", min_length=1, description="Client the key belongs to; * for any.")


class OpsApi:
    """Handlers of /api/v1 with their dependencies."""

    def __init__(
        self,
        spool: Spool,
        gate: Gate,
        settings: OpsSettings,
        metrics: Metrics,
        *,
        clock: Callable[[], float] = time.time,
        wake_relay: Callable[[], None] = lambda: None,
    ) -> None:
        self._spool = spool
        self._gate = gate
        self._settings = settings
        self._metrics = metrics
        self._clock = clock
        self._wake_relay = wake_relay

    def routes(self) -> list[web.RouteDef]:
        """Every route of the API."""
        return [
            web.get(f"{BASE}/campaigns", self.list_campaigns),
            web.get(f"{BASE}/campaigns/{{id}}", self.show_campaign),
            web.get(f"{BASE}/campaigns/{{id}}/recipients", self.list_recipients),
            web.put(f"{BASE}/campaigns/{{key:.+}}", self.put_manifest),
            web.post(f"{BASE}/campaigns/{{id}}/hold", self.hold),
            web.post(f"{BASE}/campaigns/{{id}}/release", self.release),
            web.post(f"{BASE}/campaigns/{{id}}/reject", self.reject),
            web.get(f"{BASE}/messages/{{id}}", self.show_message),
            web.get(f"{BASE}/messages/{{id}}/raw", self.raw_message),
            web.get(f"{BASE}/relay", self.relay_status),
            web.post(f"{BASE}/relay/pause", self.pause),
            web.post(f"{BASE}/relay/resume", self.resume),
            web.get(f"{BASE}/audit", self.audit),
        ]

    # -- access ---------------------------------------------------------------------------

    async def _campaign(self, campaign_id: str) -> Campaign:
        return _found(await self._spool.campaign(campaign_id), campaign_id)

    def _page_size(self, request: web.Request) -> int:
        raw = request.query.get("limit")
        if raw is None:
            return self._settings.page_size
        if not raw.isdigit() or not 1 <= int(raw) <= 1000:
            raise Problem(
                422,
                "limit must be a whole number from 1 to 1000",
                slug="invalid-input",
                errors=[{"field": "limit", "detail": "a whole number from 1 to 1000"}],
            )
        return int(raw)

    @staticmethod
    def _cursor(request: web.Request) -> str | None:
        raw = request.query.get("cursor")
        if raw is None:
            return None
        try:
            return views.decode_cursor(raw)
        except ValueError:
            raise Problem(
                422,
                "cursor is not one this API returned",
                slug="invalid-input",
                errors=[{"field": "cursor", "detail": "use the `next` value of a previous page"}],
            ) from None

    # -- campaigns ------------------------------------------------------------------------

    async def list_campaigns(self, request: web.Request) -> web.Response:
        """GET /campaigns?state=&limit=&cursor=."""
        await self._gate.caller(request, "read", "list campaigns", "campaigns")
        state = _enum(CampaignState, request.query.get("state"), "state")
        limit = self._page_size(request)
        items = await self._spool.campaigns(
            state=state, limit=limit + 1, before=self._cursor(request)
        )
        page, more = items[:limit], len(items) > limit
        return web.json_response(
            {
                "items": [views.campaign_json(c) for c in page],
                "next": views.encode_cursor(page[-1].id) if more else None,
            }
        )

    async def show_campaign(self, request: web.Request) -> web.Response:
        """GET /campaigns/{id}: declaration, counters, findings, sample message, timeline."""
        await self._gate.caller(request, "read", "show campaign", request.match_info["id"])
        return web.json_response(await self._detail(await self._campaign(request.match_info["id"])))

    async def detail(self, campaign: Campaign) -> dict[str, Any]:
        """Render a campaign with its sign-offs, sample message and timeline."""
        return await self._detail(campaign)

    async def _detail(self, campaign: Campaign) -> dict[str, Any]:
        sample = None
        if campaign.sample_message_id:
            message = await self._spool.message(campaign.sample_message_id)
            sample = message and views.message_summary(message, BASE)
        signed, required = await self._spool.signoffs(campaign.id)
        return {
            **views.campaign_json(campaign),
            "signoffs": [views.signoff_json(s) for s in signed],
            "signoffs_missing": sorted(required - {s.identity for s in signed}),
            "sample": sample,
            "timeline": [views.event_json(e) for e in await self._spool.events(campaign.id)],
            "recipients_url": f"{BASE}/campaigns/{campaign.id}/recipients",
        }

    async def list_recipients(self, request: web.Request) -> web.Response:
        """GET /campaigns/{id}/recipients?state=&limit=&cursor=."""
        campaign_id = request.match_info["id"]
        await self._gate.caller(request, "read", "list recipients", campaign_id)
        await self._campaign(campaign_id)
        state = _enum(RecipientState, request.query.get("state"), "state")
        limit = self._page_size(request)
        cursor = self._cursor(request)
        after = int(cursor) if cursor and cursor.isdigit() else 0
        rows = await self._spool.recipients(
            campaign_id=campaign_id, state=state, limit=limit + 1, after=after
        )
        page, more = rows[:limit], len(rows) > limit
        return web.json_response(
            {
                "items": [views.recipient_json(r) for r in page],
                "next": views.encode_cursor(page[-1].id) if more else None,
            }
        )

    async def put_manifest(self, request: web.Request) -> web.Response:
        """PUT /campaigns/{key}: register a declaration before (or while) sending."""
        key = request.match_info["key"]
        caller = await self._gate.caller(request, "declare", "declare campaign", key)
        body = await _body(request, ManifestBody)
        declaration = Declaration(
            size=body.size, category=body.category and body.category.lower(), locale=body.locale
        )
        manifest = Manifest(
            client=body.client,
            key=key,
            declaration=declaration,
            created_by=caller.name,
            updated_at=self._clock(),
        )
        await self._spool.put_manifest(manifest)
        await self._gate.audit(
            caller.name,
            "declare campaign",
            key,
            body.reason,
            "ok",
            client=body.client,
            size=body.size,
            category=body.category,
            locale=body.locale,
        )
        campaign = None if body.client == "*" else await self._spool.find_campaign(body.client, key)
        return web.json_response(
            {
                "key": key,
                "client": body.client,
                "declared": {
                    "size": declaration.size,
                    "category": declaration.category,
                    "locale": declaration.locale,
                },
                "updated_at": views.timestamp(manifest.updated_at),
                "campaign": campaign and views.campaign_json(campaign),
            }
        )

    async def hold(self, request: web.Request) -> web.Response:
        """POST /campaigns/{id}/hold: the manual kill switch for one campaign."""
        campaign_id = request.match_info["id"]
        caller = await self._gate.caller(request, "operate", "hold campaign", campaign_id)
        body = await _body(request, ReasonBody)
        before = await self._campaign(campaign_id)
        now = self._clock()
        finding = Finding(
            rule="manual",
            kind="manual_hold",
            mode="enforce",
            message=f"held by {caller.name}: {body.reason}",
            evidence={"actor": caller.name, "reason": body.reason},
            at=now,
        )
        campaign = _found(
            await self._guarded(
                self._spool.hold(campaign_id, finding, now),
                caller,
                "hold campaign",
                campaign_id,
                body.reason,
            )
        )
        changed = before.state is not CampaignState.HELD
        detail = await self._detail(campaign)
        if changed:
            self._metrics.campaign_holds.labels(rule=MANUAL_RULE).inc()
            step = _last_step(detail, {"held"}, caller.name)
            log.warning(
                "campaign_held",
                campaign=campaign_id,
                key=campaign.key,
                rules=[MANUAL_RULE],
                actor=caller.name,
                reason=body.reason,
                recipients=step.get("recipients", campaign.counters.held),
                relayed=campaign.counters.relayed,
            )
        await self._gate.audit(
            caller.name, "hold campaign", campaign_id, body.reason, "ok", changed=changed
        )
        return web.json_response(detail)

    async def release(self, request: web.Request) -> web.Response:
        """POST /campaigns/{id}/release: all held recipients, or `max_recipients` of them."""
        campaign_id = request.match_info["id"]
        caller = await self._gate.caller(request, "operate", "release campaign", campaign_id)
        body = await _body(request, ReleaseBody)
        if body.only_segment is not None and await self._spool.segment(body.only_segment) is None:
            raise Problem(
                422,
                f"no segment named {body.only_segment!r} has been loaded",
                slug="invalid-input",
                errors=[{"field": "only_segment", "detail": "not a loaded segment"}],
            )
        campaign = await self._campaign(campaign_id)
        if campaign.state is not CampaignState.HELD:
            await self._gate.audit(
                caller.name, "release campaign", campaign_id, body.reason, "ok", changed=False
            )
            return web.json_response(await self._detail(campaign))
        count = min(campaign.counters.held, body.max_recipients or campaign.counters.held)
        if count > self._settings.two_person_release_above:
            approvers = await self._guarded(
                self._spool.approve_release(campaign_id, caller.name, self._clock()),
                caller,
                "release campaign",
                campaign_id,
                body.reason,
            )
            if len(approvers) < 2:
                log.info(
                    "campaign_release_approved",
                    campaign=campaign_id,
                    key=campaign.key,
                    actor=caller.name,
                    reason=body.reason,
                    recipients=count,
                    approvals=approvers,
                )
                await self._gate.audit(
                    caller.name,
                    "release campaign",
                    campaign_id,
                    body.reason,
                    "pending",
                    recipients=count,
                    approvals=approvers,
                )
                return web.json_response(
                    {
                        "status": "pending_approval",
                        "approvals": approvers,
                        "required": 2,
                        "detail": f"releasing {count} recipients needs a second operator",
                        "campaign": await self._detail(campaign),
                    },
                    status=202,
                )
        released = _found(
            await self._spool.release(
                campaign_id,
                caller.name,
                self._clock(),
                max_recipients=body.max_recipients,
                only_segment=body.only_segment,
            )
        )
        self._wake_relay()
        detail = await self._detail(released)
        step = _last_step(detail, {"released", "partially_released"}, caller.name)
        log.info(
            "campaign_released"
            if released.state is CampaignState.RELEASED
            else "campaign_partially_released",
            campaign=campaign_id,
            key=released.key,
            actor=caller.name,
            reason=body.reason,
            recipients=step.get("recipients", count),
            still_held=released.counters.held,
        )
        await self._gate.audit(
            caller.name,
            "release campaign",
            campaign_id,
            body.reason,
            "ok",
            changed=True,
            recipients=count,
            max_recipients=body.max_recipients,
            only_segment=body.only_segment,
        )
        return web.json_response(detail)

    async def reject(self, request: web.Request) -> web.Response:
        """POST /campaigns/{id}/reject: discard held mail and refuse later mail."""
        campaign_id = request.match_info["id"]
        caller = await self._gate.caller(request, "operate", "reject campaign", campaign_id)
        body = await _body(request, ReasonBody)
        before = await self._campaign(campaign_id)
        campaign = _found(await self._spool.reject(campaign_id, caller.name, self._clock()))
        changed = before.state is not CampaignState.REJECTED
        if changed:
            log.warning(
                "campaign_rejected",
                campaign=campaign_id,
                key=campaign.key,
                actor=caller.name,
                reason=body.reason,
                discarded=campaign.counters.discarded - before.counters.discarded,
                relayed=campaign.counters.relayed,
            )
        await self._gate.audit(
            caller.name, "reject campaign", campaign_id, body.reason, "ok", changed=changed
        )
        return web.json_response(await self._detail(campaign))

    async def _guarded(
        self, operation: Any, caller: Principal, action: str, target: str, reason: str
    ) -> Any:
        """Await a spool operation; a state conflict becomes an audited 409."""
        try:
            return await operation
        except Conflict as exc:
            await self._gate.audit(
                caller.name, action, target, reason, "refused", status=409, detail=str(exc)
            )
            raise Problem(409, str(exc), slug="conflict") from None

    # -- messages -------------------------------------------------------------------------

    async def show_message(self, request: web.Request) -> web.Response:
        """GET /messages/{id}: headers, decoded preview and recipients."""
        message_id = request.match_info["id"]
        await self._gate.caller(request, "read", "show message", message_id)
        message = await self._spool.message(message_id)
        if message is None:
            raise Problem(404, f"no message with id {message_id!r}", slug="not-found")
        recipients = await self._spool.recipients(message_id=message_id)
        return web.json_response(views.message_json(message, recipients, BASE))

    async def raw_message(self, request: web.Request) -> web.Response:
        """GET /messages/{id}/raw: the message as it will be relayed."""
        message_id = request.match_info["id"]
        await self._gate.caller(request, "read", "show message", message_id)
        message = await self._spool.message(message_id)
        if message is None:
            raise Problem(404, f"no message with id {message_id!r}", slug="not-found")
        return web.Response(body=message.content, content_type="message/rfc822")

    # -- relay and audit ------------------------------------------------------------------

    async def relay_status(self, request: web.Request) -> web.Response:
        """GET /relay: whether the relay is paused."""
        await self._gate.caller(request, "read", "show relay", "relay")
        return web.json_response({"paused": await self._spool.relay_paused()})

    async def pause(self, request: web.Request) -> web.Response:
        """POST /relay/pause: stop relaying everything; ingest keeps accepting."""
        return await self._set_paused(request, paused=True)

    async def resume(self, request: web.Request) -> web.Response:
        """POST /relay/resume: relay again."""
        return await self._set_paused(request, paused=False)

    async def _set_paused(self, request: web.Request, *, paused: bool) -> web.Response:
        action = "pause relay" if paused else "resume relay"
        caller = await self._gate.caller(request, "operate", action, "relay")
        body = await _body(request, ReasonBody)
        await self._spool.set_relay_paused(paused, caller.name, body.reason, self._clock())
        log.warning(
            "relay_paused" if paused else "relay_resumed", actor=caller.name, reason=body.reason
        )
        await self._gate.audit(caller.name, action, "relay", body.reason, "ok")
        if not paused:
            self._wake_relay()
        return web.json_response({"paused": paused, "by": caller.name, "reason": body.reason})

    async def audit(self, request: web.Request) -> web.Response:
        """GET /audit?limit=&cursor=: newest first."""
        await self._gate.caller(request, "read", "read audit log", "audit")
        limit = self._page_size(request)
        cursor = self._cursor(request)
        before = int(cursor) if cursor and cursor.isdigit() else None
        entries = await self._spool.audit_log(limit=limit + 1, before=before)
        page, more = entries[:limit], len(entries) > limit
        return web.json_response(
            {
                "items": [views.audit_json(e) for e in page],
                "next": views.encode_cursor(page[-1].id) if more else None,
            }
        )


def _last_step(detail: dict[str, Any], events: set[str], actor: str) -> dict[str, Any]:
    """Return the newest timeline step of `events` by `actor` (it holds the exact counts)."""
    for step in reversed(detail["timeline"]):
        if step["event"] in events and step["actor"] == actor:
            return dict(step)
    return {}


def _found(campaign: Campaign | None, campaign_id: str = "") -> Campaign:
    if campaign is None:
        raise Problem(404, f"no campaign with id {campaign_id!r}", slug="not-found")
    return campaign


def _enum(kind: Any, value: str | None, field: str) -> Any:
    if value is None:
        return None
    try:
        return kind(value)
    except ValueError:
        allowed = ", ".join(str(v) for v in kind)
        raise Problem(
            422,
            f"{field} must be one of {allowed}",
            slug="invalid-input",
            errors=[{"field": field, "detail": f"one of {allowed}"}],
        ) from None


async def _body(request: web.Request, model: type[B]) -> B:
    """Parse and validate a JSON body; wrong input is a 422 naming each field."""
    if request.content_type != "application/json":
        raise Problem(415, "send the body as application/json", slug="unsupported-media-type")
    try:
        data = await request.json()
    except ValueError:
        raise Problem(400, "the body is not valid JSON", slug="invalid-json") from None
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise invalid(exc) from None
