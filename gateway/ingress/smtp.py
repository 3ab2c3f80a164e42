"""SMTP ingress: an aiosmtpd server on the service's own event loop.

Owns the SMTP conversation only: who may submit (STARTTLS, AUTH, allowed networks), what
a session may carry (RFC 5321 mailboxes, sane greetings, CRLF-only DATA without NUL; see
docs/security.md), how many sessions may be open and for how long, envelope limits, and
mapping the admission's outcome to a precise reply. The 250 is returned from
`handle_DATA` after `admit` returns, which is after the spool's durable commit (STYLE.md
rule 1). It knows nothing of campaigns or storage; both arrive through the injected
`admit` callable, and users through the injected authenticator.
"""

from __future__ import annotations

import asyncio
import functools
import ipaddress
import re
import socket
import ssl
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from email.utils import format_datetime
from typing import Any, AnyStr

import structlog
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session

from gateway.errors import CampaignRejected, ConfigError, MessageRefused, SpoolError
from gateway.ingress.auth import Authenticates, sender_allowed
from gateway.ingress.data import REPLY_TOO_BIG, check_data, receive_data, unstuff
from gateway.ingress.sessions import REFUSALS, SessionCounter, Sessions
from gateway.mail.addresses import mailbox_problem
from gateway.metrics import Metrics
from gateway.model import Admission, Inbound, SmtpUser
from gateway.settings import SmtpSettings, is_loopback, split_hostport

log = structlog.get_logger(__name__)

Admit = Callable[[Inbound], Awaitable[Admission]]
Network = ipaddress.IPv4Network | ipaddress.IPv6Network

REPLY_STARTTLS_FIRST = "530 5.7.0 Must issue a STARTTLS command first"
# aiosmtpd's own replies that lack enhanced status codes, and ours instead.
_AIOSMTPD_REPLIES = {
    "552 Error: Too much mail data": REPLY_TOO_BIG,
    "552 Error: message size exceeds fixed maximum message size": REPLY_TOO_BIG,
    "530 Must issue a STARTTLS command first": REPLY_STARTTLS_FIRST,
}
REPLY_TOO_MANY = "452 4.5.3 Too many recipients"
REPLY_NOT_ALLOWED = "554 5.7.1 Client host not allowed to relay through this gateway"
REPLY_SPOOL_FAILED = "451 4.3.0 Temporary spool failure, please try again later"
REPLY_AUTH_REQUIRED = "530 5.7.0 Authentication required"

# Where MAIL's or RCPT's path ends: <[source route:]mailbox>, quoted strings kept whole, or
# a bare mailbox up to the first blank. What the mailbox may be is `mailbox_problem`'s.
_PATH = re.compile(r'<(?:@[^:<>"]*:)?((?:"(?:[^"\\]|\\.)*"|[^<>"])*)>')
_BARE_PATH = re.compile(r'(?:"(?:[^"\\]|\\.)*"|[^\s<>"])+')
_COMMENTS = re.compile(r"[ \t]*(?:\([^()]*\)[ \t]*)*")  # after the path (aiosmtpd allowed them)
NULL_PATH = "<>"  # MAIL FROM:<>, a bounce's sender, as the envelope holds it until DATA
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_NOT_TRACE_TEXT = re.compile(r"[^\x21-\x7e]|[()\\]")  # what a Received line must not copy
JUNK_COMMANDS = ("NOOP", "RSET", "VRFY", "HELP", "EXPN")  # they move no mail


class _Server(SMTP):
    """aiosmtpd's server with enhanced status codes, AUTH checked off the loop, a faster DATA."""

    def __init__(
        self,
        handler: SmtpHandler,
        *,
        settings: SmtpSettings,
        sessions: SessionCounter,
        metrics: Metrics,
        **kwargs: Any,
    ) -> None:
        super().__init__(handler, **kwargs)
        self.settings = settings
        self._sessions = sessions
        self._metrics = metrics
        self._counted: str | None = None  # the peer this session counts against
        # A session kept open by commands that move no mail (a NOOP a minute never meets
        # the idle timeout) is cut after smtp.junk_command_limit of them, as Postfix does.
        self._junk = 0
        for command in JUNK_COMMANDS:
            self._smtp_methods[command] = self._counted_as_junk(self._smtp_methods[command])

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        first = self.transport is None  # STARTTLS makes the connection again, over TLS
        super().connection_made(transport)
        if not first:
            return
        peer = transport.get_extra_info("peername")
        host = str(peer[0]) if isinstance(peer, tuple) else "unknown"
        handler: SmtpHandler = self.event_handler
        refusal = self._sessions.open(host, exempt=handler.client_network(peer) is not None)
        if refusal is None:
            self._counted = host
            return
        log.warning("smtp_session_refused", peer=host, reason=refusal)
        self._metrics.smtp_sessions_closed.labels(reason=refusal).inc()
        if self._handler_coroutine is not None:
            self._handler_coroutine.cancel()  # not started yet: no 220 greeting
        if isinstance(transport, asyncio.WriteTransport):
            transport.write(refusal_reply(self.hostname, refusal))
        transport.close()

    def connection_lost(self, error: Exception | None) -> None:
        if self._counted is not None:
            self._sessions.close(self._counted)
            self._counted = None
        super().connection_lost(error)

    def _timeout_cb(self) -> None:
        """Say why before closing (RFC 5321 4.5.3.2: 421), which aiosmtpd does not."""
        if self.transport is not None and not self.transport.is_closing():
            log.info("smtp_session_timeout", peer=self.session and _peer_host(self.session))
            self._metrics.smtp_sessions_closed.labels(reason="timeout").inc()
            self.transport.write(  # type: ignore[attr-defined]
                f"421 4.4.2 {self.hostname} Error: timeout exceeded\r\n".encode()
            )
        super()._timeout_cb()  # type: ignore[no-untyped-call]

    def _counted_as_junk(
        self, method: Callable[[str], Awaitable[None]]
    ) -> Callable[[str], Awaitable[None]]:
        @functools.wraps(method)  # HELP reads the command's syntax from it
        async def junk(arg: str) -> None:
            self._junk += 1
            if self._junk <= self.settings.junk_command_limit:
                await method(arg)
                return
            peer = self.session and _peer_host(self.session)
            log.warning("smtp_session_junk_commands", peer=peer, commands=self._junk - 1)
            self._metrics.smtp_sessions_closed.labels(reason="junk_commands").inc()
            await super(_Server, self).push(
                f"421 4.7.0 {self.hostname} Error: too many commands without mail; closing"
            )
            if self.transport is not None:
                self.transport.close()

        return junk

    async def push(self, status: AnyStr) -> None:
        if isinstance(status, str):
            await super().push(_AIOSMTPD_REPLIES.get(status, status))
        else:
            await super().push(status)

    def _getaddr(self, arg: str) -> tuple[str | None, str | None]:
        """Split MAIL's or RCPT's argument into the path's mailbox and the parameters.

        Only the structure is parsed here (a source route is dropped, RFC 5321 4.1.1.3);
        the mailbox is returned as sent, and the MAIL and RCPT hooks check it, so that
        each refusal says what is wrong. `<>` comes back as `NULL_PATH`.
        """
        if not arg:
            return "", ""
        end = arg.find(">")
        if arg[:1] == "<" and end > 1 and arg[1] != "@" and '"' not in arg[:end]:
            rest = arg[end + 1 :]  # <local@domain>, nearly every path, without a regex
            return arg[1:end], rest if "(" not in rest else _skip_comments(rest, 0)
        path = _PATH.match(arg) if arg.startswith("<") else _BARE_PATH.match(arg)
        if path is None:
            return None, None
        mailbox = path[1] if arg.startswith("<") else path[0]
        return mailbox or NULL_PATH, _skip_comments(arg, path.end())

    # AUTH: aiosmtpd parses PLAIN and LOGIN (base64, challenges, `*` aborts) and hands the
    # credentials to `_authenticate`, synchronously; checking a password hash there would
    # stall every session, so it only passes them on and `_verify` checks them, awaited.
    async def auth_PLAIN(self, _: Any, args: list[str]) -> AuthResult:
        return await self._verify(await super().auth_PLAIN(_, args))

    async def auth_LOGIN(self, _: Any, args: list[str]) -> AuthResult:
        return await self._verify(await super().auth_LOGIN(_, args))

    def _authenticate(self, mechanism: str, auth_data: Any) -> AuthResult:
        return AuthResult(success=True, handled=False, auth_data=auth_data)

    async def _verify(self, parsed: AuthResult) -> AuthResult:
        credentials = parsed.auth_data
        if not parsed.success or not isinstance(credentials, LoginPassword):
            return parsed  # aiosmtpd already answered (bad base64, an abort)
        handler: SmtpHandler = self.event_handler
        if self.session is None:  # AUTH always runs inside a session
            return AuthResult(success=False, handled=False)
        return await handler.authenticate(self.session, credentials)

    async def smtp_DATA(self, arg: str) -> None:
        """Run aiosmtpd's DATA command, reading the message in chunks rather than by line.

        aiosmtpd awaits its stream once per line, some 70 times for a 5 KB message, which
        was the largest part of the ingress's CPU time; this awaits once per line that
        ends in a dot, usually only the terminating one. Checks, replies, size and line
        limits and dot-unstuffing (RFC 5321 4.5.2) are aiosmtpd's. Content stays bytes
        (the server is built with decode_data=False).
        """
        if await self.check_helo_needed() or await self.check_auth_needed("DATA"):
            return
        if self.envelope is None or not self.envelope.rcpt_tos:
            await self.push("503 Error: need RCPT command")
            return
        if arg:
            await self.push("501 Syntax: DATA")
            return
        await self.push("354 End data with <CR><LF>.<CR><LF>")
        # One deadline for the whole message: a client dripping bytes cannot stretch it.
        self._reset_timeout(self.settings.data_timeout)
        try:
            received = await receive_data(self._reader, self.data_size_limit)
        except asyncio.CancelledError:  # the connection was lost during DATA
            self._writer.close()
            raise
        if received is None:
            return
        reply, data = check_data(
            *received,
            size_limit=self.data_size_limit,
            line_limit=self.line_length_limit,
            header_limit=self.settings.max_header_size,
            bare_newlines=self.settings.bare_newlines,
        )
        if reply is None:
            self.envelope.content = self.envelope.original_content = unstuff(data)
            # Admission has its own budgets; cutting the session inside it would have the
            # client send again what may be committed already (a duplicate).
            if self._timeout_handle is not None:
                self._timeout_handle.cancel()
            reply = await self._call_handler_hook("DATA")
            if reply.startswith("250"):
                self._junk = 0  # mail moved: the count starts again
        self._reset_timeout()  # the next command's time starts now
        await self.push(reply)
        self._set_post_data_state()  # type: ignore[no-untyped-call]


class SmtpHandler:
    """aiosmtpd hooks: each hook's return value is the reply."""

    def __init__(
        self,
        settings: SmtpSettings,
        admit: Admit,
        metrics: Metrics,
        hostname: str,
        authenticator: Authenticates | None = None,
    ) -> None:
        self._settings = settings
        self._admit = admit
        self._metrics = metrics
        self._hostname = hostname
        self._authenticator = authenticator
        self._auth_required = settings.auth_mode() == "required"
        self._networks = networks_of(settings)

    def client_network(self, peer: Any) -> str | None:
        """Return the allowed network the peer is in, or None when it may not relay."""
        return network_of(self._networks, peer)

    async def handle_EHLO(
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        hostname: str,
        responses: list[str],
    ) -> list[str]:
        if refusal := self._refuse_greeting(session, "EHLO", hostname):
            session.extended_smtp = False
            return [refusal]
        session.host_name = hostname
        # aiosmtpd lists "250-AUTH " even with every mechanism excluded (AUTH is off).
        offered = [line for line in responses[:-1] if line.strip() != "250-AUTH"]
        return [*offered, "250-PIPELINING", "250-ENHANCEDSTATUSCODES", responses[-1]]

    async def handle_HELO(
        self, server: SMTP, session: Session, envelope: Envelope, hostname: str
    ) -> str:
        if refusal := self._refuse_greeting(session, "HELO", hostname):
            return refusal
        session.host_name = hostname
        return f"250 {server.hostname}"

    def _refuse_greeting(self, session: Session, command: str, hostname: str) -> str | None:
        """Refuse a HELO/EHLO name with control characters; anything else is taken.

        MTAs are liberal here (the name is only ever a trace), but a CR or NUL has no
        place in one, and it would otherwise travel towards a header.
        """
        if not _CONTROL.search(hostname):
            return None
        session.host_name = None  # as if the client never greeted: MAIL needs a new one
        log.warning("smtp_greeting_refused", peer=_peer_host(session), name=hostname[:256])
        return f"501 5.5.4 Invalid {command} name: it contains a control character"

    async def authenticate(self, session: Session, credentials: LoginPassword) -> AuthResult:
        """Check AUTH credentials (after STARTTLS: aiosmtpd refuses AUTH before it)."""
        if self._authenticator is None:
            return AuthResult(success=False, handled=False)
        return await self._authenticator.authenticate(_peer_host(session), credentials)

    async def handle_MAIL(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        if address != NULL_PATH and (problem := _address_problem(address, envelope)):
            log.warning("smtp_sender_invalid", peer=_peer_host(session), problem=problem[1])
            return f"553 {problem[0] or '5.1.7'} Sender address {problem[1]}"
        user = session.auth_data if session.authenticated else None
        if isinstance(user, SmtpUser):
            if not sender_allowed(user, address):
                log.warning("smtp_sender_refused", user=user.name, sender=address[:256])
                shown = "" if address == NULL_PATH else address
                return f"554 5.7.1 Sender <{shown}> is not allowed for user {user.name}"
        elif self._auth_required:
            return REPLY_AUTH_REQUIRED
        elif self.client_network(session.peer) is None:
            log.warning("smtp_client_refused", peer=_peer_host(session))
            return REPLY_NOT_ALLOWED
        envelope.mail_from = address
        envelope.mail_options.extend(options)
        return "250 2.1.0 Sender OK"

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        if address == NULL_PATH:
            return "553 5.1.3 Recipient address <> is for senders only (bounces); not a mailbox"
        if problem := _address_problem(address, envelope):
            log.warning("smtp_recipient_invalid", peer=_peer_host(session), problem=problem[1])
            return f"553 {problem[0] or '5.1.3'} Recipient address {problem[1]}"
        if len(envelope.rcpt_tos) >= self._settings.max_recipients:
            return REPLY_TOO_MANY
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(options)
        return "250 2.1.5 Recipient OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        started = time.perf_counter()
        user = session.auth_data if session.authenticated else None
        client = user.name if isinstance(user, SmtpUser) else self.client_network(session.peer)
        peer = _peer_host(session)
        stamp = format_datetime(datetime.now(UTC))
        greeting = _NOT_TRACE_TEXT.sub("?", session.host_name or "unknown")[:255]
        trace = (
            f"Received: from {greeting} ([{peer}])"
            f" by {self._hostname} (sendbrake) with ESMTP; {stamp}"
        )
        inbound = Inbound(
            ingress="smtp",
            client=client or "unknown",
            mail_from="" if envelope.mail_from == NULL_PATH else envelope.mail_from or "",
            rcpt_tos=tuple(envelope.rcpt_tos),
            content=envelope.original_content or b"",
            trace=trace,
        )
        try:
            admission = await self._admit(inbound)
        except CampaignRejected as exc:
            return f"550 5.7.1 Campaign {exc.key} was rejected by an operator; not accepted"
        except MessageRefused as exc:
            log.warning("smtp_message_refused", peer=peer, header=exc.header, reason=exc.reason)
            return f"554 5.6.0 {exc}"
        except SpoolError as exc:
            log.exception("smtp_spool_failed", error=str(exc))
            return REPLY_SPOOL_FAILED
        except Exception:
            log.exception("smtp_admit_crashed")
            return REPLY_SPOOL_FAILED
        finally:
            self._metrics.ingest_duration.observe(time.perf_counter() - started)
        if admission.resent:  # a retry after a lost 250: counted the first time
            return f"250 2.0.0 queued as {admission.message_id} (received before)"
        self._metrics.messages_received.labels(ingress="smtp").inc()
        self._metrics.recipients_received.inc(len(inbound.rcpt_tos))
        return f"250 2.0.0 queued as {admission.message_id}"


def _skip_comments(text: str, start: int) -> str:
    """Return `text` from `start` on, past blanks and (comments) after a path."""
    skipped = _COMMENTS.match(text, start)
    return text[skipped.end() if skipped else start :]


def _address_problem(address: str, envelope: Envelope) -> tuple[str, str] | None:
    """(enhanced status or "" for the command's own, what is wrong) of a path, or None."""
    if problem := mailbox_problem(address):
        return "", problem
    if not envelope.smtp_utf8 and not address.isascii():
        return "5.6.7", "is UTF-8, which needs the SMTPUTF8 parameter on MAIL (RFC 6531)"
    return None


def _peer_host(session: Session) -> str:
    return str(session.peer[0]) if isinstance(session.peer, tuple) else "unknown"


def tls_context(settings: SmtpSettings) -> ssl.SSLContext | None:
    """Return the server context of STARTTLS, or None when no certificate is configured."""
    if not settings.tls.enabled:
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_cert_chain(settings.tls.cert, settings.tls.key)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(
            "smtp.tls.cert", "smtp.tls.cert", f"cannot load {settings.tls.cert}: {exc}"
        ) from None
    return context


def check_exposure(settings: SmtpSettings, users: int) -> None:
    """Refuse a listener beyond loopback that anyone could relay through (never open)."""
    host, _ = split_hostport(settings.listen)
    mode = settings.auth_mode()
    if is_loopback(host):
        return
    if mode == "off":
        if any(ipaddress.ip_network(net).prefixlen == 0 for net in settings.allowed_networks):
            raise ConfigError(
                "smtp.allowed_networks",
                "smtp.allowed_networks",
                f"the SMTP listener {settings.listen} is beyond loopback with smtp.auth off and"
                " every address allowed: that is an open relay; narrow smtp.allowed_networks"
                " or turn AUTH on",
            )
        log.warning("smtp_auth_off_beyond_loopback", listen=settings.listen)
        return
    if not settings.tls.enabled:
        raise ConfigError(
            "smtp.tls.cert",
            "smtp.tls.cert",
            f"the SMTP listener {settings.listen} is beyond loopback: set smtp.tls.cert and"
            " smtp.tls.key (AUTH is offered only after STARTTLS; for a test,"
            " `sendbrake tls self-signed DIR` makes a pair)",
        )
    if mode == "required" and users == 0:
        raise ConfigError(
            "smtp.auth",
            "smtp.auth",
            f"the SMTP listener {settings.listen} requires AUTH and there is no SMTP user:"
            " add one with `sendbrake users add NAME` (or set smtp.auth to optional and"
            " narrow smtp.allowed_networks)",
        )


def networks_of(settings: SmtpSettings) -> tuple[Network, ...]:
    """Return the allowed networks of the settings, parsed."""
    return tuple(ipaddress.ip_network(net) for net in settings.allowed_networks)


def network_of(networks: tuple[Network, ...], peer: Any) -> str | None:
    """Return the allowed network `peer` (a socket address) is in, or None."""
    try:
        address = ipaddress.ip_address(peer[0])
    except (TypeError, ValueError, IndexError):
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
        address = address.ipv4_mapped
    return next((str(net) for net in networks if address in net), None)


def refusal_reply(hostname: str, refusal: str) -> bytes:
    """Return the 421 a session refused for `refusal` (a `REFUSALS` key) gets, not a 220."""
    return f"421 4.7.0 {hostname} {REFUSALS[refusal]}; try again later\r\n".encode()


async def start_smtp(
    settings: SmtpSettings,
    admit: Admit,
    metrics: Metrics,
    authenticator: Authenticates | None = None,
) -> asyncio.Server:
    """Bind the SMTP listener on the running loop and return the server."""
    host, port = split_hostport(settings.listen)
    factory = smtp_sessions(settings, admit, metrics, authenticator, Sessions(settings))
    return await asyncio.get_running_loop().create_server(factory, host=host, port=port)


def smtp_sessions(
    settings: SmtpSettings,
    admit: Admit,
    metrics: Metrics,
    authenticator: Authenticates | None,
    sessions: SessionCounter,
) -> Callable[[], SMTP]:
    """Return what makes the server of each new connection (on the running loop)."""
    hostname = settings.hostname or socket.getfqdn()
    handler = SmtpHandler(settings, admit, metrics, hostname, authenticator)
    loop = asyncio.get_running_loop()
    context = tls_context(settings)
    mode = settings.auth_mode()
    offer_auth = authenticator is not None and context is not None and mode != "off"
    required = mode == "required"

    def factory() -> SMTP:
        return _Server(
            handler,
            settings=settings,
            sessions=sessions,
            metrics=metrics,
            data_size_limit=settings.max_message_size,
            enable_SMTPUTF8=True,
            decode_data=False,
            hostname=hostname,
            ident="sendbrake",
            timeout=settings.timeout,
            loop=loop,
            tls_context=context,
            require_starttls=required,
            auth_required=required,
            auth_require_tls=True,
            auth_exclude_mechanism=() if offer_auth else ("PLAIN", "LOGIN"),
        )

    return factory
