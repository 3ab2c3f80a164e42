"""The route table of the HTTP surface: one row per route, grouped by the handlers' owner.

Each row names the handler (an attribute of its owner), the summary, query parameters,
request model, answer models and problem statuses. The application registers exactly
these rows and `openapi.document()` describes them. Must not hold handlers' logic.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Literal

from pydantic import BaseModel

from gateway.model import ForwardState
from gateway.ops import schemas as s
from gateway.ops.bodies import (
    MAX_NAME,
    MAX_REASON,
    ManifestBody,
    PreflightBody,
    ReasonBody,
    ReleaseBody,
    SignoffBody,
)
from gateway.ops.openapi import BASE, Param, Route
from gateway.states import CampaignState, RecipientState

PAGE = (
    Param(
        "limit",
        "Items per page (default ops.page_size).",
        {"type": "integer", "minimum": 1, "maximum": 1000},
    ),
    Param("cursor", "The `next` value of the previous page."),
)
CAMPAIGN_STATE = Param(
    "state", "Only campaigns in this state.", {"enum": [v.value for v in CampaignState]}
)
RECIPIENT_STATE = Param(
    "state", "Only recipients in this state.", {"enum": [v.value for v in RecipientState]}
)
UPLOAD_EXAMPLES = {
    "text/plain": "ada@example.org\nbob@example.org\n",
    "text/csv": "email,name\nada@example.org,Ada\n",
    "application/csv": "email,name\nada@example.org,Ada\n",
}


def _read(
    path: str,
    handler: str,
    summary: str,
    answer: type[BaseModel] | str,
    *,
    query: tuple[Param, ...] = (),
    problems: tuple[int, ...] = (),
) -> Route:
    """Return a GET under /api/v1 for a token that may read."""
    return Route("GET", BASE + path, handler, summary, {200: answer}, query, problems=problems)


def _decision(
    step: str,
    summary: str,
    *,
    handler: str | None = None,
    body: type[BaseModel] = ReasonBody,
    more: Mapping[int, type[BaseModel]] | None = None,
    problems: tuple[int, ...] = (404, 409),
) -> Route:
    """Return a POST /campaigns/{id}/<step>; it answers the campaign as it is after."""
    answers: dict[int, type[BaseModel] | str] = {200: s.CampaignDetail, **(more or {})}
    path = f"{BASE}/campaigns/{{id}}/{step}"
    return Route("POST", path, handler or step, summary, answers, body=body, problems=problems)


def _change(
    method: Literal["POST", "PUT"],
    path: str,
    handler: str,
    summary: str,
    answer: type[BaseModel],
    *,
    body: type[BaseModel] = ReasonBody,
) -> Route:
    """Return a mutating call under /api/v1 with a JSON body: its reason (and more)."""
    return Route(method, BASE + path, handler, summary, {200: answer}, body=body)


def _probe(
    path: str, handler: str, summary: str, answers: Mapping[int, type[BaseModel] | str]
) -> Route:
    """Return a call without a token: health, metrics, this document."""
    return Route("GET", path, handler, summary, answers, auth=False)


PROBES = (
    _probe("/healthz", "healthz", "Liveness", {200: s.Health}),
    _probe("/readyz", "readyz", "Readiness (the spool answers)", {200: s.Health, 503: s.Unready}),
    _probe("/metrics", "metrics", "Prometheus metrics", {200: "text/plain"}),
    # The document itself has no schema here: OpenAPI's own is not a component of it.
    _probe(f"{BASE}/openapi.json", "openapi", "This document", {200: "application/json"}),
)

CAMPAIGNS = (
    _read(
        "/campaigns",
        "list_campaigns",
        "List campaigns, newest first",
        s.CampaignList,
        query=(CAMPAIGN_STATE, *PAGE),
        problems=(422,),
    ),
    _read(
        "/campaigns/{id}",
        "show_campaign",
        "A campaign with findings, sample message and timeline",
        s.CampaignDetail,
        problems=(404,),
    ),
    _read(
        "/campaigns/{id}/recipients",
        "list_recipients",
        "A campaign's recipients",
        s.RecipientList,
        query=(RECIPIENT_STATE, *PAGE),
        problems=(404, 422),
    ),
    _change(
        "PUT",
        "/campaigns/{key:.+}",
        "put_manifest",
        "Register a campaign's declaration (manifest); it wins over headers",
        s.Manifest,
        body=ManifestBody,
    ),
    _decision("hold", "Hold a campaign (kill switch)"),
    _decision(
        "release",
        "Release held recipients (all, max_recipients or only_segment);"
        " large releases need two operators",
        body=ReleaseBody,
        more={202: s.PendingRelease},
    ),
    # Rejecting a rejected campaign changes nothing and answers 200: no 409.
    _decision("reject", "Reject: discard held mail, refuse later mail", problems=(404,)),
    _read(
        "/messages/{id}",
        "show_message",
        "A message: headers, decoded preview, recipients",
        s.Message,
        problems=(404,),
    ),
    _read(
        "/messages/{id}/raw",
        "raw_message",
        "The message as it will be relayed (410 once spool.retention retired its body)",
        "message/rfc822",
        problems=(404, 410),
    ),
    _read("/relay", "relay_status", "Whether the relay is paused", s.RelayStatus),
    _change(
        "POST",
        "/relay/pause",
        "pause",
        "Pause all relaying (ingest keeps accepting)",
        s.RelayChange,
    ),
    _change("POST", "/relay/resume", "resume", "Resume relaying", s.RelayChange),
    _read(
        "/audit",
        "audit",
        "The audit log, newest first",
        s.AuditList,
        query=PAGE,
        problems=(422,),
    ),
)

POLICIES = (
    _decision(
        "signoffs",
        "Register a protected identity's sign-off (its own token, or an admin on its"
        " behalf); releases a campaign that only waited for sign-offs",
        handler="signoff",
        body=SignoffBody,
    ),
    Route(
        "POST",
        f"{BASE}/policies/reload",
        "reload_policies",
        "Reload the policy files; an invalid set keeps the old one (422)",
        {200: s.PolicyReload},
        body=ReasonBody,
        problem_shapes={422: s.InvalidPolicies},
    ),
)

PREFLIGHT = (
    Route(
        "POST",
        f"{BASE}/preflight",
        "preflight",
        "Every finding a send of this message would raise; stores and sends nothing",
        {200: s.Preflight},
        body=PreflightBody,
        any_token=True,
    ),
)

SEGMENTS = (
    _read("/segments", "list_segments", "Segments: name, size, source, loaded at", s.SegmentList),
    Route(
        "PUT",
        f"{BASE}/segments/{{name}}",
        "upload",
        "Replace a segment with a streamed list (atomic)",
        {200: s.SegmentLoad},
        query=(
            Param(
                "reason",
                "Why; written to the audit log.",
                {"type": "string", "minLength": 1, "maxLength": MAX_REASON},
                required=True,
            ),
            Param(
                "column",
                "CSV column with the address (default: a column named email).",
                {"type": "string", "minLength": 1, "maxLength": MAX_NAME},
            ),
        ),
        upload=UPLOAD_EXAMPLES,
    ),
)

FORWARD_STATE = Param(
    "state", "Only batches in this state.", {"enum": [v.value for v in ForwardState]}
)

WEBHOOKS = (
    # No token: SendGrid signs the request instead (docs/feedback.md); the JSON body is
    # SendGrid's array of events, answered 200 only once it is durable.
    Route(
        "POST",
        "/webhooks/sendgrid",
        "sendgrid",
        "SendGrid's Signed Event Webhook: count the events, forward them to the platform",
        {200: s.WebhookReceipt},
        problems=(400, 401, 413),
        auth=False,
    ),
    _read(
        "/webhooks/deliveries",
        "list_deliveries",
        "Event batches forwarded to the platform's webhook URL, newest first",
        s.WebhookDeliveryList,
        query=(FORWARD_STATE, *PAGE),
        problems=(422,),
    ),
    Route(
        "POST",
        f"{BASE}/webhooks/deliveries/{{id}}/retry",
        "retry_delivery",
        "Forward a dead letter again (its maximum age counted from now)",
        {200: s.WebhookDelivery},
        body=ReasonBody,
        problems=(404, 409),
    ),
)
