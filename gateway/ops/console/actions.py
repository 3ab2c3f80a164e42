"""The console's decisions: hold, release (all, some, a segment) and reject a campaign.

Each is two steps, so that the wrong click is hard: the campaign page's form posts the
reason (and a release's scope) and gets a confirmation page saying what will happen and
to how many recipients, and whether a second operator must agree; its button posts
again with `confirm=yes`. Both steps need the session's CSRF token and the `operate`
role (a refusal is audited, as the API's). The decision itself is the JSON API's own
function (`OpsApi.hold_campaign`, `release_campaign`, `reject_campaign`) called with the
same principal, so the audit entries and log lines are the same whichever surface asked.
"""

from __future__ import annotations

import re
from typing import Any

from aiohttp import web
from multidict import MultiDictProxy
from pydantic import ValidationError

from gateway.ops import schemas as s
from gateway.ops.api import HOLD, REJECT, RELEASE, needs_two_operators, release_count
from gateway.ops.bodies import ReasonBody, ReleaseBody
from gateway.ops.console import views
from gateway.ops.console.app import Console, FormValue, Visitor, text
from gateway.ops.exchange import plausible_id
from gateway.ops.problems import Problem, found, invalid
from gateway.states import CampaignState

ACTIONS = {"hold": HOLD, "release": RELEASE, "reject": REJECT}
_DIGITS = re.compile(r"[0-9]{1,10}")


class Actions:
    """Handlers of the console's POST decisions."""

    def __init__(self, console: Console) -> None:
        self.c = console

    async def decide(self, request: web.Request) -> web.StreamResponse:
        """POST /console/campaigns/{id}/{hold|release|reject}: confirm, then decide."""
        visitor, form = await self.c.poster(request)
        action = request.match_info["action"]
        campaign_id = plausible_id(request.match_info["id"], "campaign")
        caller = await self.c.gate.allow(
            request, visitor.principal, "operate", ACTIONS[action], campaign_id
        )
        back = f"/console/campaigns/{campaign_id}"
        try:
            body = _body(action, form)
        except ValidationError as exc:
            wrong = "; ".join(f"{e['field']}: {e['detail']}" for e in invalid(exc).errors)
            return _back(visitor, back, "error", f"Nothing was done: {wrong}.")
        if text(form, "confirm") != "yes":
            return await self._confirm(request, visitor, campaign_id, action, body)
        try:
            if isinstance(body, ReleaseBody):
                answer: s.CampaignDetail | s.PendingRelease = await self.c.api.release_campaign(
                    caller, campaign_id, body
                )
            elif action == "hold":
                answer = await self.c.api.hold_campaign(caller, campaign_id, body)
            else:
                answer = await self.c.api.reject_campaign(caller, campaign_id, body)
        except Problem as problem:
            if problem.status == 404:
                raise
            return _back(visitor, back, "error", f"Nothing was done: {problem.detail}.")
        return _back(visitor, back, "done", _outcome(action, answer, caller.name))

    async def _confirm(
        self,
        request: web.Request,
        visitor: Visitor,
        campaign_id: str,
        action: str,
        body: ReasonBody,
    ) -> web.StreamResponse:
        """Say what the decision will do, before it is made."""
        spool = self.c.spool
        campaign = found(await spool.campaign(campaign_id), "campaign", campaign_id)
        context: dict[str, Any] = {"action": action, "campaign": campaign, "body": body}
        if isinstance(body, ReleaseBody):
            count = release_count(campaign, body.max_recipients)
            approvals = views.pending_approvals(await spool.events(campaign_id))
            context |= {
                "count": count,
                "two_operators": needs_two_operators(count, self.c.api.settings),
                "approvals": approvals,
                "approved_by_me": any(a.actor == visitor.principal.name for a in approvals),
                "held": campaign.state is CampaignState.HELD,
                "above": self.c.api.settings.two_person_release_above,
            }
        return await self.c.page(request, "confirm.html", visitor, **context)


def _body(action: str, form: MultiDictProxy[FormValue]) -> ReasonBody:
    """Read the form as the API's request body; raise ValidationError as the API would."""
    data: dict[str, Any] = {"reason": (text(form, "reason") or "").replace("\r\n", "\n")}
    if action != "release":
        return ReasonBody.model_validate(data)
    scope = text(form, "scope") or "all"
    if scope == "count":
        raw = (text(form, "max_recipients") or "").strip()
        # A JSON integer for the API's strict field; anything else fails its validation.
        data["max_recipients"] = int(raw) if _DIGITS.fullmatch(raw) else raw
    elif scope == "segment":
        data["only_segment"] = text(form, "only_segment") or ""
    return ReleaseBody.model_validate(data)


def _outcome(action: str, answer: s.CampaignDetail | s.PendingRelease, actor: str) -> str:
    """Say what the decision did, from the campaign as it is after it."""
    if isinstance(answer, s.PendingRelease):
        return (
            f"Your approval is recorded; nothing was sent. {answer.detail.capitalize()}"
            f" (approved so far: {', '.join(answer.approvals)})."
        )
    step = answer.timeline[-1] if answer.timeline else None
    moved = (step.model_extra or {}).get("recipients") if step and step.actor == actor else None
    if action == "hold":
        return f"Held {answer.key}: {answer.counters.held} recipients wait for a decision."
    if action == "reject":
        return f"Rejected {answer.key}: {answer.counters.discarded} recipients discarded."
    if step is None or step.event not in {"released", "partially_released"}:
        return f"{answer.key} was not held: nothing was released."
    return f"Released {moved} recipients of {answer.key}; {answer.counters.held} still held."


def _back(visitor: Visitor, location: str, kind: str, message: str) -> web.Response:
    """Go back to the campaign page, which shows `message` once."""
    visitor.session.notice = (kind, message)
    return web.Response(status=303, headers={"Location": location})
