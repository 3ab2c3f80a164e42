"""Route rows, and the OpenAPI 3.1 document generated from them.

A `Route` (method, path, handler, summary, parameters, request model, answer models,
problem statuses) is one row of the table in `gateway.ops.routes`; the application
registers exactly those rows and serves `document()` of them at /api/v1/openapi.json. Components
come from the pydantic models of `gateway.ops.schemas`, which the handlers serialise
through, so the document describes what is served. Must not hold handlers' logic.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

from aiohttp import web
from pydantic import BaseModel
from pydantic.json_schema import JsonSchemaMode, models_json_schema

from gateway import __version__
from gateway.ops.problems import CONTENT_TYPE as PROBLEM_CONTENT_TYPE
from gateway.ops.schemas import ProblemDetails

BASE = "/api/v1"
JSON = "application/json"
REF = "#/components/schemas/{model}"
_PATTERN = re.compile(r"\{(\w+)(?::[^}]*)?\}")  # aiohttp's {name} or {name:regex}


@dataclass(frozen=True, slots=True)
class Param:
    """A query parameter."""

    name: str
    description: str
    schema: Mapping[str, Any] = field(default_factory=lambda: {"type": "string"})
    required: bool = False


@dataclass(frozen=True, slots=True)
class Route:
    """One route: what the router registers and what the document says about it."""

    method: Literal["GET", "POST", "PUT"]
    path: str  # aiohttp syntax; `{key:.+}` is documented as `{key}`
    handler: str  # attribute of the handlers' owner
    summary: str
    # Answers by status: a model for JSON, or the media type of a body without a schema.
    answers: Mapping[int, type[BaseModel] | str]
    query: tuple[Param, ...] = ()
    body: type[BaseModel] | None = None
    # Media types of a body that is not JSON (an upload), each with an example.
    upload: Mapping[str, str] = field(default_factory=dict)
    problems: tuple[int, ...] = ()  # besides those implied by auth and a body
    # Problem documents of a status that may have more members than `ProblemDetails`.
    problem_shapes: Mapping[int, type[BaseModel]] = field(default_factory=dict)
    auth: bool = True
    any_token: bool = False  # every role may call it: no 403

    @property
    def documented_path(self) -> str:
        """The path in OpenAPI syntax."""
        return _PATTERN.sub(r"{\1}", self.path)

    def problem_statuses(self) -> list[int]:
        """Every status this route may answer with a problem document."""
        implied: tuple[int, ...] = ()
        if self.auth:
            implied = (401, 429) if self.any_token else (401, 403, 429)
        if self.body is not None:
            implied += (400, 408, 413, 415, 422)
        if self.upload:
            implied += (408, 413, 415, 422)
        return sorted({*implied, *self.problems})


class Handlers:
    """Base of a handler class whose routes are the rows of its `ROUTES` table."""

    ROUTES: ClassVar[tuple[Route, ...]] = ()

    def routes(self) -> list[web.RouteDef]:
        """Every route of the table, bound to this object's handlers."""
        return bind(self, self.ROUTES)


def bind(owner: object, routes: Iterable[Route]) -> list[web.RouteDef]:
    """Return aiohttp route definitions of `routes`, handled by `owner`'s attributes."""
    return [web.route(r.method, r.path, getattr(owner, r.handler)) for r in routes]


Refs = Mapping[tuple[Any, JsonSchemaMode], dict[str, Any]]


def document(routes: Sequence[Route]) -> dict[str, Any]:
    """Return the OpenAPI document of `routes`."""
    models: list[tuple[type[BaseModel], JsonSchemaMode]] = [(ProblemDetails, "serialization")]
    for route in routes:
        answers = [*route.answers.values(), *route.problem_shapes.values()]
        models += [(m, "serialization") for m in answers if not isinstance(m, str)]
        if route.body is not None:
            models.append((route.body, "validation"))
    refs, top = models_json_schema(list(dict.fromkeys(models)), ref_template=REF)
    paths: dict[str, dict[str, Any]] = {}
    for route in routes:
        paths.setdefault(route.documented_path, {})[route.method.lower()] = _operation(route, refs)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "sendbrake ops API",
            "version": __version__,
            "description": "Inspect, hold, release and reject campaigns; pause the relay.",
        },
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "schemas": top.get("$defs", {}),
        },
        "paths": paths,
    }


def _operation(route: Route, refs: Refs) -> dict[str, Any]:
    operation: dict[str, Any] = {"summary": route.summary, "operationId": route.handler}
    parameters = [
        {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
        for name in _PATTERN.findall(route.path)
    ] + [
        {"name": p.name, "in": "query", "required": p.required, "schema": dict(p.schema)}
        | {"description": p.description}
        for p in route.query
    ]
    if parameters:
        operation["parameters"] = parameters
    if route.body is not None:
        schema = refs[(route.body, "validation")]
        operation["requestBody"] = {"required": True, "content": {JSON: {"schema": schema}}}
    if route.upload:
        content = {t: {"schema": {"type": "string"}, "example": e} for t, e in route.upload.items()}
        operation["requestBody"] = {"required": True, "content": content}
    if route.auth:
        operation["security"] = [{"bearer": []}]
    operation["responses"] = _responses(route, refs)
    return operation


def _responses(route: Route, refs: Refs) -> dict[str, Any]:
    responses: dict[str, Any] = {}
    for status, answer in sorted(route.answers.items()):
        if isinstance(answer, str):  # a body without a schema, of this media type
            responses[str(status)] = {"description": answer, "content": {answer: {}}}
            continue
        schema = refs[(answer, "serialization")]
        description = (answer.__doc__ or answer.__name__).split("\n")[0]
        responses[str(status)] = {"description": description, "content": {JSON: {"schema": schema}}}
    for status in route.problem_statuses():
        schema = refs[(ProblemDetails, "serialization")]
        if status in route.problem_shapes:
            schema = {"anyOf": [schema, refs[(route.problem_shapes[status], "serialization")]]}
        responses[str(status)] = {
            "description": "Problem document (RFC 9457)",
            "content": {PROBLEM_CONTENT_TYPE: {"schema": schema}},
        }
    return responses
