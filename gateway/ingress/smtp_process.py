"""SMTP in processes of their own: the gateway accepts, counts, and hands sessions over.

With `smtp.processes` above 0 the gateway binds the SMTP listener and accepts every
connection itself, so the session limits (`smtp.max_sessions`, per client) stay one exact
count, as Postfix's anvil keeps them for its smtpd processes. Each accepted connection is
passed (SCM_RIGHTS, over a Unix socket) to the ingress process serving the fewest
sessions, `python -m gateway.ingress.smtp_process`, which talks SMTP with the client:
greeting, STARTTLS (the TLS work is the child's), AUTH, the envelope and DATA, with the
code and replies of the gateway's own listener (`gateway.ingress.smtp`).

What needs the spool stays in the gateway. Each message goes back to it as an `Inbound`
and is admitted there (the analysis processes, the spool transaction); the child sends its
250 only when the gateway's answer, given after the durable commit, comes back. AUTH
credentials are checked by the gateway, whose failed-login counts are one per address
whichever process the client reached. The child reports its closed sessions and its
metric updates (sessions it closed, reply latency, messages received) to the gateway,
whose /metrics shows them.

A child that dies is started again and the sessions it served are counted out; their
clients see the connection drop and send again (nothing was acknowledged that was not
committed, and a retry of a committed message is recognised as one). Frames
(`gateway.childproc`): the child's input carries the start frame (SMTP and log
settings, the event loop, the number of the Unix socket it inherited), then ("answer",
id, ok, value) per request; its output carries "ready", then ("admit", id, inbound),
("auth", id, client, login, password), ("closed", host) and ("metric", name, labels,
method, value). End of input stops the child.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import itertools
import os
import socket
import sys
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any, cast

import structlog
import uvloop
from aiosmtpd.smtp import AuthResult, LoginPassword
from prometheus_client import CollectorRegistry

from gateway import log as logging
from gateway.childproc import become_child, frame, read_frame, reap, start_child
from gateway.errors import CampaignRejected, MessageRefused, SpoolError
from gateway.ingress.auth import Authenticates
from gateway.ingress.sessions import Sessions
from gateway.ingress.smtp import (
    Admit,
    network_of,
    networks_of,
    refusal_reply,
    smtp_sessions,
)
from gateway.metrics import Metrics
from gateway.model import Admission, Inbound
from gateway.settings import LogSettings, SmtpSettings, split_hostport

log = structlog.get_logger(__name__)

# The instruments an ingress process updates, forwarded to the gateway's.
FORWARDED = ("smtp_sessions_closed", "ingest_duration", "messages_received", "recipients_received")
BACKLOG = 511  # connections the kernel queues before the gateway accepts them
RESTART_PAUSE = 1.0  # seconds between attempts to start a child that failed to start


class SmtpProcesses:
    """The gateway's side: one listener, `processes` children serving what it accepts."""

    def __init__(
        self,
        settings: SmtpSettings,
        processes: int,
        *,
        admit: Admit,
        authenticator: Authenticates,
        metrics: Metrics,
        log_settings: LogSettings,
        event_loop: str = "asyncio",
    ) -> None:
        self._settings = settings
        self._admit = admit
        self._authenticator = authenticator
        self._metrics = metrics
        self.start_frame = (settings, log_settings, event_loop)  # what every child is told
        self._sessions = Sessions(settings)
        self._networks = networks_of(settings)
        self._hostname = settings.hostname or socket.getfqdn()
        self._children = [_Child(self) for _ in range(processes)]
        self._listeners: list[socket.socket] = []
        self._tasks: set[asyncio.Task[Any]] = set()
        self._closed = False

    @property
    def address(self) -> tuple[str, int]:
        """Where the (first) listener is bound (the port, if 0 was asked for)."""
        if not self._listeners:
            raise RuntimeError("the SMTP listener is not bound yet")
        host, port = self._listeners[0].getsockname()[:2]
        return str(host), int(port)

    @property
    def pids(self) -> list[int]:
        """The running ingress processes' ids."""
        return [child.pid for child in self._children if child.pid is not None]

    async def start(self) -> None:
        """Bind the listener, start the children, and accept.

        A host name is bound on every address it has, as asyncio's servers are.
        """
        host, port = split_hostport(self._settings.listen)
        found = socket.getaddrinfo(
            host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )
        for family, kind, proto, _, address in dict.fromkeys(found):
            listener = socket.socket(family, kind, proto)
            self._listeners.append(listener)
            listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:  # its IPv4 twin, if any, is bound on its own
                listener.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            listener.bind(address)
            listener.listen(BACKLOG)
            listener.setblocking(False)  # noqa: FBT003 - the socket API
        await asyncio.gather(*(child.start() for child in self._children))
        for listener in self._listeners:
            self._listen(listener)

    def _listen(self, listener: socket.socket) -> None:
        if listener.fileno() >= 0:  # not closed meanwhile
            asyncio.get_running_loop().add_reader(listener.fileno(), self._accept, listener)

    def close(self) -> None:
        """Stop accepting (sessions already handed over go on until `stop`)."""
        for listener in self._listeners:
            if listener.fileno() >= 0:
                asyncio.get_running_loop().remove_reader(listener.fileno())
                listener.close()

    async def stop(self) -> None:
        """Stop accepting, end every child and wait for them to exit."""
        self.close()
        self._closed = True
        await asyncio.gather(*(child.stop() for child in self._children))
        for task in list(self._tasks):
            task.cancel()

    def _accept(self, listener: socket.socket) -> None:
        """Accept every connection waiting (the listener is readable)."""
        while True:
            try:
                conn, peer = listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:  # out of file descriptors, say: pause, as asyncio does
                log.warning("smtp_accept_failed", error=str(exc))
                loop = asyncio.get_running_loop()
                loop.remove_reader(listener.fileno())
                loop.call_later(RESTART_PAUSE, self._listen, listener)
                return
            with conn:  # the child holds its own copy once handed over
                self._hand_over(conn, peer)

    def _hand_over(self, conn: socket.socket, peer: Any) -> None:
        """Count the session in and pass it to the least busy child, or refuse it with 421."""
        host = str(peer[0]) if isinstance(peer, tuple) else "unknown"
        exempt = network_of(self._networks, peer) is not None
        refusal = self._sessions.open(host, exempt=exempt)
        if refusal is None:
            child = min((c for c in self._children if c.ready), key=len, default=None)
            if child is not None and child.hand(conn, host):
                return
            self._sessions.close(host)
            refusal = "max_sessions"  # no child could take it now: as busy as a full house
        log.warning("smtp_session_refused", peer=host, reason=refusal)
        self._metrics.smtp_sessions_closed.labels(reason=refusal).inc()
        with contextlib.suppress(OSError):
            conn.send(refusal_reply(self._hostname, refusal))

    def count_out(self, host: str) -> None:
        """Count out a session a child served."""
        self._sessions.close(host)

    def request(self, child: _Child, request: tuple[Any, ...], to: asyncio.StreamWriter) -> None:
        """Act on one frame from a child; `to` is that process's input, for the answer."""
        kind = request[0]
        if kind == "admit":
            _, rid, inbound = request
            self._spawn(child.answer(rid, self._admit(inbound), to))
        elif kind == "auth":
            _, rid, client, login, password = request
            credentials = LoginPassword(login, password)
            self._spawn(
                child.answer(rid, self._authenticator.authenticate(client, credentials), to)
            )
        elif kind == "closed":
            child.count_out(request[1])
        elif kind == "metric":
            _, name, labels, method, value = request
            if name in FORWARDED:
                instrument = getattr(self._metrics, name)
                getattr(instrument.labels(**labels) if labels else instrument, method)(value)

    def _spawn(self, work: Awaitable[None]) -> None:
        task = asyncio.ensure_future(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def exited(self, child: _Child) -> None:
        """Restart a child that died, unless the gateway is stopping."""
        if not self._closed:
            log.warning("smtp_process_exited", pid=child.pid)
            self._spawn(self._restart(child))

    async def _restart(self, child: _Child) -> None:
        while not self._closed:
            try:
                await child.start()
            except Exception:
                log.exception("smtp_process_start_failed")
                await asyncio.sleep(RESTART_PAUSE)
            else:
                return


class _Child:
    """One ingress process, the Unix socket its sessions travel on, and the hosts it serves."""

    def __init__(self, owner: SmtpProcesses) -> None:
        self._owner = owner
        self._proc: asyncio.subprocess.Process | None = None
        self._stdin: asyncio.StreamWriter | None = None
        self._sockets: socket.socket | None = None
        self._hosts: Counter[str] = Counter()  # the sessions it serves, by client address
        self._serving: asyncio.Task[None] | None = None
        self.ready = False

    def __len__(self) -> int:
        return sum(self._hosts.values())

    @property
    def pid(self) -> int | None:
        """Its process id, once started."""
        return None if self._proc is None else self._proc.pid

    async def start(self) -> None:
        """Start the process and read what it asks until it exits."""
        # Datagrams in order: one accepted socket per message, never two run together.
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        number = theirs.fileno()  # the child inherits it under the same number
        with theirs:
            proc, stdin, stdout = await start_child(__name__, pass_fds=(number,))
        stdin.write(frame((*self._owner.start_frame, number)))
        if await read_frame(stdout) != "ready":
            ours.close()
            code = await proc.wait()
            raise RuntimeError(f"the SMTP ingress process exited ({code}) while starting")
        ours.setblocking(False)  # noqa: FBT003 - the socket API
        self._proc, self._stdin, self._sockets = proc, stdin, ours
        self.ready = True
        log.info("smtp_process_started", pid=proc.pid)
        self._serving = asyncio.create_task(self._serve(stdin, stdout))

    def hand(self, conn: socket.socket, host: str) -> bool:
        """Pass an accepted connection to the child; False if it cannot take it now."""
        if self._sockets is None:
            return False
        try:
            socket.send_fds(self._sockets, [host.encode()], [conn.fileno()])
        except OSError:  # its queue is full, or it just died
            return False
        self._hosts[host] += 1
        return True

    def count_out(self, host: str) -> None:
        """Count out a session of `host` that it served and that has ended."""
        if self._hosts[host] > 0:
            self._hosts[host] -= 1
            self._owner.count_out(host)

    async def answer(self, rid: int, work: Awaitable[Any], to: asyncio.StreamWriter) -> None:
        """Send the outcome of a request: the value, or the error as the child rebuilds it.

        `to` is the input of the process that asked: a restarted child's ids start again,
        so an answer to its predecessor must never reach it.
        """
        try:
            value = await work
        except CampaignRejected as exc:
            answer: tuple[Any, ...] = ("answer", rid, False, ("rejected", exc.campaign_id, exc.key))
        except MessageRefused as exc:
            answer = ("answer", rid, False, ("refused", exc.header, exc.reason))
        except SpoolError as exc:
            answer = ("answer", rid, False, ("spool", str(exc)))
        except Exception as exc:
            log.exception("smtp_process_request_failed")
            answer = ("answer", rid, False, ("crashed", f"{type(exc).__name__}: {exc}"))
        else:
            answer = ("answer", rid, True, value)
        if not to.is_closing():
            to.write(frame(answer))

    async def _serve(self, stdin: asyncio.StreamWriter, stdout: asyncio.StreamReader) -> None:
        """Act on what this incarnation of the child asks; count it out when it exits."""
        while (request := await read_frame(stdout)) is not None:
            self._owner.request(self, request, stdin)
        self.ready = False
        if self._sockets is not None:
            self._sockets.close()
            self._sockets = None
        for host, count in list(self._hosts.items()):  # their connections died with it
            for _ in range(count):
                self.count_out(host)
        if self._proc is not None:
            await self._proc.wait()
        self._owner.exited(self)

    async def stop(self) -> None:
        """End its input and wait for it to exit."""
        self.ready = False
        if self._stdin is not None:
            self._stdin.close()
        if self._proc is not None:
            await reap(self._proc)
        if self._serving is not None:
            await self._serving


# --- the child ------------------------------------------------------------------------------


class _Gateway:
    """The child's view of the gateway: admission, AUTH and session counts, over its pipes."""

    def __init__(self, writer: asyncio.StreamWriter) -> None:
        self._writer = writer
        self._ids = itertools.count()
        self._waiting: dict[int, asyncio.Future[tuple[bool, Any]]] = {}

    def send(self, message: Any) -> None:
        """Send one frame to the gateway."""
        if not self._writer.is_closing():
            self._writer.write(frame(message))

    async def _ask(self, *request: Any) -> Any:
        rid = next(self._ids)
        future: asyncio.Future[tuple[bool, Any]] = asyncio.get_running_loop().create_future()
        self._waiting[rid] = future
        try:
            self.send((request[0], rid, *request[1:]))
            ok, value = await future
        finally:
            self._waiting.pop(rid, None)
        if ok:
            return value
        kind, *parts = value
        if kind == "rejected":
            raise CampaignRejected(*parts)
        if kind == "refused":
            raise MessageRefused(*parts)
        raise SpoolError(parts[0])  # the spool failed, or admission crashed: 451, try again

    async def admit(self, inbound: Inbound) -> Admission:
        """Have the gateway admit the message; return once its commit is durable."""
        return cast("Admission", await self._ask("admit", inbound))

    async def authenticate(self, client: str, credentials: LoginPassword) -> AuthResult:
        """Have the gateway check AUTH credentials."""
        result = await self._ask("auth", client, credentials.login, credentials.password)
        return cast("AuthResult", result)

    def open(self, host: str, *, exempt: bool) -> str | None:  # noqa: ARG002 - counted already
        """Every session handed over was counted in by the gateway when it accepted it."""
        return None

    def close(self, host: str) -> None:
        """Tell the gateway a session has ended."""
        self.send(("closed", host))

    def answered(self, answer: tuple[Any, ...]) -> None:
        """Resolve the request an answer frame is for."""
        _, rid, ok, value = answer
        future = self._waiting.get(rid)
        if future is not None and not future.done():
            future.set_result((ok, value))


class _Forwarded:
    """An instrument of the child that sends each update to the gateway's, by name."""

    def __init__(self, gateway: _Gateway, name: str, labels: dict[str, str] | None = None) -> None:
        self._gateway, self._name, self._labels = gateway, name, labels or {}

    def labels(self, **labels: str) -> _Forwarded:
        return _Forwarded(self._gateway, self._name, labels)

    def inc(self, amount: float = 1.0) -> None:
        self._gateway.send(("metric", self._name, self._labels, "inc", amount))

    def observe(self, value: float) -> None:
        self._gateway.send(("metric", self._name, self._labels, "observe", value))


async def serve(settings: SmtpSettings, sockets_fd: int) -> None:
    """Serve the sessions the gateway hands over until it closes our input."""
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    transport, protocol = await loop.connect_write_pipe(
        asyncio.streams.FlowControlMixin, sys.stdout
    )
    writer = asyncio.StreamWriter(transport, protocol, None, loop)
    gateway = _Gateway(writer)
    local = Metrics.create(CollectorRegistry())  # the rest is never updated here
    metrics = dataclasses.replace(
        local, **{name: cast("Any", _Forwarded(gateway, name)) for name in FORWARDED}
    )
    sessions = smtp_sessions(settings, gateway.admit, metrics, gateway, gateway)
    handed = socket.socket(fileno=sockets_fd)
    handed.setblocking(False)  # noqa: FBT003 - the socket API
    serving: set[asyncio.Task[Any]] = set()

    def receive() -> None:
        try:
            data, fds, _, _ = socket.recv_fds(handed, 1024, 1)
        except BlockingIOError:
            return
        if not data:
            loop.remove_reader(handed.fileno())
            return
        host = data.decode()  # as the gateway counted it in
        for fd in fds:
            conn = socket.socket(fileno=fd)
            task = loop.create_task(_serve_session(sessions, gateway, conn, host))
            serving.add(task)  # a reference until it runs; the session then runs on its own
            task.add_done_callback(serving.discard)

    loop.add_reader(handed.fileno(), receive)
    gateway.send("ready")
    while (answer := await read_frame(reader)) is not None:
        gateway.answered(answer)
    # The gateway stopped us, or died: its sessions end here, as they would have with it.
    # Nothing waiting was acknowledged; a client whose message the gateway committed but
    # whose 250 never came sends it again, and that is recognised as a retry.
    os._exit(0)


async def _serve_session(
    sessions: Callable[[], Any], gateway: _Gateway, conn: socket.socket, host: str
) -> None:
    """Serve one handed-over connection; one that cannot be served is counted out at once."""
    try:
        await asyncio.get_running_loop().connect_accepted_socket(sessions, sock=conn)
    except OSError as exc:  # the client went away before we got to it
        log.info("smtp_session_lost", peer=host, error=str(exc))
        conn.close()
        gateway.close(host)


def main() -> None:
    """Entry point of an SMTP ingress process (`python -m gateway.ingress.smtp_process`)."""
    start: tuple[SmtpSettings, LogSettings, str, int] = become_child()
    settings, log_settings, event_loop, sockets_fd = start
    logging.configure(log_settings.format, log_settings.level, final=True)
    structlog.contextvars.bind_contextvars(process="smtp")
    run = uvloop.run if event_loop == "uvloop" else asyncio.run
    with contextlib.suppress(BrokenPipeError, ConnectionResetError):  # the gateway went first
        run(serve(settings, sockets_fd))


if __name__ == "__main__":
    main()
