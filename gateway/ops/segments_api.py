"""The segments API: stream a list into a named segment, and list what is loaded.

`PUT /api/v1/segments/{name}` reads the body as it arrives (text: one address per line;
CSV: a header naming the address column), so the gateway's memory does not grow with the
upload. Like every other non-JSON body, the reason comes as a query parameter.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass

from aiohttp import web

from gateway.audience.loader import SegmentLoader, UploadTooLarge
from gateway.ops import routes
from gateway.ops import schemas as s
from gateway.ops.auth import Gate
from gateway.ops.bodies import MAX_NAME, MAX_REASON, printable
from gateway.ops.exchange import BODY_TIMEOUT, respond, wrong
from gateway.ops.openapi import Handlers
from gateway.ops.problems import Problem
from gateway.settings import SegmentSettings
from gateway.spool.base import Spool

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")
UPLOAD_CHUNK = 64 * 1024
FORMATS = {"text/plain": False, "text/csv": True, "application/csv": True}


def _text_problems(
    field: str, value: str, limit: int, *, multiline: bool = False
) -> list[dict[str, str]]:
    """Return the problems of a query parameter held to the rules of the JSON bodies' text."""
    if len(value) > limit:
        return [{"field": field, "detail": f"at most {limit} characters"}]
    try:
        printable(value, multiline=multiline)
    except ValueError as exc:
        return [{"field": field, "detail": str(exc)}]
    return []


async def _chunks(request: web.Request, wait: float) -> AsyncIterator[bytes]:
    """Yield the body's pieces as they arrive; TimeoutError if one takes over `wait` s.

    An upload may be long, so the limit is on each wait, not on the whole body.
    """
    pieces = request.content.iter_chunked(UPLOAD_CHUNK).__aiter__()
    while True:
        try:
            async with asyncio.timeout(wait):
                piece = await anext(pieces)
        except StopAsyncIteration:
            return
        yield piece


@dataclass(eq=False)  # handlers are bound methods: keep identity hashing
class SegmentsApi(Handlers):
    """Handlers of /api/v1/segments."""

    spool: Spool
    gate: Gate
    loader: SegmentLoader
    settings: SegmentSettings

    ROUTES = routes.SEGMENTS

    async def list_segments(self, request: web.Request) -> web.Response:
        """GET /segments: name, size, source and load time of every segment."""
        await self.gate.caller(request, "read", "list segments", "segments")
        segments = await self.spool.segments()
        return respond(
            s.SegmentList(items=[s.Segment.model_validate(x) for x in segments], next=None)
        )

    async def upload(self, request: web.Request) -> web.Response:
        """PUT /segments/{name}?reason=: replace the segment with the streamed list."""
        name = request.match_info["name"]
        caller = await self.gate.caller(request, "operate", "upload segment", name)
        reason = request.query.get("reason", "")
        problems = []
        if not _NAME.match(name):
            problems.append(
                {"field": "name", "detail": "letters, digits, '.', '_' or '-', 100 at most"}
            )
        if not reason:
            problems.append(
                {"field": "reason", "detail": "give ?reason= (written to the audit log)"}
            )
        else:
            problems += _text_problems("reason", reason, MAX_REASON, multiline=True)
        column = request.query.get("column")
        if column is not None:
            problems += _text_problems("column", column, MAX_NAME)
        if request.content_type not in FORMATS:
            raise Problem(
                415,
                "send text/plain (one address per line) or text/csv",
                slug="unsupported-media-type",
            )
        if problems:
            raise Problem(
                422,
                "invalid input: " + ", ".join(p["field"] for p in problems),
                slug="invalid-input",
                errors=problems,
            )
        try:
            report = await self.loader.load(
                name,
                _chunks(request, request.app.get(BODY_TIMEOUT, 30.0)),
                csv_format=FORMATS[request.content_type],
                column=column,
                source="upload",
                loaded_by=caller.name,
                max_bytes=self.settings.max_upload_size,
            )
        except TimeoutError:
            detail = "the upload stalled: nothing arrived for http.body_timeout"
            raise Problem(408, detail, slug="body-timeout") from None
        except UploadTooLarge as exc:
            raise Problem(413, f"{exc} (segments.max_upload_size)", slug="too-large") from None
        except ValueError as exc:
            raise wrong("column", str(exc), str(exc)) from None
        await self.gate.audit(
            caller.name,
            "upload segment",
            name,
            reason,
            "ok",
            size=report.segment.size,
            invalid=report.segment.invalid,
            version=report.segment.version,
        )
        return respond(
            s.SegmentLoad.model_validate(
                {
                    **dict(s.Segment.model_validate(report.segment)),
                    "duplicates": report.duplicates,
                    "blank": report.stats.blank,
                    "invalid_samples": report.stats.invalid_samples,
                    "replaced_version": report.replaced_version,
                }
            )
        )
