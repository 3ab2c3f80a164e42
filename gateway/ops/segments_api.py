"""The segments API: stream a list into a named segment, and list what is loaded.

`PUT /api/v1/segments/{name}` reads the body as it arrives (text: one address per line;
CSV: a header naming the address column), so the gateway's memory does not grow with the
upload. Like every other non-JSON body, the reason comes as a query parameter.
"""

from __future__ import annotations

import re
from typing import Any

from aiohttp import web

from gateway.audience import LoadReport, SegmentLoader, UploadTooLarge
from gateway.model import Segment
from gateway.ops.api import BASE
from gateway.ops.auth import Gate
from gateway.ops.problems import Problem
from gateway.ops.views import timestamp
from gateway.settings import SegmentSettings
from gateway.spool.base import Spool

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")
UPLOAD_CHUNK = 64 * 1024
FORMATS = {"text/plain": False, "text/csv": True, "application/csv": True}


def segment_json(segment: Segment) -> dict[str, Any]:
    """Render a segment as listed."""
    return {
        "name": segment.name,
        "size": segment.size,
        "lines": segment.lines,
        "invalid": segment.invalid,
        "source": segment.source,
        "loaded_by": segment.loaded_by,
        "loaded_at": timestamp(segment.loaded_at),
        "version": segment.version,
    }


def report_json(report: LoadReport) -> dict[str, Any]:
    """Render what an upload did."""
    return {
        **segment_json(report.segment),
        "duplicates": report.duplicates,
        "blank": report.stats.blank,
        "invalid_samples": report.stats.invalid_samples,
        "replaced_version": report.replaced_version,
    }


class SegmentsApi:
    """Handlers of /api/v1/segments."""

    def __init__(
        self, spool: Spool, gate: Gate, loader: SegmentLoader, settings: SegmentSettings
    ) -> None:
        self._spool = spool
        self._gate = gate
        self._loader = loader
        self._settings = settings

    def routes(self) -> list[web.RouteDef]:
        """Every route of this API."""
        return [
            web.get(f"{BASE}/segments", self.list_segments),
            web.put(f"{BASE}/segments/{{name}}", self.upload),
        ]

    async def list_segments(self, request: web.Request) -> web.Response:
        """GET /segments: name, size, source and load time of every segment."""
        await self._gate.caller(request, "read", "list segments", "segments")
        segments = await self._spool.segments()
        return web.json_response({"items": [segment_json(s) for s in segments], "next": None})

    async def upload(self, request: web.Request) -> web.Response:
        """PUT /segments/{name}?reason=: replace the segment with the streamed list."""
        name = request.match_info["name"]
        caller = await self._gate.caller(request, "operate", "upload segment", name)
        reason = request.query.get("reason", "").strip()
        problems = []
        if not _NAME.match(name):
            problems.append(
                {"field": "name", "detail": "letters, digits, '.', '_' or '-', 100 at most"}
            )
        if not reason:
            problems.append(
                {"field": "reason", "detail": "give ?reason= (written to the audit log)"}
            )
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
            report = await self._loader.load(
                name,
                request.content.iter_chunked(UPLOAD_CHUNK),
                csv_format=FORMATS[request.content_type],
                column=request.query.get("column"),
                source="upload",
                loaded_by=caller.name,
                max_bytes=self._settings.max_upload_size,
            )
        except UploadTooLarge as exc:
            raise Problem(413, f"{exc} (segments.max_upload_size)", slug="too-large") from None
        except ValueError as exc:
            raise Problem(
                422,
                str(exc),
                slug="invalid-input",
                errors=[{"field": "column", "detail": str(exc)}],
            ) from None
        await self._gate.audit(
            caller.name,
            "upload segment",
            name,
            reason,
            "ok",
            size=report.segment.size,
            invalid=report.segment.invalid,
            version=report.segment.version,
        )
        return web.json_response(report_json(report))
