"""The aiohttp application: health, metrics, the ops API and its OpenAPI document.

Handlers are thin: they read from the spool and the metrics registry and never hold
state of their own. The application registers exactly the rows of the route tables (this
module's and each API's) and serves the document generated from the same rows.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

import structlog
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from gateway.errors import SpoolError
from gateway.log import SERVER_LOG
from gateway.metrics import Metrics
from gateway.ops import schemas as s
from gateway.ops.exchange import BODY_TIMEOUT, respond
from gateway.ops.gauges import SpoolCollector
from gateway.ops.openapi import Handlers, bind, document
from gateway.ops.problems import problem_middleware
from gateway.ops.routes import PROBES
from gateway.settings import HttpSettings
from gateway.spool.base import Spool

log = structlog.get_logger(__name__)


SPOOL = web.AppKey("spool", Spool)
METRICS = web.AppKey("metrics", Metrics)
GAUGES = web.AppKey("gauges", SpoolCollector)
CLOCK: web.AppKey[Callable[[], float]] = web.AppKey("clock")
DOCUMENT: web.AppKey[dict[str, Any]] = web.AppKey("openapi")


async def healthz(_request: web.Request) -> web.Response:
    """Liveness: the process answers."""
    return respond(s.Health(status="ok"))


async def readyz(request: web.Request) -> web.Response:
    """Readiness: the spool answers, so accepted mail can be stored."""
    try:
        await request.app[SPOOL].ping()
    except SpoolError as exc:
        return respond(s.Unready(status="unavailable", spool=str(exc)), status=503)
    return respond(s.Health(status="ready"))


async def metrics(request: web.Request) -> web.Response:
    """Prometheus text exposition: the registry, with the spool's gauges read just now.

    When the spool cannot be read the scrape fails (503) rather than leaving the held
    gauges out: a scrape without them would resolve "campaign held" alerts silently,
    while a failed scrape fires the "gateway down" one.
    """
    app = request.app
    try:
        snapshot = await app[SPOOL].gauges()
    except SpoolError as exc:
        log.warning("metrics_spool_unavailable", error=str(exc))
        return web.Response(status=503, text=f"spool unavailable: {exc}\n")
    # No await between taking the snapshot and rendering it: concurrent scrapes on this
    # loop cannot interleave here.
    app[GAUGES].update(snapshot, app[CLOCK]())
    body = generate_latest(app[METRICS].registry)
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


async def openapi(request: web.Request) -> web.Response:
    """Serve the OpenAPI document of this application's routes."""
    return web.json_response(request.app[DOCUMENT])


def create_app(
    spool: Spool,
    metrics_: Metrics,
    apis: Sequence[Handlers],
    *,
    http: HttpSettings,
    clock: Callable[[], float] = time.time,
) -> web.Application:
    """Build the aiohttp application with its routes; registers the spool gauges.

    The server's limits go to each connection's handler: a request line, header field or
    header count past them is answered 400 (aiohttp's parser) and the connection closed;
    a connection is closed when its headers have not arrived within `header_timeout`
    (aiohttp arms its keep-alive timer when the connection opens, and a partial request
    does not reset it), so half-sent requests cannot hold connections open.
    """
    limits = {
        "logger": SERVER_LOG,
        "keepalive_timeout": http.header_timeout,
        "max_line_size": http.max_line_size,
        "max_field_size": http.max_field_size,
        "max_headers": http.max_headers,
    }
    app = web.Application(
        client_max_size=http.max_body_size,
        middlewares=[problem_middleware],
        handler_args=limits,
    )
    app[BODY_TIMEOUT] = http.body_timeout
    app[SPOOL] = spool
    app[METRICS] = metrics_
    app[GAUGES] = SpoolCollector()
    app[CLOCK] = clock
    metrics_.registry.register(app[GAUGES])
    app[DOCUMENT] = document([*PROBES, *(route for api in apis for route in api.ROUTES)])
    app.router.add_routes(bind(sys.modules[__name__], PROBES))  # this module's functions
    for api in apis:
        app.router.add_routes(api.routes())
    return app
