"""Upstream providers, and the classification of their answers per recipient.

An upstream takes one message with its recipients and answers, per recipient, delivered,
transient or permanent (STYLE.md rule 3); it never decides about retries. `smtp` keeps a
pool of reusable aiosmtplib connections; `capture` writes `.eml` files for a newcomer to
look at, which is the embedded default.
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

from gateway.model import Outcome, RecipientResult, new_id
from gateway.settings import UpstreamSettings

log = structlog.get_logger(__name__)


class Upstream(Protocol):
    """Where relayed mail goes."""

    async def deliver(
        self, mail_from: str, rcpts: Sequence[str], content: bytes
    ) -> list[RecipientResult]:
        """Send one message to `rcpts`; answer for every recipient, in order."""

    async def open(self) -> None:
        """Get ready before the first delivery (connections themselves open on demand)."""

    async def close(self) -> None:
        """Close open connections."""


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
        self, mail_from: str, rcpts: Sequence[str], content: bytes
    ) -> list[RecipientResult]:
        envelope = (f"Return-Path: <{mail_from}>\r\nX-Envelope-To: {', '.join(rcpts)}\r\n").encode()
        try:
            name = await asyncio.to_thread(self._write, envelope + content)
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
    """Relays over SMTP with a bounded pool of reused connections."""

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
            start_tls=s.tls == "starttls",
            tls_context=context,
            validate_certs=s.verify_tls,
            username=s.username or None,
            password=s.password.get_secret_value() or None if s.username else None,
        )

    async def _connect(self) -> aiosmtplib.SMTP:
        client = self._client()
        await client.connect(timeout=self._settings.connect_timeout)
        return client

    async def deliver(
        self, mail_from: str, rcpts: Sequence[str], content: bytes
    ) -> list[RecipientResult]:
        async with self._slots:
            if self._idle:
                client = self._idle.pop()
                try:
                    return self._keep(
                        client, await self._transaction(client, mail_from, rcpts, content)
                    )
                except _StaleConnection:
                    client.close()  # the provider closed it while idle; nothing was sent
                except (aiosmtplib.SMTPException, OSError) as exc:
                    client.close()
                    return _all(rcpts, Outcome.TRANSIENT, f"upstream connection failed: {exc}")
            try:
                client = await self._connect()
            except (aiosmtplib.SMTPException, OSError) as exc:
                return _all(rcpts, Outcome.TRANSIENT, f"upstream unreachable: {exc}")
            try:
                return self._keep(
                    client, await self._transaction(client, mail_from, rcpts, content)
                )
            except (aiosmtplib.SMTPException, OSError) as exc:
                client.close()
                return _all(rcpts, Outcome.TRANSIENT, f"upstream connection failed: {exc}")

    def _keep(
        self, client: aiosmtplib.SMTP, results: list[RecipientResult]
    ) -> list[RecipientResult]:
        if client.is_connected:
            self._idle.append(client)
        return results

    async def _transaction(
        self, client: aiosmtplib.SMTP, mail_from: str, rcpts: Sequence[str], content: bytes
    ) -> list[RecipientResult]:
        """Run MAIL, RCPT per recipient and DATA; SMTP errors become per-recipient results."""
        utf8 = not (mail_from.isascii() and all(r.isascii() for r in rcpts))
        if client.is_ehlo_or_helo_needed:
            await client.ehlo()  # so that the extension checks below see the greeting
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
        replies: dict[str, RecipientResult] = {}
        accepted = []
        for rcpt in rcpts:
            try:
                await client.rcpt(rcpt, encoding=encoding)
                accepted.append(rcpt)
            except aiosmtplib.SMTPResponseException as exc:
                replies[rcpt] = RecipientResult(
                    rcpt, classify(exc.code), f"{exc.code} {exc.message}"
                )
        if accepted:
            try:
                response = await client.data(content)
                outcome, reply = Outcome.DELIVERED, f"{response.code} {response.message}"
            except aiosmtplib.SMTPResponseException as exc:
                outcome, reply = classify(exc.code), f"{exc.code} {exc.message}"
            replies.update({rcpt: RecipientResult(rcpt, outcome, reply) for rcpt in accepted})
        else:
            await _reset(client)
        return [replies[rcpt] for rcpt in rcpts]

    async def open(self) -> None:
        """Nothing to prepare: connections open with the first deliveries."""

    async def close(self) -> None:
        while self._idle:
            client = self._idle.pop()
            try:
                await client.quit()
            except (aiosmtplib.SMTPException, OSError):
                client.close()


class _StaleConnection(aiosmtplib.SMTPServerDisconnected):
    """A pooled connection was closed before this transaction sent anything."""


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
    return CaptureUpstream(settings.outbox)
