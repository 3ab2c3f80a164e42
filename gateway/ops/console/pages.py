"""The console's reading pages: campaigns, one campaign, its message, the audit log, policies.

Each page reads what the JSON API reads (the campaign detail is `OpsApi.detail`) and
renders it with a template; none of them changes anything. The message's HTML is shown
only through `/console/messages/{id}/render`, inside a sandboxed frame, with a policy
that loads nothing (`render.FRAME_CSP`); its raw source is plain text, sandboxed too.
"""

from __future__ import annotations

import asyncio
from typing import Any

from aiohttp import web

from gateway.mail.content import decode
from gateway.model import StoredMessage
from gateway.ops.console import views
from gateway.ops.console.app import Console
from gateway.ops.console.render import frame_document, text_document
from gateway.ops.exchange import PageQuery, plausible_id
from gateway.ops.problems import Problem, found
from gateway.ops.views import encode_cursor, timestamp
from gateway.states import CampaignState

# The frame's document runs nothing and loads nothing but inline styles and data: images;
# `sandbox` keeps it inert even when opened on its own, outside the console's frame.
FRAME_CSP = (
    "default-src 'none'; img-src data:; style-src 'unsafe-inline'; form-action 'none';"
    " base-uri 'none'; frame-ancestors 'self'; sandbox"
)
RAW_CSP = "default-src 'none'; frame-ancestors 'none'; sandbox"
SAMPLE_RECIPIENTS = 10
RAW_SHOWN = 64 * 1024  # bytes of the raw source on the campaign page; all of it one click on
STATES = ("held", "open", "released", "rejected", "all")


class Pages:
    """Handlers of the console's GET pages."""

    def __init__(self, console: Console) -> None:
        self.c = console

    async def campaigns(self, request: web.Request) -> web.StreamResponse:
        """GET /console/campaigns?state=&q=&cursor=: the table, held ones by default."""
        return await self._campaigns(request, "campaigns.html")

    async def campaign_rows(self, request: web.Request) -> web.StreamResponse:
        """GET /console/campaigns/rows: the same table's rows alone, for refreshing in place."""
        return await self._campaigns(request, "rows.html")

    async def _campaigns(self, request: web.Request, template: str) -> web.StreamResponse:
        visitor = await self.c.visitor(request)
        state_name = request.query.get("state", "held")
        if state_name not in STATES:
            raise Problem(422, f"state must be one of {', '.join(STATES)}")
        state = None if state_name == "all" else CampaignState(state_name)
        search = request.query.get("q", "").strip()[:200]
        query = PageQuery.of(request, self.c.api.settings.page_size)
        rows = await self.c.spool.campaigns(
            state=state, limit=query.fetch, before=query.cursor, key=search or None
        )
        items = rows[: query.limit]
        more = len(rows) > query.limit
        filters = {"state": state_name, "q": search}
        return await self.c.page(
            request,
            template,
            visitor,
            campaigns=items,
            filters=filters,
            states=STATES,
            next_cursor=encode_cursor(items[-1].id) if more else None,
            cursor=request.query.get("cursor"),
            now=self.c.clock(),
            refresh=self.c.settings.refresh_interval,
            refreshed_at=timestamp(self.c.clock()),
            fired=views.fired,
            since=views.since,
            ratio=views.size_ratio,
        )

    async def campaign(self, request: web.Request) -> web.StreamResponse:
        """GET /console/campaigns/{id}: everything needed to decide, and the actions."""
        visitor = await self.c.visitor(request)
        campaign_id = plausible_id(request.match_info["id"], "campaign")
        spool = self.c.spool
        campaign = found(await spool.campaign(campaign_id), "campaign", campaign_id)
        detail = await self.c.api.detail(campaign)
        message = None
        if campaign.sample_message_id is not None:
            message = await spool.message(campaign.sample_message_id)
        tallies = await spool.read(lambda tx: tx.tallies(campaign_id))
        return await self.c.page(
            request,
            "campaign.html",
            visitor,
            campaign=campaign,
            detail=detail,
            now=self.c.clock(),
            since=views.since(campaign),
            ratio=views.size_ratio(campaign),
            approvals=views.pending_approvals(await spool.events(campaign_id)),
            two_person_above=self.c.api.settings.two_person_release_above,
            recipients=await spool.recipients(campaign_id=campaign_id, limit=SAMPLE_RECIPIENTS),
            segments=views.segment_breakdown(tallies),
            loaded_segments=[s.name for s in await spool.segments()],
            message=message,
            **(await _message_views(message)),
            pairs=views.pairs,
        )

    async def message_frame(self, request: web.Request) -> web.StreamResponse:
        """GET /console/messages/{id}/render: the message made inert, for the sandboxed frame."""
        message = await self._message(request)
        if message.retired_at is not None:
            document = text_document("(this message's body was retired: spool.retention)")
        else:
            document = await asyncio.to_thread(frame_document, message.content)
        headers = {"Content-Security-Policy": FRAME_CSP, "X-Frame-Options": "SAMEORIGIN"}
        return web.Response(text=document, content_type="text/html", headers=headers)

    async def message_raw(self, request: web.Request) -> web.StreamResponse:
        """GET /console/messages/{id}/raw: the message's source as plain text."""
        message = await self._message(request)
        if message.retired_at is not None:
            raise Problem(410, f"the body of message {message.id} was retired (spool.retention)")
        return web.Response(
            text=message.content.decode("utf-8", "replace"),
            content_type="text/plain",
            headers={
                "Content-Security-Policy": RAW_CSP,
                "Content-Disposition": f'inline; filename="{message.id}.eml"',
            },
        )

    async def _message(self, request: web.Request) -> StoredMessage:
        await self.c.visitor(request)
        message_id = plausible_id(request.match_info["id"], "message")
        return found(await self.c.spool.message(message_id), "message", message_id)

    async def audit(self, request: web.Request) -> web.StreamResponse:
        """GET /console/audit?cursor=: every decision and refusal, newest first."""
        visitor = await self.c.visitor(request)
        query = PageQuery.of(request, self.c.api.settings.page_size)
        rows = await self.c.spool.audit_log(limit=query.fetch, before=query.number())
        items = rows[: query.limit]
        more = len(rows) > query.limit
        return await self.c.page(
            request,
            "audit.html",
            visitor,
            entries=items,
            next_cursor=encode_cursor(items[-1].id) if more else None,
            timestamp=timestamp,
            pairs=views.pairs,
        )

    async def policy_set(self, request: web.Request) -> web.StreamResponse:
        """GET /console/policies: the policy set in force, version and rules."""
        visitor = await self.c.visitor(request)
        policies = self.c.policies()
        rules = [
            {
                "id": active.id,
                "kind": active.rule.kind,
                "mode": active.mode,
                "action": active.action,
                "when": views.pairs(active.rule.when.model_dump(exclude_defaults=True)),
                "description": active.rule.description,
                "source": active.source,
            }
            for active in policies.rules
        ]
        return await self.c.page(request, "policies.html", visitor, policies=policies, rules=rules)


async def _message_views(message: StoredMessage | None) -> dict[str, Any]:
    """Return the sample message's decoded text, links and the start of its raw source."""
    if message is None or message.retired_at is not None:
        return {"document": None, "raw_head": "", "raw_cut": False}
    document = await asyncio.to_thread(decode, message.content)
    head = message.content[:RAW_SHOWN].decode("utf-8", "replace")
    return {"document": document, "raw_head": head, "raw_cut": len(message.content) > RAW_SHOWN}
