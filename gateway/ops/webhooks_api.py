"""Provider event webhooks on the ops listener, and the forward outbox seen by operators.

`POST /webhooks/sendgrid` takes SendGrid's signed event batches: the signature and its
timestamp are checked first (401 for a bad, missing or stale one: nothing stored), the
body is parsed (400 naming what is wrong), and the batch is recorded and queued to be
forwarded in one spool commit before the 200. `GET /api/v1/webhooks/deliveries` lists
the outbox; a dead letter is queued again with `POST …/{id}/retry` (an operator, with a
reason, audited). Thin handlers: verifying and parsing are `gateway.feedback.sendgrid`'s,
recording is the intake's.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import KW_ONLY, dataclass

import structlog
from aiohttp import web

from gateway.errors import SpoolError
from gateway.feedback.intake import Intake
from gateway.feedback.sendgrid import (
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    BatchError,
    SignatureError,
    Verifier,
    parse_batch,
)
from gateway.model import ForwardState
from gateway.ops import routes
from gateway.ops import schemas as s
from gateway.ops.auth import Gate
from gateway.ops.bodies import ReasonBody
from gateway.ops.exchange import BODY_TIMEOUT, PageQuery, query_enum, read_body, respond
from gateway.ops.openapi import Handlers
from gateway.ops.problems import Problem, found
from gateway.settings import SendgridWebhookSettings
from gateway.spool.base import Spool

log = structlog.get_logger(__name__)
RETRY = "retry webhook delivery"
_CHUNK = 64 * 1024


@dataclass(eq=False)  # handlers are bound methods: keep identity hashing
class WebhooksApi(Handlers):
    """Handlers of the webhook and of the outbox's routes."""

    spool: Spool
    gate: Gate
    intake: Intake
    verifier: Verifier | None  # None: no public key configured, every request is refused
    settings: SendgridWebhookSettings
    page_size: int
    _: KW_ONLY
    clock: Callable[[], float] = time.time
    wake_forwarder: Callable[[], None] = lambda: None

    ROUTES = routes.WEBHOOKS

    async def sendgrid(self, request: web.Request) -> web.Response:
        """POST /webhooks/sendgrid: verify, parse, record and queue; 200 after the commit."""
        body = await self._body(request)
        signature = request.headers.get(SIGNATURE_HEADER)
        stamp = request.headers.get(TIMESTAMP_HEADER)
        try:
            if self.verifier is None:  # fail closed: nothing can be verified
                detail = "no key to verify with: set webhooks.sendgrid.public_key"
            else:
                self.verifier.verify(body, signature, stamp)
                detail = ""
        except SignatureError as exc:
            detail = str(exc)
        if detail:
            log.warning("webhook_signature_refused", source="sendgrid", reason=detail)
            raise Problem(401, detail, slug="invalid-signature")
        try:
            events = parse_batch(body, casefold_local=self.intake.casefold_local)
        except BatchError as exc:
            errors = [{"field": exc.field, "detail": exc.detail}]
            raise Problem(
                400, f"not a batch of events: {exc}", slug="invalid-events", errors=errors
            ) from None
        try:
            outcome = await self.intake.sendgrid(events, body)
        except SpoolError as exc:
            log.exception("webhook_spool_failed", error=str(exc))
            detail = "the spool could not record the events; send them again"
            raise Problem(
                503, detail, slug="spool-unavailable", headers={"Retry-After": "30"}
            ) from None
        return respond(
            s.WebhookReceipt(
                received=outcome.received,
                new=outcome.new,
                unattributed=outcome.unattributed,
                forwarding=outcome.forward_id is not None,
            )
        )

    async def _body(self, request: web.Request) -> bytes:
        """Read the raw body (the signature covers its bytes), at most max_body_size."""
        limit = self.settings.max_body_size
        too_large = Problem(413, f"the body is larger than {limit} bytes", slug="too-large")
        if request.content_length is not None and request.content_length > limit:
            raise too_large
        chunks, size = [], 0
        try:
            async with asyncio.timeout(request.app.get(BODY_TIMEOUT, 30.0)):
                while chunk := await request.content.read(_CHUNK):
                    size += len(chunk)
                    if size > limit:
                        raise too_large
                    chunks.append(chunk)
        except TimeoutError:
            raise Problem(408, "the body did not arrive in time", slug="body-timeout") from None
        return b"".join(chunks)

    async def list_deliveries(self, request: web.Request) -> web.Response:
        """GET /webhooks/deliveries?state=&limit=&cursor=."""
        await self.gate.caller(request, "read", "list webhook deliveries", "webhooks")
        state = query_enum(request, ForwardState, "state")
        query = PageQuery.of(request, self.page_size)
        rows = await self.spool.forwards(state=state, limit=query.fetch, before=query.number())
        return respond(query.page(s.WebhookDeliveryList, rows))

    async def retry_delivery(self, request: web.Request) -> web.Response:
        """POST /webhooks/deliveries/{id}/retry: queue a dead letter again, audited."""
        target = request.match_info["id"]
        caller = await self.gate.caller(request, "operate", RETRY, target)
        body = await read_body(request, ReasonBody)
        forward_id = (
            int(target) if target.isascii() and target.isdigit() and len(target) < 19 else -1
        )
        before = found(await self.spool.forward(forward_id), "webhook delivery", target)
        audit = self.gate.entry(caller.name, RETRY, target, body.reason, "ok", events=before.events)
        retried = await self.spool.retry_forward(forward_id, self.clock(), audit=audit)
        if retried is None:
            await self.gate.audit(
                caller.name, RETRY, target, body.reason, "refused", state=str(before.state)
            )
            detail = f"webhook delivery {target} is {before.state}, not dead: nothing to retry"
            raise Problem(409, detail, slug="conflict")
        log.info(
            "webhook_forward_retried", forward=retried.id, actor=caller.name, reason=body.reason
        )
        self.wake_forwarder()
        return respond(s.WebhookDelivery.model_validate(retried))
