"""RFC 9457 problem documents: every error of the HTTP API has this one shape.

Handlers raise `Problem` (or aiohttp's HTTP exceptions); the middleware turns either into
`application/problem+json` with `type`, `title`, `status`, `detail` and, for invalid
input, `errors` naming each wrong field. The shape is `schemas.ProblemDetails`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from http import HTTPStatus
from typing import Any, TypeVar

import structlog
from aiohttp import web
from pydantic import ValidationError

from gateway.ops.schemas import ProblemDetails, ProblemHead

T = TypeVar("T")
log = structlog.get_logger(__name__)

PROBLEM_TYPE = "https://sendbrake.dev/problems/"
# RFC 9110 names, fixed here so titles do not change with the Python version.
_TITLES = {413: "Content Too Large", 422: "Unprocessable Content"}
CONTENT_TYPE = "application/problem+json"


class Problem(Exception):
    """An HTTP error with a problem document."""

    def __init__(
        self,
        status: int,
        detail: str,
        *,
        slug: str | None = None,
        errors: Sequence[dict[str, str]] = (),
        headers: dict[str, str] | None = None,
        shape: type[ProblemHead] = ProblemDetails,
        **extra: Any,
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.slug = slug or HTTPStatus(status).phrase.lower().replace(" ", "-")
        self.errors = list(errors)
        self.headers = headers or {}
        self.shape = shape
        self.extra = extra  # extension members the shape declares

    def response(self, instance: str) -> web.Response:
        """Render as an aiohttp response."""
        body = self.shape.model_validate(
            {
                "type": PROBLEM_TYPE + self.slug,
                "title": _TITLES.get(self.status) or HTTPStatus(self.status).phrase,
                "status": self.status,
                "detail": self.detail,
                "instance": instance,
                **self.extra,
                "errors": self.errors or None,
            }
        )
        return web.json_response(
            body.dump(), status=self.status, content_type=CONTENT_TYPE, headers=self.headers
        )


def found(record: T | None, what: str, key: str) -> T:
    """Return the record, or raise the 404 of a `what` with id `key` that does not exist."""
    if record is None:
        raise Problem(404, f"no {what} with id {key!r}", slug="not-found")
    return record


def invalid(exc: ValidationError) -> Problem:
    """Turn a pydantic validation error of a request body or query into a 422 problem."""
    errors = [
        {"field": ".".join(str(p) for p in e["loc"]) or "body", "detail": str(e["msg"])}
        for e in exc.errors()
    ]
    fields = ", ".join(e["field"] for e in errors)
    return Problem(422, f"invalid input: {fields}", slug="invalid-input", errors=errors)


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@web.middleware
async def problem_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Answer every error as a problem document."""
    try:
        return await handler(request)
    except Problem as problem:
        return problem.response(request.path)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        detail = exc.text if exc.text and not exc.text.startswith(f"{exc.status}:") else exc.reason
        return Problem(exc.status, detail, headers=_allow(exc)).response(request.path)
    except Exception:
        log.exception("http_handler_crashed", path=request.path, method=request.method)
        return Problem(500, "internal error; see the gateway log").response(request.path)


def _allow(exc: web.HTTPException) -> dict[str, str]:
    allow = exc.headers.get("Allow")
    return {"Allow": allow} if allow else {}
