"""The ops API (DESIGN.md §4): campaigns, messages, relay pause, audit.

Thin handlers over the spool. Each mutating call needs a `reason`, is checked against the
caller's roles, and lands in the append-only audit log, refused calls included. Each
decision that changes a campaign is also logged as one event (`campaign_held`,
`campaign_released`, `campaign_rejected`, ...) with the campaign, actor and counts, so the
logs alone tell a campaign's story next to the stages' events.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import KW_ONLY, dataclass, replace
from typing import Any, TypeVar

import structlog
from aiohttp import web

from gateway.errors import Conflict
from gateway.metrics import MANUAL_RULE, Metrics
from gateway.model import (
    AuditEntry,
    Campaign,
    CampaignEvent,
    Declaration,
    Finding,
    Manifest,
    ReleaseScope,
    StoredMessage,
    Throttle,
)
from gateway.ops import routes
from gateway.ops import schemas as s
from gateway.ops.auth import Gate, Principal
from gateway.ops.bodies import ManifestBody, ReasonBody, ReleaseBody
from gateway.ops.exchange import (
    PageQuery,
    plausible_id,
    query_enum,
    read_body,
    respond,
    wrong,
)
from gateway.ops.openapi import BASE, Handlers
from gateway.ops.problems import Problem, found
from gateway.ops.views import timestamp
from gateway.review import canary, signoffs
from gateway.settings import OpsSettings
from gateway.spool import gcra
from gateway.spool.base import Spool
from gateway.spool.port import Tx
from gateway.states import CampaignState, RecipientState

T = TypeVar("T")
MAX_KEY = 998  # a header line's limit (RFC 5322): no key header can carry more
# The audit log's names of the decisions, the same whether the API or the console asked.
HOLD, RELEASE, REJECT = "hold campaign", "release campaign", "reject campaign"
log = structlog.get_logger(__name__)


def release_count(campaign: Campaign, max_recipients: int | None) -> int:
    """How many held recipients a release of at most `max_recipients` (None: all) sends."""
    return min(campaign.counters.held, max_recipients or campaign.counters.held)


def needs_two_operators(count: int, settings: OpsSettings) -> bool:
    """Tell whether releasing `count` recipients needs a second operator's approval."""
    return count > settings.two_person_release_above


@dataclass(eq=False)  # handlers are bound methods: keep identity hashing
class OpsApi(Handlers):
    """Handlers of /api/v1 with their dependencies."""

    spool: Spool
    gate: Gate
    settings: OpsSettings
    metrics: Metrics
    _: KW_ONLY
    clock: Callable[[], float] = time.time
    wake_relay: Callable[[], None] = lambda: None
    # The relay throttles the policy in force puts on a campaign (`Engine.throttles`).
    throttles: Callable[[Campaign], Sequence[Throttle]] = lambda _campaign: ()

    ROUTES = routes.CAMPAIGNS

    # -- campaigns ------------------------------------------------------------------------

    async def _campaign(self, campaign_id: str) -> Campaign:
        plausible_id(campaign_id, "campaign")
        return found(await self.spool.campaign(campaign_id), "campaign", campaign_id)

    async def _message(self, message_id: str) -> StoredMessage:
        plausible_id(message_id, "message")
        return found(await self.spool.message(message_id), "message", message_id)

    async def list_campaigns(self, request: web.Request) -> web.Response:
        """GET /campaigns?state=&limit=&cursor=."""
        await self.gate.caller(request, "read", "list campaigns", "campaigns")
        state = query_enum(request, CampaignState, "state")
        query = PageQuery.of(request, self.settings.page_size)
        rows = await self.spool.campaigns(state=state, limit=query.fetch, before=query.cursor)
        return respond(query.page(s.CampaignList, rows))

    async def show_campaign(self, request: web.Request) -> web.Response:
        """GET /campaigns/{id}: declaration, counters, findings, sample message, timeline."""
        await self.gate.caller(request, "read", "show campaign", request.match_info["id"])
        return respond(await self.detail(await self._campaign(request.match_info["id"])))

    async def detail(
        self, campaign: Campaign, timeline: list[CampaignEvent] | None = None
    ) -> s.CampaignDetail:
        """Render a campaign with its sign-offs, sample message, canary and timeline.

        `timeline`: the campaign's events when the caller has just read them.
        """
        sample = None
        if campaign.sample_message_id:
            message = await self.spool.message(campaign.sample_message_id)
            sample = message and s.MessageSummary.of(message, BASE)
        signed, required, current, latest = await self.spool.read(
            lambda tx: (
                tx.signoffs(campaign.id),
                signoffs.required(tx.tallies(campaign.id)),
                tx.campaign(campaign.id),
                tx.canary(campaign.id),  # with the campaign's counters, in one snapshot
            )
        )
        # Changes answer the campaign as their transaction left it: its feedback is read here.
        campaign = replace(current or campaign, feedback=await self.spool.feedback(campaign.id))
        samples = await self.spool.feedback_samples(campaign.id)
        return s.CampaignDetail.model_validate(
            {
                **dict(s.Campaign.model_validate(campaign)),
                "throttles": await self._throttles(campaign),
                "signoffs": signed,
                "signoffs_missing": sorted(required - {x.identity for x in signed}),
                "feedback_samples": samples,
                "sample": sample,
                "canary": latest and s.Canary.of(latest, campaign),
                "timeline": await self.spool.events(campaign.id) if timeline is None else timeline,
                "recipients_url": f"{BASE}/campaigns/{campaign.id}/recipients",
            }
        )

    async def _throttles(self, campaign: Campaign) -> list[dict[str, Any]]:
        """Describe the throttles in force for `campaign`, with when each next allows one."""
        throttles = self.throttles(campaign)
        if not throttles:
            return []
        tats = await self.spool.throttle_tats([t.bucket for t in throttles])
        waiting = await self.spool.throttle_waiting(campaign.id)
        now = self.clock()
        out = []
        for t in throttles:
            tat = tats.get(t.bucket)
            at = None if tat is None else gcra.conforms_at(tat, gcra.Rate(t.per_second, t.burst))
            out.append(
                {
                    "rule": t.rule,
                    "per_second": t.per_second,
                    "burst": t.burst,
                    "scope": t.scope,
                    "next_at": at if at is not None and at > now else None,
                    "waiting": waiting.get(t.rule, 0),
                }
            )
        return out

    async def list_recipients(self, request: web.Request) -> web.Response:
        """GET /campaigns/{id}/recipients?state=&limit=&cursor=."""
        campaign_id = request.match_info["id"]
        await self.gate.caller(request, "read", "list recipients", campaign_id)
        await self._campaign(campaign_id)
        state = query_enum(request, RecipientState, "state")
        query = PageQuery.of(request, self.settings.page_size)
        rows = await self.spool.recipients(
            campaign_id=campaign_id, state=state, limit=query.fetch, after=query.number() or 0
        )
        return respond(query.page(s.RecipientList, rows))

    async def put_manifest(self, request: web.Request) -> web.Response:
        """PUT /campaigns/{key}: register a declaration before (or while) sending."""
        key = request.match_info["key"]
        caller = await self.gate.caller(request, "declare", "declare campaign", key)
        body = await read_body(request, ManifestBody)
        if len(key) > MAX_KEY or not key.isprintable():
            rule = f"printable text of at most {MAX_KEY} characters"
            raise wrong("key", rule, f"a campaign key must be {rule}")
        declaration = Declaration(
            size=body.size, category=body.category and body.category.lower(), locale=body.locale
        )
        manifest = Manifest(
            client=body.client,
            key=key,
            declaration=declaration,
            created_by=caller.name,
            updated_at=self.clock(),
        )
        audit = self.gate.entry(
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
        await self.spool.put_manifest(manifest, audit=audit)
        campaign = None if body.client == "*" else await self.spool.find_campaign(body.client, key)
        return respond(
            s.Manifest.model_validate(
                {
                    "key": key,
                    "client": body.client,
                    "declared": declaration,
                    "updated_at": manifest.updated_at,
                    "campaign": campaign,
                }
            )
        )

    async def hold(self, request: web.Request) -> web.Response:
        """POST /campaigns/{id}/hold: the manual kill switch for one campaign."""
        campaign_id = request.match_info["id"]
        caller = await self.gate.caller(request, "operate", HOLD, campaign_id)
        body = await read_body(request, ReasonBody)
        return respond(await self.hold_campaign(caller, campaign_id, body))

    async def hold_campaign(
        self, caller: Principal, campaign_id: str, body: ReasonBody
    ) -> s.CampaignDetail:
        """Hold a campaign for an authorised caller; the API's and the console's one path."""
        before = await self._campaign(campaign_id)
        now = self.clock()
        finding = Finding(
            rule="manual",
            kind="manual_hold",
            mode="enforce",
            message=f"held by {caller.name}: {body.reason}",
            evidence={"actor": caller.name, "reason": body.reason},
            at=now,
        )
        changed = before.state is not CampaignState.HELD
        audit = self.gate.entry(caller.name, HOLD, campaign_id, body.reason, "ok", changed=changed)
        held = self.spool.hold(campaign_id, finding, now, audit=audit)
        campaign = found(
            await self._guarded(held, caller, HOLD, campaign_id, body.reason),
            "campaign",
            campaign_id,
        )
        timeline = await self.spool.events(campaign_id)
        if changed:
            self.metrics.campaign_holds.labels(rule=MANUAL_RULE).inc()
            log.warning(
                "campaign_held",
                campaign=campaign_id,
                key=campaign.key,
                rules=[MANUAL_RULE],
                actor=caller.name,
                reason=body.reason,
                recipients=_recipients(timeline, {"held"}, caller.name, campaign.counters.held),
                relayed=campaign.counters.relayed,
            )
        return await self.detail(campaign, timeline)

    async def release(self, request: web.Request) -> web.Response:
        """POST /campaigns/{id}/release: all held recipients, or `max_recipients` of them."""
        campaign_id = request.match_info["id"]
        caller = await self.gate.caller(request, "operate", RELEASE, campaign_id)
        body = await read_body(request, ReleaseBody)
        answer = await self.release_campaign(caller, campaign_id, body)
        return respond(answer, status=202 if isinstance(answer, s.PendingRelease) else 200)

    async def release_campaign(
        self, caller: Principal, campaign_id: str, body: ReleaseBody
    ) -> s.CampaignDetail | s.PendingRelease:
        """Release for an authorised caller, or record the first of two operators' approvals.

        The API's and the console's one path: the same checks, audit entries and log lines.
        """
        if body.only_segment is not None and await self.spool.segment(body.only_segment) is None:
            missing = f"no segment named {body.only_segment!r} has been loaded"
            raise wrong("only_segment", "not a loaded segment", missing)
        campaign = await self._campaign(campaign_id)
        if campaign.state is not CampaignState.HELD:
            await self.gate.audit(
                caller.name, RELEASE, campaign_id, body.reason, "ok", changed=False
            )
            return await self.detail(campaign)
        count = release_count(campaign, body.max_recipients)
        # A canary releases the rest by itself later: two operators if the whole would need them.
        if needs_two_operators(campaign.counters.held if body.canary else count, self.settings):

            def pending(approvers: list[str]) -> AuditEntry | None:
                """Describe an approval that still waits for a second operator, for the audit."""
                if len(approvers) >= 2:
                    return None  # the release below is audited instead
                return self.gate.entry(
                    caller.name,
                    RELEASE,
                    campaign_id,
                    body.reason,
                    "pending",
                    recipients=count,
                    approvals=approvers,
                )

            note: dict[str, object] = {"reason": body.reason, "recipients": count}
            if body.only_segment is not None:
                note["only_segment"] = body.only_segment
            if body.canary is not None:
                note["canary"] = body.canary
            approval = self.spool.approve_release(
                campaign_id, caller.name, self.clock(), audit=pending, details=note
            )
            approvers = await self._guarded(approval, caller, RELEASE, campaign_id, body.reason)
            if len(approvers) < 2:
                return await self._pending(campaign, caller, body.reason, count, approvers)
        if body.canary is not None:
            return await self._start_canary(caller, campaign, body)
        audit = self.gate.entry(
            caller.name,
            RELEASE,
            campaign_id,
            body.reason,
            "ok",
            changed=True,
            recipients=count,
            max_recipients=body.max_recipients,
            only_segment=body.only_segment,
        )
        released = found(
            await self.spool.release(
                campaign_id,
                caller.name,
                self.clock(),
                ReleaseScope(body.max_recipients, body.only_segment),
                audit=audit,
            ),
            "campaign",
            campaign_id,
        )
        # The decision's log line comes before the deliveries' lines: one read, then the
        # line, then the relay is woken; the answer is rendered after.
        timeline = await self.spool.events(campaign_id)
        log.info(
            "campaign_released"
            if released.state is CampaignState.RELEASED
            else "campaign_partially_released",
            campaign=campaign_id,
            key=released.key,
            actor=caller.name,
            reason=body.reason,
            recipients=_recipients(
                timeline, {"released", "partially_released"}, caller.name, count
            ),
            still_held=released.counters.held,
        )
        self.wake_relay()
        return await self.detail(released, timeline)

    async def _start_canary(
        self, caller: Principal, campaign: Campaign, body: ReleaseBody
    ) -> s.CampaignDetail:
        """Release the canary's slice now; the watcher (`review.canary`) does the rest."""
        observe = body.observe or self.settings.canary_observe
        count = body.canary if isinstance(body.canary, int) else None
        plan = canary.CanaryPlan(observe=observe, percent=body.canary_percent, count=count)
        recipients = plan.size(campaign.counters.held)
        audit = self.gate.entry(
            caller.name,
            RELEASE,
            campaign.id,
            body.reason,
            "ok",
            changed=True,
            recipients=recipients,
            canary=body.canary,
            observe=observe,
        )

        def start(tx: Tx) -> Campaign | None:
            started = canary.start(
                tx, campaign.id, plan, actor=caller.name, reason=body.reason, now=self.clock()
            )
            tx.audit(audit)
            return started

        started = await self._guarded(
            self.spool.transact(start), caller, RELEASE, campaign.id, body.reason
        )
        started = found(started, "campaign", campaign.id)
        log.info(
            "canary_started",
            campaign=campaign.id,
            key=campaign.key,
            actor=caller.name,
            reason=body.reason,
            recipients=recipients,
            observe=observe,
            still_held=started.counters.held,
        )
        self.wake_relay()  # after the decision's log line, as a release
        return await self.detail(started)

    async def _pending(
        self, campaign: Campaign, caller: Principal, reason: str, count: int, approvers: list[str]
    ) -> s.PendingRelease:
        """Answer a large release that so far has only this one operator's approval."""
        log.info(
            "campaign_release_approved",
            campaign=campaign.id,
            key=campaign.key,
            actor=caller.name,
            reason=reason,
            recipients=count,
            approvals=approvers,
        )
        return s.PendingRelease(
            status="pending_approval",
            approvals=approvers,
            required=2,
            detail=f"releasing {count} recipients needs a second operator",
            campaign=await self.detail(campaign),
        )

    async def reject(self, request: web.Request) -> web.Response:
        """POST /campaigns/{id}/reject: discard held mail and refuse later mail."""
        campaign_id = request.match_info["id"]
        caller = await self.gate.caller(request, "operate", REJECT, campaign_id)
        body = await read_body(request, ReasonBody)
        return respond(await self.reject_campaign(caller, campaign_id, body))

    async def reject_campaign(
        self, caller: Principal, campaign_id: str, body: ReasonBody
    ) -> s.CampaignDetail:
        """Reject for an authorised caller; the API's and the console's one path."""
        before = await self._campaign(campaign_id)
        changed = before.state is not CampaignState.REJECTED
        audit = self.gate.entry(
            caller.name, REJECT, campaign_id, body.reason, "ok", changed=changed
        )
        campaign = found(
            await self.spool.reject(campaign_id, caller.name, self.clock(), audit=audit),
            "campaign",
            campaign_id,
        )
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
        return await self.detail(campaign)

    async def _guarded(
        self, operation: Awaitable[T], caller: Principal, action: str, target: str, reason: str
    ) -> T:
        """Await a spool operation; a state conflict becomes an audited 409."""
        try:
            return await operation
        except Conflict as exc:
            problem = Problem(409, str(exc), slug="conflict")
            raise await self.gate.refuse(
                caller.name, action, target, reason, problem, detail=str(exc)
            ) from None

    # -- messages -------------------------------------------------------------------------

    async def show_message(self, request: web.Request) -> web.Response:
        """GET /messages/{id}: headers, decoded preview and recipients."""
        message_id = request.match_info["id"]
        await self.gate.caller(request, "read", "show message", message_id)
        message = await self._message(message_id)
        recipients = await self.spool.recipients(message_id=message_id)
        return respond(s.Message.with_recipients(message, recipients, BASE))

    async def raw_message(self, request: web.Request) -> web.Response:
        """GET /messages/{id}/raw: the message as it will be relayed."""
        message_id = request.match_info["id"]
        await self.gate.caller(request, "read", "show message", message_id)
        message = await self._message(message_id)
        if message.retired_at is not None:
            when = timestamp(message.retired_at)
            detail = f"the body of message {message_id} was retired at {when} (spool.retention)"
            raise Problem(410, detail, slug="retired")
        return web.Response(body=message.content, content_type="message/rfc822")

    # -- relay and audit ------------------------------------------------------------------

    async def relay_status(self, request: web.Request) -> web.Response:
        """GET /relay: whether the relay is paused."""
        await self.gate.caller(request, "read", "show relay", "relay")
        return respond(s.RelayStatus(paused=await self.spool.relay_paused()))

    async def pause(self, request: web.Request) -> web.Response:
        """POST /relay/pause: stop relaying everything; ingest keeps accepting."""
        return await self._set_paused(request, paused=True)

    async def resume(self, request: web.Request) -> web.Response:
        """POST /relay/resume: relay again."""
        return await self._set_paused(request, paused=False)

    async def _set_paused(self, request: web.Request, *, paused: bool) -> web.Response:
        action = "pause relay" if paused else "resume relay"
        caller = await self.gate.caller(request, "operate", action, "relay")
        body = await read_body(request, ReasonBody)
        audit = self.gate.entry(caller.name, action, "relay", body.reason, "ok")
        await self.spool.set_relay_paused(
            paused, caller.name, body.reason, self.clock(), audit=audit
        )
        log.warning(
            "relay_paused" if paused else "relay_resumed", actor=caller.name, reason=body.reason
        )
        if not paused:
            self.wake_relay()
        return respond(s.RelayChange(paused=paused, by=caller.name, reason=body.reason))

    async def audit(self, request: web.Request) -> web.Response:
        """GET /audit?limit=&cursor=: newest first."""
        await self.gate.caller(request, "read", "read audit log", "audit")
        query = PageQuery.of(request, self.settings.page_size)
        rows = await self.spool.audit_log(limit=query.fetch, before=query.number())
        return respond(query.page(s.AuditList, rows))


def _recipients(timeline: list[CampaignEvent], events: set[str], actor: str, default: int) -> Any:
    """Return the recipients of the newest timeline step of `events` by `actor`.

    That step holds the exact count; `default` stands in when there is none.
    """
    for step in reversed(timeline):
        if step.event in events and step.actor == actor:
            return step.details.get("recipients", default)
    return default
