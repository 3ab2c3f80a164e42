"""Upstream providers, and the classification of their answers per recipient.

An upstream takes one message with its recipients and answers, per recipient, delivered,
transient or permanent (STYLE.md rule 3); it never decides about retries. `smtp` keeps a
pool of reusable aiosmtplib connections; `capture` writes `.eml` files for a newcomer to
look at, which is the embedded default; `sendgrid` (relay/sendgrid.py) calls SendGrid's
v3 mail send API. Each is told the delivery's message and campaign ids: `smtp` and
`capture` add them as the headers `X-Sendbrake-Message` and `X-Sendbrake-Campaign` (at the
end of the header block; any the sender wrote are dropped, so they cannot be forged), so
that a DSN quoting the headers can be attributed.
"""

from __future__ import annotations

import asyncio
import os
import ssl
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

import aiosmtplib
import structlog
from aiosmtplib.email import parse_address

from gateway.mail.addresses import mailbox_problem
from gateway.mail.headers import HeaderBlock
from gateway.model import (
    CAMPAIGN_HEADER,
    MESSAGE_HEADER,
    DeliveryIds,
    Outcome,
    RecipientResult,
    new_id,
)
from gateway.relay.sendgrid import SendGridUpstream
from gateway.settings import UpstreamSettings

log = structlog.get_logger(__name__)


class Upstream(Protocol):
    """Where relayed mail goes."""

    async def deliver(
        self, mail_from: str, rcpts: Sequence[str], content: bytes, ids: DeliveryIds
    ) -> list[RecipientResult]:
        """Send one message (of `ids`) to `rcpts`; answer for every recipient, in order."""

    async def open(self) -> None:
        """Get ready before the first delivery (connections themselves open on demand)."""

    async def close(self) -> None:
        """Close open connections."""


_TAGS = frozenset({MESSAGE_HEADER.lower(), CAMPAIGN_HEADER.lower()})


def tagged(content: bytes, ids: DeliveryIds) -> bytes:
    """Return `content` with the attribution headers last in its header block, bytes kept.

    Fields of those names that the message already had are dropped: only the gateway says
    which message and campaign a relayed mail is.
    """
    block = HeaderBlock.parse(content)
    if any(name in _TAGS for name, _ in block.fields):
        block = block.without(_TAGS)
    return block.append(
        f"{MESSAGE_HEADER}: {ids.message_id}", f"{CAMPAIGN_HEADER}: {ids.campaign_id}"
    ).to_bytes()


def classify(code: int) -> Outcome:
    """Map an SMTP reply code to an outcome: 2xx delivered, 5xx permanent, else transient."""
    if 200 <= code < 300:
        return Outcome.DELIVERED
    if 500 <= code < 600:
        return Outcome.PERMANENT
    return Outcome.TRANSIENT


class CaptureUpstream:
    """Writes each relayed message as an `.eml` file, with the envelope as headers."""

    def __init__(self, outbox: Path) -> None:
        self._outbox = outbox

    async def deliver(
        self, mail_from: str, rcpts: Sequence[str], content: bytes, ids: DeliveryIds
    ) -> list[RecipientResult]:
        envelope = (f"Return-Path: <{mail_from}>\r\nX-Envelope-To: {', '.join(rcpts)}\r\n").encode()
        try:
            name = await asyncio.to_thread(self._write, envelope + tagged(content, ids))
        except OSError as exc:
            reply = f"451 4.3.0 capture outbox not writable: {exc.strerror}"
            return [RecipientResult(rcpt, Outcome.TRANSIENT, reply) for rcpt in rcpts]
        return [
            RecipientResult(rcpt, Outcome.DELIVERED, f"250 2.0.0 captured as {name}")
            for rcpt in rcpts
        ]

    def _write(self, data: bytes) -> str:
        self._outbox.mkdir(parents=True, exist_ok=True)
        name = f"{new_id()}.eml"
        partial = self._outbox / f".{name}.tmp"
        with partial.open("wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        partial.rename(self._outbox / name)  # readers never see half a file
        return name

    async def open(self) -> None:
        """Nothing to prepare."""

    async def close(self) -> None:
        """Nothing to close."""


class SmtpUpstream:
    """Relays over SMTP with a bounded pool of reused connections.

    Every fault becomes an answer per recipient, and a connection goes back to the pool
    only after a transaction that ended in order; otherwise it is closed:
    - an address that cannot go on the wire as the spool holds it (a spool written before
      ingress checked addresses; non-ASCII towards an upstream without SMTPUTF8) fails
      alone, permanently, as "not sent: ..."; the other recipients go in the same
      transaction;
    - no greeting within `connect_timeout`, no reply within `command_timeout`, a refused
      or lost connection: transient;
    - TLS that cannot be set up as `upstream.tls` requires: transient (a provider's
      certificate renewal or a load balancer's blip passes; a wrong setting is fixed by
      an operator within `relay.max_age`), logged at error level, and no mail is sent;
    - no reply to the end of DATA (a timeout, or the connection lost once the message was
      sent): transient, though the provider may have accepted it, so the retry can deliver
      it twice: the one fault besides a crash that can duplicate (docs/architecture.md).
    """

    def __init__(self, settings: UpstreamSettings) -> None:
        self._settings = settings
        self._slots = asyncio.Semaphore(settings.pool_size)
        self._idle: list[aiosmtplib.SMTP] = []

    def _client(self) -> aiosmtplib.SMTP:
        s = self._settings
        context = None
        if s.tls != "none":
            context = ssl.create_default_context(cafile=str(s.ca_file) if s.ca_file else None)
            if not s.verify_tls:
                context.check_hostname = False
                context.verify_mode = ssl.CERT_NONE
        return aiosmtplib.SMTP(
            hostname=s.host,
            port=s.port,
            local_hostname=s.helo_name or None,
            timeout=s.command_timeout,
            use_tls=s.tls == "implicit",
            start_tls=False,  # `_connect` runs STARTTLS and AUTH, to say which one failed
            tls_context=context,
            validate_certs=s.verify_tls,
        )

    async def _connect(self) -> aiosmtplib.SMTP:
        """Connect, set up TLS as `upstream.tls` requires, log in; raise `_NotConnected`."""
        s = self._settings
        client = self._client()
        try:
            await client.connect(timeout=s.connect_timeout)
        except (aiosmtplib.SMTPException, OSError) as exc:
            tls_error = _ssl_error(exc) if s.tls == "implicit" else None
            if tls_error is not None:
                raise self._tls_failed(f"handshake failed: {tls_error}") from exc
            if isinstance(exc, aiosmtplib.SMTPTimeoutError):
                raise _NotConnected(
                    f"upstream unreachable: {exc} (upstream.connect_timeout {s.connect_timeout:g}s)"
                ) from exc
            raise _NotConnected(f"upstream unreachable: {exc}") from exc
        try:
            if s.tls == "starttls":
                await self._starttls(client)
            if s.username:
                await self._login(client)
        except _NotConnected:
            client.close()
            raise
        except (aiosmtplib.SMTPException, OSError) as exc:
            client.close()
            raise _NotConnected(f"upstream connection failed: {self._explain(exc)}") from exc
        except BaseException:
            client.close()
            raise
        return client

    async def _starttls(self, client: aiosmtplib.SMTP) -> None:
        await client.ehlo()
        if not client.supports_extension("starttls"):
            raise self._tls_failed("upstream does not offer STARTTLS")
        try:
            await client.starttls()
        except aiosmtplib.SMTPResponseException as exc:
            raise self._tls_failed(f"STARTTLS refused: {exc.code} {exc.message}") from exc
        except (aiosmtplib.SMTPException, OSError) as exc:
            raise self._tls_failed(f"handshake failed: {_ssl_error(exc) or exc}") from exc

    async def _login(self, client: aiosmtplib.SMTP) -> None:
        s = self._settings
        try:
            await client.login(s.username, s.password.get_secret_value())
        except aiosmtplib.SMTPResponseException as exc:
            raise _NotConnected(f"upstream AUTH failed: {exc.code} {exc.message}") from exc

    def _tls_failed(self, reason: str) -> _NotConnected:
        s = self._settings
        log.error("upstream_tls_failed", tls=s.tls, host=s.host, port=s.port, reason=reason)
        return _NotConnected(f"upstream TLS failed ({s.tls}): {reason}; no mail was sent")

    def _explain(self, exc: BaseException) -> str:
        if isinstance(exc, aiosmtplib.SMTPTimeoutError):
            return f"{exc} (upstream.command_timeout {self._settings.command_timeout:g}s)"
        return str(exc)

    async def deliver(
        self, mail_from: str, rcpts: Sequence[str], content: bytes, ids: DeliveryIds
    ) -> list[RecipientResult]:
        content = tagged(content, ids)
        if mail_from == "<>":
            mail_from = ""  # the null reverse-path as an older ingress may have stored it
        if problem := _address_problem(mail_from, sender=True):
            return _all(rcpts, Outcome.PERMANENT, f"not sent: the sender address {problem}")
        answers = {
            rcpt: RecipientResult(
                rcpt, Outcome.PERMANENT, f"not sent: the recipient address {problem}"
            )
            for rcpt in rcpts
            if (problem := _address_problem(rcpt))
        }
        sendable = [rcpt for rcpt in rcpts if rcpt not in answers]
        if sendable:
            results = await self._send(mail_from, sendable, content)
            answers.update((result.address, result) for result in results)
        return [answers[rcpt] for rcpt in rcpts]

    async def _send(
        self, mail_from: str, rcpts: Sequence[str], content: bytes
    ) -> list[RecipientResult]:
        async with self._slots:
            if self._idle:
                try:
                    return await self._run(self._idle.pop(), mail_from, rcpts, content)
                except _StaleConnection:
                    pass  # the provider closed it while idle; nothing was sent: a new one
            try:
                client = await self._connect()
            except _NotConnected as exc:
                return _all(rcpts, Outcome.TRANSIENT, exc.reply)
            try:
                return await self._run(client, mail_from, rcpts, content)
            except _StaleConnection as exc:
                return _all(rcpts, Outcome.TRANSIENT, f"upstream connection failed: {exc}")

    async def _run(
        self, client: aiosmtplib.SMTP, mail_from: str, rcpts: Sequence[str], content: bytes
    ) -> list[RecipientResult]:
        """Run one transaction on `client`; pool it again only if it ended in order."""
        try:
            results = await self._transaction(client, mail_from, rcpts, content)
        except _StaleConnection:
            client.close()
            raise
        except (aiosmtplib.SMTPException, OSError) as exc:
            client.close()
            reply = f"upstream connection failed: {self._explain(exc)}"
            return _all(rcpts, Outcome.TRANSIENT, reply)
        except BaseException:
            client.close()  # cancelled, or a bug: a connection in an unknown state
            raise
        if client.is_connected:
            self._idle.append(client)
        return results

    async def _transaction(
        self, client: aiosmtplib.SMTP, mail_from: str, rcpts: Sequence[str], content: bytes
    ) -> list[RecipientResult]:
        """Run MAIL, RCPT per recipient and DATA; SMTP errors become per-recipient results."""
        if client.is_ehlo_or_helo_needed:
            await client.ehlo()  # so that the extension checks below see the greeting
        refused = {}
        if not client.supports_extension("smtputf8"):
            refused = _without_smtputf8(mail_from, rcpts)
        sending = [rcpt for rcpt in rcpts if rcpt not in refused]
        if not sending:
            return [refused[rcpt] for rcpt in rcpts]  # nothing was begun on the connection
        utf8 = not (mail_from.isascii() and all(r.isascii() for r in sending))
        options = []
        if not content.isascii() and client.supports_extension("8bitmime"):
            options.append("BODY=8BITMIME")
        if utf8:
            options.append("SMTPUTF8")
        encoding = "utf-8" if utf8 else "ascii"
        try:
            await client.mail(mail_from, options=options, encoding=encoding)
        except aiosmtplib.SMTPServerDisconnected as exc:
            raise _StaleConnection(str(exc)) from exc
        except aiosmtplib.SMTPResponseException as exc:
            await _reset(client)
            return _all(rcpts, classify(exc.code), f"{exc.code} {exc.message}")
        replies = refused | await _recipients(client, sending, encoding)
        accepted = [rcpt for rcpt in sending if rcpt not in replies]
        if accepted:
            outcome, reply = await self._data(client, content)
            replies.update({rcpt: RecipientResult(rcpt, outcome, reply) for rcpt in accepted})
        else:
            await _reset(client)
        return [replies[rcpt] for rcpt in rcpts]

    async def _data(self, client: aiosmtplib.SMTP, content: bytes) -> tuple[Outcome, str]:
        """Send the message; a lost connection or a missing reply is transient."""
        try:
            response = await client.data(content, timeout=self._settings.data_timeout)
        except aiosmtplib.SMTPResponseException as exc:
            await _reset(client)
            return classify(exc.code), f"{exc.code} {exc.message}"
        except aiosmtplib.SMTPTimeoutError:
            # aiosmtplib has closed the connection. The provider may have taken the
            # message and be slow to say so (its own commit): a retry may duplicate it.
            timeout = self._settings.data_timeout
            return Outcome.TRANSIENT, (
                f"upstream timed out waiting for the reply to DATA (upstream.data_timeout"
                f" {timeout:g}s): it may have accepted the message, so the retry can deliver"
                " it twice"
            )
        except aiosmtplib.SMTPServerDisconnected as exc:
            return Outcome.TRANSIENT, f"upstream connection lost during DATA: {exc}"
        return Outcome.DELIVERED, f"{response.code} {response.message}"

    async def open(self) -> None:
        """Nothing to prepare: connections open with the first deliveries."""

    async def close(self) -> None:
        while self._idle:
            client = self._idle.pop()
            try:
                await client.quit()
            except (aiosmtplib.SMTPException, OSError):
                client.close()


async def _recipients(
    client: aiosmtplib.SMTP, rcpts: Sequence[str], encoding: str
) -> dict[str, RecipientResult]:
    """Send RCPT for each of `rcpts`; return the answers of those not accepted."""
    refused = {}
    for rcpt in rcpts:
        try:
            await client.rcpt(rcpt, encoding=encoding)
        except aiosmtplib.SMTPResponseException as exc:
            reply = f"{exc.code} {exc.message}"
            refused[rcpt] = RecipientResult(rcpt, classify(exc.code), reply)
        except ValueError as exc:
            # aiosmtplib refuses before it writes, so the transaction goes on; after
            # `_address_problem` this is a safety net, should their rules ever part.
            reply = f"not sent: the SMTP client refused the recipient address: {exc}"
            refused[rcpt] = RecipientResult(rcpt, Outcome.PERMANENT, reply)
    return refused


_NO_SMTPUTF8 = "not sent: upstream does not offer SMTPUTF8, which the {whose} address needs"


def _without_smtputf8(mail_from: str, rcpts: Sequence[str]) -> dict[str, RecipientResult]:
    """Answer the recipients an upstream without SMTPUTF8 cannot take (Postfix: 5.6.7)."""
    if not mail_from.isascii():
        reply = _NO_SMTPUTF8.format(whose="sender")
        return {rcpt: RecipientResult(rcpt, Outcome.PERMANENT, reply) for rcpt in rcpts}
    reply = _NO_SMTPUTF8.format(whose="recipient")
    return {r: RecipientResult(r, Outcome.PERMANENT, reply) for r in rcpts if not r.isascii()}


class _NotConnected(Exception):
    """No connection ready for a transaction; `reply` says why, for every recipient."""

    def __init__(self, reply: str) -> None:
        super().__init__(reply)
        self.reply = reply


class _StaleConnection(aiosmtplib.SMTPServerDisconnected):
    """A pooled connection was closed before this transaction sent anything."""


def _address_problem(address: str, *, sender: bool = False) -> str | None:
    r"""Say why `address` cannot go on the wire as the spool holds it, or None.

    A spool written before ingress checked addresses may hold what ingress refuses now.
    aiosmtplib raises on some of those and quietly sends others as another address
    (`a<b@x.test` as `b@x.test`, `tab\t@x.test` as `tab@x.test`, an empty one as `<>`),
    so the relay applies the ingress's own rule and sends only what aiosmtplib sends as
    it is. An empty sender is the null reverse-path, `<>`.
    """
    if sender and not address:
        return None
    if problem := mailbox_problem(address):
        return problem
    try:
        wire = parse_address(address)
    except ValueError:
        wire = None
    return None if wire == address else "would not be sent as it is by the SMTP client"


def _ssl_error(exc: BaseException) -> ssl.SSLError | None:
    """Return the TLS error `exc` is or wraps (aiosmtplib wraps a failed handshake)."""
    for cause in (exc, exc.__cause__):
        if isinstance(cause, ssl.SSLError):
            return cause
    return None


async def _reset(client: aiosmtplib.SMTP) -> None:
    try:
        await client.rset()
    except (aiosmtplib.SMTPException, OSError):
        client.close()


def _all(rcpts: Sequence[str], outcome: Outcome, reply: str) -> list[RecipientResult]:
    return [RecipientResult(rcpt, outcome, reply) for rcpt in rcpts]


def create_upstream(settings: UpstreamSettings) -> Upstream:
    """Build the upstream that `settings.kind` names."""
    if settings.kind == "smtp":
        return SmtpUpstream(settings)
    if settings.kind == "sendgrid":
        return SendGridUpstream(settings)
    return CaptureUpstream(settings.outbox)
