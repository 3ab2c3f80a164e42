"""Reading requests and writing answers, the same way for every handler of the ops API.

JSON bodies are validated through their models, enum and paging query parameters are
parsed once here, and each wrong input becomes a problem document naming the field. Lists
are paged with `?limit=&cursor=` into `{"items": [...], "next": ...}`; answers are
serialised from the models of `gateway.ops.schemas`. Must not talk to the spool.
"""

from __future__ import annotations

import asyncio
import enum
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from aiohttp import web
from pydantic import BaseModel, ValidationError

from gateway.ops.problems import Problem, invalid
from gateway.ops.schemas import Out, Page
from gateway.ops.views import decode_cursor, encode_cursor, shown

B = TypeVar("B", bound=BaseModel)
E = TypeVar("E", bound=enum.Enum)
P = TypeVar("P", bound=Page[Any])
MAX_PAGE = 1000
BODY_TIMEOUT = web.AppKey("body_timeout", float)  # seconds to receive a JSON body
MAX_ID = 200  # characters of an ID in a path; the gateway's own are 26
MAX_ROW = 2**63 - 1  # the largest row id either spool stores
_DIGITS = re.compile(r"[0-9]{1,19}")
_FOREIGN_CURSOR = "cursor is not one this API returned"


def wrong(field: str, detail: str, message: str) -> Problem:
    """Return the 422 problem of one wrong input field."""
    return Problem(422, message, slug="invalid-input", errors=[{"field": field, "detail": detail}])


def plausible_id(value: str, what: str) -> str:
    """Return an ID from a path, or raise the 404 of one no record can have.

    Too long, or with control characters or lone surrogates: the spool is not asked
    (PostgreSQL refuses NUL in text, and such a lookup would be a 500, not a 404).
    """
    if len(value) > MAX_ID or not value.isprintable():
        raise Problem(404, f"no {what} with id {shown(value)!r}", slug="not-found")
    return value


async def read_body(request: web.Request, model: type[B]) -> B:
    """Parse and validate a JSON body; wrong input is a 422 naming each field."""
    if request.content_type != "application/json":
        raise Problem(415, "send the body as application/json", slug="unsupported-media-type")
    try:
        async with asyncio.timeout(request.app.get(BODY_TIMEOUT, 30.0)):
            raw = await request.read()
        # JSON is UTF-8 (RFC 8259): a declared charset is not used, so an unknown one
        # cannot fail the decoding.
        data = json.loads(raw)
    except TimeoutError:
        raise Problem(408, "the body did not arrive in time", slug="body-timeout") from None
    except ValueError:
        raise Problem(400, "the body is not valid JSON", slug="invalid-json") from None
    except RecursionError:  # json.loads of thousands of nested arrays
        raise Problem(400, "the body's JSON is nested too deeply", slug="invalid-json") from None
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise invalid(exc) from None


def query_enum(request: web.Request, kind: type[E], field: str) -> E | None:
    """Read an optional query parameter that must be one of an enum's values."""
    value = request.query.get(field)
    if value is None:
        return None
    try:
        return kind(value)
    except ValueError:
        allowed = ", ".join(str(v.value) for v in kind)
        raise wrong(field, f"one of {allowed}", f"{field} must be one of {allowed}") from None


@dataclass(frozen=True, slots=True)
class PageQuery:
    """`?limit=&cursor=` of a list call, checked."""

    limit: int
    cursor: str | None  # decoded: the id of the last row of the previous page

    @classmethod
    def of(cls, request: web.Request, default_limit: int) -> PageQuery:
        """Read the paging parameters; a wrong one is a 422 naming it."""
        raw = request.query.get("limit")
        # ASCII digits only: str.isdigit() also takes "²", which int() refuses.
        if raw is not None and (not _DIGITS.fullmatch(raw) or not 1 <= int(raw) <= MAX_PAGE):
            rule = f"a whole number from 1 to {MAX_PAGE}"
            raise wrong("limit", rule, f"limit must be {rule}")
        cursor = request.query.get("cursor")
        try:
            decoded = None if cursor is None else decode_cursor(cursor)
        except ValueError:
            raise wrong(
                "cursor", "use the `next` value of a previous page", _FOREIGN_CURSOR
            ) from None
        return cls(default_limit if raw is None else int(raw), decoded)

    @property
    def fetch(self) -> int:
        """How many rows to ask for: one more than a page tells whether another follows."""
        return self.limit + 1

    def number(self) -> int | None:
        """Return the cursor as a row number, for lists keyed by integer ids; 422 if not one."""
        if self.cursor is None:
            return None
        if not _DIGITS.fullmatch(self.cursor) or int(self.cursor) > MAX_ROW:
            raise wrong("cursor", "use the `next` value of a previous page", _FOREIGN_CURSOR)
        return int(self.cursor)

    def page(self, model: type[P], rows: Sequence[Any]) -> P:
        """Render up to `limit` of the fetched rows, and the cursor of the next page."""
        items = rows[: self.limit]
        more = len(rows) > self.limit
        return model.model_validate(
            {"items": items, "next": encode_cursor(items[-1].id) if more else None}
        )


def respond(answer: Out, status: int = 200) -> web.Response:
    """Serialise an answer model as the JSON response."""
    return web.json_response(answer.dump(), status=status)
