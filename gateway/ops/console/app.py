"""The console's aiohttp sub-application: routes, security headers, sign-in and sessions.

Mounted at /console/ on the ops listener. Every page needs a signed-in session; every
POST needs that session's CSRF token (403 without it); every answer carries a strict
Content-Security-Policy (scripts only from /console/static, nothing inline, no framing)
and `no-store`. Errors are pages, not problem documents. Reading and deciding are in
`pages` and `actions`; this module owns who the visitor is.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import aiohttp_jinja2
import jinja2
import structlog
from aiohttp import web
from multidict import MultiDictProxy

from gateway.ops.api import OpsApi
from gateway.ops.auth import Gate, Principal, token_hash
from gateway.ops.console import views
from gateway.ops.console.sessions import COOKIE, SIGNIN_COOKIE, Session, SessionStore, same
from gateway.ops.console.sessions import set_cookie as _set_cookie
from gateway.ops.problems import Problem
from gateway.policy.loader import PolicySet
from gateway.settings import ConsoleSettings
from gateway.spool.base import Spool

log = structlog.get_logger(__name__)
STATIC = Path(__file__).resolve().parent / "static"
PAGE_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:;"
    " connect-src 'self'; frame-src 'self'; form-action 'self'; base-uri 'none';"
    " frame-ancestors 'none'"
)
SIGN_IN = "sign in to console"
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
FormValue = str | bytes | Any


@dataclass(frozen=True)
class Visitor:
    """A signed-in reviewer: the session and the principal of its token, looked up now."""

    cookie: str
    session: Session
    principal: Principal

    @property
    def may_operate(self) -> bool:
        """Whether action buttons are shown (the API's gate decides when one is used)."""
        return self.principal.may("operate")


class Console:
    """What the console's handlers share: spool, gate, the API's decisions, sessions."""

    def __init__(
        self,
        spool: Spool,
        gate: Gate,
        api: OpsApi,
        settings: ConsoleSettings,
        *,
        policies: Callable[[], PolicySet],
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.spool = spool
        self.gate = gate
        self.api = api
        self.settings = settings
        self.policies = policies
        self.clock = clock
        self.sessions = SessionStore(settings, clock)

    def mount(self, app: web.Application) -> None:
        """Add the console under /console/ to the ops application."""
        from gateway.ops.console.actions import Actions  # noqa: PLC0415 - they import this module
        from gateway.ops.console.pages import Pages  # noqa: PLC0415

        sub = web.Application(middlewares=[self._pages_middleware])
        env = aiohttp_jinja2.setup(
            sub,
            loader=jinja2.PackageLoader("gateway.ops.console", "templates"),
            autoescape=jinja2.select_autoescape(default=True, default_for_string=True),
            undefined=jinja2.StrictUndefined,
        )
        env.filters["age"] = views.age
        pages, actions = Pages(self), Actions(self)
        sub.add_routes(
            [
                web.get("/", self.home),
                web.get("/signin", self.signin_form),
                web.post("/signin", self.signin),
                web.post("/signout", self.signout),
                web.get("/campaigns", pages.campaigns),
                web.get("/campaigns/rows", pages.campaign_rows),
                web.get("/campaigns/{id}", pages.campaign),
                web.post("/campaigns/{id}/{action:hold|release|reject}", actions.decide),
                web.get("/messages/{id}/render", pages.message_frame),
                web.get("/messages/{id}/raw", pages.message_raw),
                web.get("/audit", pages.audit),
                web.get("/policies", pages.policy_set),
            ]
        )
        sub.router.add_static("/static", STATIC)
        app.add_subapp("/console", sub)
        app.router.add_get("/console", self.home)

    # -- who is asking --------------------------------------------------------------------

    def over_tls(self, request: web.Request) -> bool:
        """Tell whether the browser reached us over TLS (directly, or through a trusted proxy)."""
        if request.scheme == "https":
            return True
        forwarded = request.headers.get("X-Forwarded-Proto", "")
        last = forwarded.rsplit(",", 1)[-1].strip().lower()
        return last == "https" and self.gate.trusts(request)

    async def visitor(self, request: web.Request) -> Visitor:
        """Return the signed-in visitor, or answer with the sign-in page (403 for a POST)."""
        cookie = request.cookies.get(COOKIE, "")
        session = self.sessions.get(cookie)
        principal = None if session is None else await self.gate.known(session.token_sha256)
        if session is None or principal is None:
            self.sessions.end(cookie)  # a revoked token's session ends with it
            if request.method != "GET":
                raise Problem(403, "you are not signed in (any more); sign in again")
            raise web.HTTPSeeOther(f"/console/signin?next={quote(request.path_qs)}")
        await self.gate.allow(request, principal, "read", "read console", request.path)
        return Visitor(cookie, session, principal)

    async def poster(self, request: web.Request) -> tuple[Visitor, MultiDictProxy[FormValue]]:
        """Return the visitor of a POST and its form, once its CSRF token is checked."""
        visitor = await self.visitor(request)
        form = await request.post()
        if not same(text(form, "csrf"), visitor.session.csrf):
            log.warning("console_csrf_refused", actor=visitor.principal.name, path=request.path)
            raise Problem(403, "this form did not come from your console session; reload the page")
        return visitor, form

    async def page(
        self,
        request: web.Request,
        template: str,
        visitor: Visitor | None,
        status: int = 200,
        **context: Any,
    ) -> web.Response:
        """Render a page with what every page shows: who is signed in, the pause banner."""
        base = {
            "visitor": visitor,
            "csrf": visitor.session.csrf if visitor else "",
            "notice": visitor.session.pop_notice() if visitor else None,
            "paused": await self.spool.relay_paused() if visitor else False,
            "path": request.path,
        }
        return aiohttp_jinja2.render_template(template, request, base | context, status=status)

    # -- signing in and out ---------------------------------------------------------------

    async def home(self, _request: web.Request) -> web.StreamResponse:
        """/console/: the held campaigns."""
        return _redirect("/console/campaigns")

    async def signin_form(self, request: web.Request) -> web.StreamResponse:
        """GET /console/signin: the token form (a signed-in visitor goes on)."""
        wanted = _next(request.query.get("next"))
        if self.sessions.get(request.cookies.get(COOKIE)) is not None:
            return _redirect(wanted)
        return await self._signin_page(request, wanted, signed_out="signed_out" in request.query)

    async def _signin_page(
        self,
        request: web.Request,
        wanted: str,
        *,
        error: str = "",
        status: int = 200,
        signed_out: bool = False,
    ) -> web.Response:
        """Render the token form with a fresh CSRF value, also set in its own cookie."""
        value = secrets.token_urlsafe(32)
        response = await self.page(
            request,
            "signin.html",
            None,
            status,
            signin_csrf=value,
            next=wanted,
            error=error,
            signed_out=signed_out,
        )
        _set_cookie(
            response,
            SIGNIN_COOKIE,
            value,
            secure=self.over_tls(request),
            max_age=3600,
            path="/console/signin",
        )
        return response

    async def signin(self, request: web.Request) -> web.StreamResponse:
        """POST /console/signin: check the token as the API would, open a session."""
        form = await request.post()
        expected = request.cookies.get(SIGNIN_COOKIE, "")
        if not expected or not same(text(form, "csrf"), expected):
            raise Problem(403, "this sign-in form did not come from this console; reload it")
        token = text(form, "token") or ""
        try:
            principal = await self.gate.signing_in(request, token, "read", SIGN_IN, "console")
        except Problem as problem:
            wanted = _next(text(form, "next"))
            response = await self._signin_page(
                request, wanted, error=problem.detail, status=problem.status
            )
            if "Retry-After" in problem.headers:  # not WWW-Authenticate: no browser dialog
                response.headers["Retry-After"] = problem.headers["Retry-After"]
            return response
        cookie, _session = self.sessions.start(token_hash(token.strip()), principal.name)
        log.info(
            "console_signed_in",
            actor=principal.name,
            roles=sorted(principal.roles),
            client=self.gate.client(request),
        )
        response = _redirect(_next(text(form, "next")))
        secure = self.over_tls(request)
        _set_cookie(response, COOKIE, cookie, secure=secure, max_age=self.settings.session_lifetime)
        response.del_cookie(SIGNIN_COOKIE, path="/console/signin")
        return response

    async def signout(self, request: web.Request) -> web.StreamResponse:
        """POST /console/signout: end the session."""
        visitor, _form = await self.poster(request)
        self.sessions.end(visitor.cookie)
        log.info("console_signed_out", actor=visitor.principal.name)
        response = _redirect("/console/signin?signed_out")
        response.del_cookie(COOKIE, path="/console")
        return response

    # -- every answer ---------------------------------------------------------------------

    @web.middleware
    async def _pages_middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        """Render refusals and errors as pages; put the security headers on every answer."""
        try:
            response = await handler(request)
        except Problem as problem:
            response = await self._error(request, problem.status, problem.detail)
            response.headers.update(problem.headers)
        except web.HTTPException as exc:
            if exc.status < 400:
                response = _redirect(exc.headers.get("Location", "/console/"), exc.status)
            else:
                response = await self._error(request, exc.status, exc.reason)
        headers = response.headers
        headers.setdefault("Content-Security-Policy", PAGE_CSP)
        headers.setdefault("X-Frame-Options", "DENY")
        headers["X-Content-Type-Options"] = "nosniff"
        headers["Referrer-Policy"] = "same-origin"
        headers["Cross-Origin-Opener-Policy"] = "same-origin"
        static = request.path.startswith("/console/static/")
        headers["Cache-Control"] = "no-cache" if static else "no-store"
        return response

    async def _error(self, request: web.Request, status: int, detail: str) -> web.Response:
        context: dict[str, Any] = {"visitor": None, "notice": None, "paused": False, "csrf": ""}
        context |= {"path": request.path, "status": status, "detail": detail}
        return aiohttp_jinja2.render_template("error.html", request, context, status=status)


def text(form: MultiDictProxy[FormValue], name: str) -> str | None:
    """Return a form field's text, or None when it is missing or a file."""
    value = form.get(name)
    return value if isinstance(value, str) else None


def _next(value: str | None) -> str:
    """Where to go after signing in: a console page, never another site."""
    if value and value.startswith("/console/") and not value.startswith("/console/signin"):
        return value
    return "/console/campaigns"


def _redirect(location: str, status: int = 303) -> web.Response:
    return web.Response(status=status, headers={"Location": location})
