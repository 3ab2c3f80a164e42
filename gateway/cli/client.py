"""A small blocking client for the ops HTTP API (DESIGN.md §4), used by the `sendbrake` commands.

One `request` method does every call: bearer auth, JSON in and out, RFC 9457 problem
documents turned into `ApiError`, and a gateway that does not answer into `Unreachable`.
It knows URLs and JSON, not how to print them; the CLI does that. Standard library only.

ClientError
 ├── Unreachable     nothing answered at the base URL (refused, timed out, bad host)
 └── ApiError        the API answered with an error status; carries the problem document
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlencode

API_PREFIX = "/api/v1"


class ClientError(Exception):
    """Base of the errors this client raises."""


class Unreachable(ClientError):
    """The gateway did not answer at all."""


class ApiError(ClientError):
    """The API answered with an error; the fields are the problem document's."""

    def __init__(
        self, status: int, title: str, detail: str, errors: list[dict[str, Any]] | None = None
    ) -> None:
        super().__init__(f"{status} {title}: {detail}")
        self.status = status
        self.title = title
        self.detail = detail
        self.errors = errors or []


@dataclass(frozen=True)
class Reply:
    """A successful answer: its status (200, 202, …) and decoded JSON body."""

    status: int
    body: Any


def segment(value: str) -> str:
    """Quote one path segment, such as a campaign ID, so it cannot change the path."""
    return quote(value, safe="")


class OpsClient:
    """Calls the ops API at `base_url` with an optional bearer token."""

    def __init__(self, base_url: str, token: str | None = None, *, timeout: float = 30.0) -> None:
        self.base_url = base_url.rstrip("/")
        self.token = token
        self.timeout = timeout

    def request(
        self,
        method: str,
        path: str,
        *,
        query: Mapping[str, str | int | None] | None = None,
        body: Mapping[str, Any] | None = None,
    ) -> Reply:
        """Call `API_PREFIX + path`; raise `ApiError` or `Unreachable` on failure."""
        if not self.base_url.startswith(("http://", "https://")):
            raise Unreachable(f"not an http(s) URL: {self.base_url!r}")
        url = self.base_url + API_PREFIX + path
        params = {k: str(v) for k, v in (query or {}).items() if v is not None}
        if params:
            url += "?" + urlencode(params)
        headers = {"Accept": "application/json, application/problem+json"}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        # The scheme is checked above, so urllib cannot be pointed at file: URLs.
        request = urllib.request.Request(url, data=data, headers=headers, method=method)  # noqa: S310
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:  # noqa: S310
                return Reply(response.status, _json(response.read()))
        except urllib.error.HTTPError as exc:
            raise _problem(exc) from None
        except urllib.error.URLError as exc:
            raise Unreachable(f"cannot reach {self.base_url}: {exc.reason}") from None
        except (TimeoutError, ConnectionError) as exc:
            raise Unreachable(f"cannot reach {self.base_url}: {exc}") from None

    def pages(
        self, path: str, query: Mapping[str, str | int | None], *, follow: bool
    ) -> Iterator[dict[str, Any]]:
        """Yield list pages (`{"items": [...], "next": …}`); follow `next` cursors if asked."""
        cursor: str | None = None
        while True:
            page: dict[str, Any] = self.request("GET", path, query={**query, "cursor": cursor}).body
            yield page
            cursor = page.get("next")
            if not follow or not cursor:
                return


def _json(raw: bytes) -> Any:
    return json.loads(raw) if raw else None


def _problem(exc: urllib.error.HTTPError) -> ApiError:
    """Read an error response as a problem document, or make one from the bare status."""
    raw = exc.read()
    try:
        doc = json.loads(raw)
    except ValueError:
        doc = None
    if not isinstance(doc, dict):
        text = raw.decode("utf-8", "replace").strip()
        return ApiError(exc.code, str(exc.reason), text[:200] or "(no details)")
    errors = doc.get("errors")
    return ApiError(
        status=int(doc.get("status") or exc.code),
        title=str(doc.get("title") or exc.reason),
        detail=str(doc.get("detail") or ""),
        errors=errors if isinstance(errors, list) else [],
    )
