"""HTTP send ingress: SendGrid's v3 `POST /v3/mail/send` on a listener of its own.

Owns the HTTP conversation only: who may send (an API key is a bearer token with the
`submitter` or `admin` role; its name is the tenant, the campaigns' `client`), failed
keys limited per client address, the request's size and time limits, and mapping each
outcome to SendGrid's answers: `202` with an empty body and `X-Message-Id` only after
the durable commit of every personalization of the request (all or nothing), `400` with
`{"errors": [{"message", "field", "help"}]}` naming the wrong field, `401`/`403` for the
key, `503` when the spool cannot commit (the client retries). What a request may say
is `esp_request`'s, the messages it becomes `esp_mail`'s; campaigns and storage arrive
through the injected `admit_all`, keys through the injected `authenticate`.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import format_datetime

import structlog
from aiohttp import web

from gateway.errors import CampaignRejected, MessageRefused, SpoolError
from gateway.failures import FailedAttempts
from gateway.ingress.esp_mail import Built, build
from gateway.ingress.esp_request import EspError, RequestInvalid, parse
from gateway.log import SERVER_LOG
from gateway.metrics import Metrics
from gateway.model import Admission, Inbound, Role
from gateway.settings import EspSettings, split_hostport

log = structlog.get_logger(__name__)

PATH = "/v3/mail/send"
SENDERS = frozenset({Role.SUBMITTER, Role.ADMIN})  # roles whose tokens are API keys
UNAUTHORIZED = "The provided authorization grant is invalid, expired, or revoked"  # SendGrid's
RETRY_AFTER_SPOOL = "5"  # seconds a client is asked to wait after a failed commit


@dataclass(frozen=True, slots=True)
class ApiKey:
    """Who holds an API key: the token's name (the tenant) and its roles."""

    name: str
    roles: frozenset[Role]


AdmitAll = Callable[[Sequence[Inbound]], Awaitable[list[Admission]]]
Authenticate = Callable[[str], Awaitable[ApiKey | None]]
# (TCP peer, X-Forwarded-For) -> the client's address, as the ops API reads it.
ClientOf = Callable[[str | None, str | None], str]


def peer_only(peer: str | None, _forwarded_for: str | None) -> str:
    """Take the TCP peer as the client (no proxy is trusted)."""
    return peer or "unknown"


class Refusal(Exception):
    """An answer other than 202, in SendGrid's error shape."""

    def __init__(
        self, status: int, errors: list[EspError], headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(errors[0].message if errors else str(status))
        self.status = status
        self.errors = errors
        self.headers = headers or {}

    def response(self) -> web.Response:
        """Render as SendGrid renders errors."""
        body = {"errors": [e.dump() for e in self.errors]}
        return web.json_response(body, status=self.status, headers=self.headers)


def refusal(status: int, message: str, field: str | None = None, **headers: str) -> Refusal:
    """Return the refusal of one error."""
    return Refusal(status, [EspError(message, field)], headers)


class EspIngress:
    """The send API's handler; `app()` builds its aiohttp application."""

    def __init__(
        self,
        settings: EspSettings,
        *,
        key_header: str,
        admit_all: AdmitAll,
        authenticate: Authenticate,
        metrics: Metrics,
        failures: FailedAttempts,
        hostname: str,
        client_of: ClientOf = peer_only,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._settings = settings
        self._key_header = key_header
        self._admit_all = admit_all
        self._authenticate = authenticate
        self._metrics = metrics
        self._failures = failures
        self._hostname = hostname
        self._client_of = client_of
        self._clock = clock

    def app(self) -> web.Application:
        """Build the application: one route, SendGrid-shaped errors, bounded requests."""
        limits = {
            "logger": SERVER_LOG,
            "keepalive_timeout": self._settings.header_timeout,
            "max_line_size": self._settings.max_line_size,
            "max_field_size": self._settings.max_field_size,
            "max_headers": self._settings.max_headers,
        }
        app = web.Application(
            client_max_size=self._settings.max_body_size,
            middlewares=[_errors_middleware],
            handler_args=limits,
        )
        app.router.add_post(PATH, self.mail_send)
        return app

    async def mail_send(self, request: web.Request) -> web.Response:
        """Admit a v3 mail send: every personalization durable, then 202."""
        key = await self._caller(request)
        started = time.perf_counter()
        raw = await _body(request, self._settings)
        # Decoding, validating and building a message per personalization is CPU work
        # (about a millisecond a message): off the event loop (STYLE.md rule 5).
        built = await asyncio.to_thread(self._messages, raw, self._clock())
        trace = self._trace(request)
        window = self._settings.resend_window
        resends = _resend_keys(key.name, raw, len(built)) if window else [None] * len(built)
        inbounds = [
            Inbound(
                ingress="http",
                client=key.name,
                mail_from=message.mail_from,
                rcpt_tos=message.rcpt_tos,
                content=message.content,
                trace=trace,
                subject=message.subject if message.key is None else None,
                resend_key=resend,
                resend_window=window or None,
            )
            for message, resend in zip(built, resends, strict=True)
        ]
        try:
            admissions = await self._admit(key, inbounds, built)
        finally:
            self._metrics.ingest_duration.observe(time.perf_counter() - started)
        new = [a for a in admissions if not a.resent]
        self._metrics.messages_received.labels(ingress="http").inc(len(new))
        self._metrics.recipients_received.inc(
            sum(len(i.rcpt_tos) for i, a in zip(inbounds, admissions, strict=True) if not a.resent)
        )
        log.info(
            "esp_request_accepted",
            client=key.name,
            messages=len(admissions),
            resent=len(admissions) - len(new),  # a client's retry: stored the first time
            recipients=sum(len(i.rcpt_tos) for i in inbounds),
            held=sum(a.held for a in admissions),
            first=admissions[0].message_id,
        )
        return web.Response(status=202, headers={"X-Message-Id": admissions[0].message_id})

    def _messages(self, raw: bytes, now: float) -> list[Built]:
        """Decode, validate and build the request's messages; raise what refuses it."""
        return build(
            parse(
                _json(raw),
                max_personalizations=self._settings.max_personalizations,
                max_recipients=self._settings.max_recipients,
                now=now,
            ),
            campaign_from=self._settings.campaign_from,
            key_header=self._key_header,
        )

    async def _caller(self, request: web.Request) -> ApiKey:
        """Return the key's holder; 401 without a valid key, 403 without the role, 429."""
        client = self._client_of(request.remote, request.headers.get("X-Forwarded-For"))
        wait = self._failures.retry_after(client)
        if wait is not None:
            raise refusal(
                429, f"Too many requests with bad API keys; retry in {wait} s.", **_retry(wait)
            )
        scheme, _, secret = request.headers.get("Authorization", "").partition(" ")
        key = await self._authenticate(secret) if scheme.lower() == "bearer" else None
        if key is None:
            self._failures.failed(client)
            log.warning("esp_key_refused", peer=client)
            raise refusal(401, UNAUTHORIZED)
        if not key.roles & SENDERS:
            log.warning("esp_key_forbidden", client=key.name)
            raise refusal(403, "access forbidden: the API key may not send mail (role submitter)")
        return key

    async def _admit(
        self, key: ApiKey, inbounds: list[Inbound], built: list[Built]
    ) -> list[Admission]:
        """Admit the request's messages in one transaction; refusals name the field."""
        try:
            return await self._admit_all(inbounds)
        except MessageRefused as exc:
            index = exc.index or 0
            field = built[index].fields.get(exc.header.lower())
            where = field or f"personalizations.{index}.headers.{exc.header}"
            log.warning("esp_message_refused", client=key.name, field=where, reason=exc.reason)
            raise refusal(400, f"The value {exc.reason}.", where) from None
        except CampaignRejected as exc:
            index = next((n for n, b in enumerate(built) if b.key == exc.key), 0)
            field = built[index].fields.get(self._key_header.lower())
            log.warning("esp_campaign_rejected", client=key.name, campaign=exc.campaign_id)
            raise refusal(
                400,
                f"Campaign {exc.key} was rejected by an operator; its mail is not accepted.",
                field,
            ) from None
        except SpoolError as exc:
            log.exception("esp_spool_failed", client=key.name, error=str(exc))
            raise refusal(
                503,
                "The gateway could not store the request; nothing of it was kept. Retry later.",
                **_retry(RETRY_AFTER_SPOOL),
            ) from None

    def _trace(self, request: web.Request) -> str:
        """Return the Received line of the request's messages."""
        stamp = format_datetime(datetime.fromtimestamp(self._clock(), UTC))
        peer = request.remote or "unknown"
        return f"Received: from [{peer}] by {self._hostname} (sendbrake) with HTTP; {stamp}"


def _retry(seconds: object) -> dict[str, str]:
    return {"Retry-After": str(seconds)}


async def _body(request: web.Request, limits: EspSettings) -> bytes:
    """Read the JSON body within the time and size limits."""
    if request.content_type != "application/json":
        raise refusal(400, "Content-Type should be application/json.")
    try:
        async with asyncio.timeout(limits.body_timeout):
            return await request.read()
    except TimeoutError:
        raise refusal(408, "The request body did not arrive in time.") from None
    except web.HTTPRequestEntityTooLarge:
        raise refusal(413, f"The request is larger than {limits.max_body_size} bytes.") from None


def _json(raw: bytes) -> object:
    """Decode the body's JSON (UTF-8, RFC 8259)."""
    try:
        return json.loads(raw)
    except ValueError:
        raise refusal(400, "The request body is not valid JSON.") from None
    except RecursionError:
        raise refusal(400, "The request body's JSON is nested too deeply.") from None


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@web.middleware
async def _errors_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Answer every error in SendGrid's shape, with the field where there is one."""
    try:
        return await handler(request)
    except Refusal as exc:
        return exc.response()
    except RequestInvalid as exc:
        return Refusal(400, exc.errors).response()
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        headers = {"Allow": exc.headers["Allow"]} if "Allow" in exc.headers else {}
        return Refusal(exc.status, [EspError(exc.reason, None)], headers).response()
    except Exception:
        log.exception("esp_handler_crashed", path=request.path)
        return refusal(500, "Internal error; see the gateway's log. Retry later.").response()


async def start_esp(ingress: EspIngress, listen: str) -> web.AppRunner:
    """Bind the send API's listener on the running loop; return its runner."""
    runner = web.AppRunner(ingress.app(), access_log=None)
    await runner.setup()
    host, port = split_hostport(listen)
    try:
        await web.TCPSite(runner, host, port).start()
    except BaseException:
        await runner.cleanup()
        raise
    return runner


def _resend_keys(client: str, raw: bytes, count: int) -> list[bytes | None]:
    """Key each of a request's messages by the request as received (client and bytes).

    A client retrying the request after a lost 202 sends the same bytes: its messages get
    the same keys, and the admission answers them with the messages stored the first time.
    """
    request = hashlib.blake2b(client.encode("utf-8", "surrogateescape") + b"\0" + raw).digest()
    return [
        hashlib.blake2b(request + index.to_bytes(4, "big"), digest_size=16).digest()
        for index in range(count)
    ]
