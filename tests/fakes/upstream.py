"""A capturing upstream SMTP server on a real socket, told how to misbehave.

It records every transaction it accepts. Knobs:
- `rcpt_replies[address]`: the reply to RCPT TO for that address (e.g. "550 5.1.1 no").
- `fail_next(n, reply)`: answer DATA with `reply` for the next n transactions.
- `hang`: accept connections and never send the greeting or answer.
- `reply_delay`: seconds before every reply, the greeting included (a slow provider).
- `drop_next_data(n, after)`: for the next n transactions, close the connection once
  `after` bytes of the message arrived, before its end (a provider dropping mid-DATA);
  `dropped` counts the drops.
- `smtputf8`: offer SMTPUTF8 (on by default; off, it refuses non-ASCII commands).
- `tls` (an ssl.SSLContext): offer STARTTLS, or with `implicit_tls` speak TLS from the
  first byte; `credentials` ({user: password}): require AUTH (only over TLS).
- `ack_delay`: seconds between taking a message and answering 250, like a provider's own
  commit; a gateway killed in that gap sends the message again.
- `stop()` / `start()`: go down and come back on the same port.

`cleartext` holds every byte a client sent outside TLS, to prove what went out in clear.
"""

from __future__ import annotations

import asyncio
import ssl
import time
import warnings
from dataclasses import dataclass, field
from typing import Any, AnyStr

from aiosmtpd.smtp import SMTP, AuthResult, Envelope, Session


@dataclass
class Transaction:
    mail_from: str
    rcpt_tos: list[str]
    content: bytes
    mail_options: list[str] = field(default_factory=list)
    tls: bool = False
    user: str | None = None
    at: float = field(default_factory=time.monotonic, compare=False)  # when the DATA arrived


class _Handler:
    def __init__(self, upstream: CapturingUpstream) -> None:
        self.up = upstream

    async def handle_RCPT(self, server, session, envelope, address, options):
        reply = self.up.rcpt_replies.get(address)
        if reply is not None:
            return reply
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        self.up.attempts += 1
        if self.up.data_failures:
            self.up.data_failures -= 1
            return self.up.data_failure_reply
        self.up.transactions.append(
            Transaction(
                envelope.mail_from,
                list(envelope.rcpt_tos),
                envelope.original_content,
                list(envelope.mail_options),
                tls=server.transport.get_extra_info("ssl_object") is not None,
                user=session.auth_data.login.decode() if session.authenticated else None,
            )
        )
        self.up.changed.set()
        if self.up.ack_delay:
            await asyncio.sleep(self.up.ack_delay)
        return "250 2.0.0 Ok: queued"


class CapturingUpstream:
    """Start with `await up.start()`; `up.port` is the bound port."""

    def __init__(self) -> None:
        self.transactions: list[Transaction] = []
        self.rcpt_replies: dict[str, str] = {}
        self.data_failures = 0
        self.data_failure_reply = "451 4.3.0 try again"
        self.attempts = 0
        self.connections = 0
        self.ack_delay = 0.0
        self.tls: ssl.SSLContext | None = None
        self.implicit_tls = False
        self.credentials: dict[str, str] | None = None
        self.hang = False
        self.reply_delay = 0.0
        self.smtputf8 = True
        self.data_drops = 0
        self.drop_after = 0
        self.dropped = 0
        self.cleartext = bytearray()
        self.port = 0
        self.changed = asyncio.Event()
        self._server: asyncio.Server | None = None
        self._hung: list[asyncio.Transport] = []

    def fail_next(self, count: int, reply: str = "451 4.3.0 try again") -> None:
        self.data_failures = count
        self.data_failure_reply = reply

    def drop_next_data(self, count: int, after: int) -> None:
        self.data_drops = count
        self.drop_after = after

    @property
    def cleartext_commands(self) -> list[str]:
        """The command verbs clients sent outside TLS, in order."""
        lines = bytes(self.cleartext).split(b"\r\n")
        return [line.split(b" ", 1)[0].decode("ascii", "replace").upper() for line in lines if line]

    @property
    def recipients(self) -> list[str]:
        return [rcpt for t in self.transactions for rcpt in t.rcpt_tos]

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        handler = _Handler(self)

        def factory() -> asyncio.Protocol:
            self.connections += 1
            if self.hang:
                return _Silent(self._hung)
            with warnings.catch_warnings():
                # aiosmtpd warns about AUTH without TLS: it cannot see implicit TLS.
                warnings.simplefilter("ignore", UserWarning)
                return _Server(
                    self,
                    handler,
                    enable_SMTPUTF8=self.smtputf8,
                    hostname="upstream.test",
                    loop=loop,
                    tls_context=None if self.implicit_tls else self.tls,
                    authenticator=self._authenticate if self.credentials else None,
                    auth_required=self.credentials is not None,
                    # aiosmtpd cannot see implicit TLS (it wraps below it); the socket is TLS.
                    auth_require_tls=not self.implicit_tls,
                )

        server_tls = self.tls if self.implicit_tls else None
        self._server = await loop.create_server(factory, "127.0.0.1", self.port, ssl=server_tls)
        self.port = self._server.sockets[0].getsockname()[1]

    def _authenticate(self, server, session, envelope, mechanism, auth_data) -> AuthResult:
        ok = (
            self.credentials is not None
            and self.credentials.get(auth_data.login.decode()) == auth_data.password.decode()
        )
        return AuthResult(success=ok, handled=False, auth_data=auth_data)

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None
        for transport in self._hung:
            transport.close()
        self._hung.clear()


class _Server(SMTP):
    """aiosmtpd's server with the wire-level knobs: slow replies, drops mid-DATA."""

    def __init__(self, upstream: CapturingUpstream, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._up = upstream
        self._data_left: int | None = None  # bytes of DATA to take before dropping
        self._continuing = False  # the last line pushed was not a reply's last

    async def push(self, status: AnyStr) -> None:
        line = status if isinstance(status, str) else status.decode("utf-8", "replace")
        if self._up.reply_delay and not self._continuing:  # once per reply, not per line
            await asyncio.sleep(self._up.reply_delay)
        self._continuing = line[3:4] == "-"
        if line[:3] == "354" and self._up.data_drops:
            self._up.data_drops -= 1
            self._data_left = self._up.drop_after
        await super().push(status)

    def data_received(self, data: bytes) -> None:
        if self.transport is not None and self.transport.get_extra_info("ssl_object") is None:
            self._up.cleartext += data
        if self._data_left is not None:
            if len(data) >= self._data_left:
                super().data_received(data[: self._data_left])
                self._data_left = None
                self._up.dropped += 1
                assert self.transport is not None
                self.transport.close()  # the end of the message never reaches the handler
                return
            self._data_left -= len(data)
        super().data_received(data)


class _Silent(asyncio.Protocol):
    """Accepts a connection and never says a word."""

    def __init__(self, keep: list[asyncio.Transport]) -> None:
        self._keep = keep

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._keep.append(transport)
