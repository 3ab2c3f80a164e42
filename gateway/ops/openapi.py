"""The OpenAPI 3.1 document of the HTTP surface, served at /api/v1/openapi.json.

Written by hand, next to the handlers it describes; `tests/ops/test_openapi.py` checks
that it lists exactly the routes the application serves, and that documented bodies
match the request models.
"""

from __future__ import annotations

from typing import Any

from gateway import __version__
from gateway.ops.api import ManifestBody, ReasonBody, ReleaseBody
from gateway.ops.policy_api import SignoffBody

_JSON = "application/json"
_PROBLEM = {
    "description": "Problem document (RFC 9457)",
    "content": {"application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}},
}
_ERRORS = {"401": _PROBLEM, "403": _PROBLEM, "404": _PROBLEM, "422": _PROBLEM}
_PAGE = [
    {"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 1, "maximum": 1000}},
    {
        "name": "cursor",
        "in": "query",
        "schema": {"type": "string"},
        "description": "`next` of the previous page",
    },
]


def _ok(schema: str, description: str = "OK") -> dict[str, Any]:
    return {
        "description": description,
        "content": {_JSON: {"schema": {"$ref": f"#/components/schemas/{schema}"}}},
    }


def _body(schema: str) -> dict[str, Any]:
    return {
        "required": True,
        "content": {_JSON: {"schema": {"$ref": f"#/components/schemas/{schema}"}}},
    }


def _id(name: str = "id") -> dict[str, Any]:
    return {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}


def _mutation(summary: str, body: str, *, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "summary": summary,
        "parameters": [_id()],
        "requestBody": _body(body),
        "security": [{"bearer": []}],
        "responses": {"200": _ok("CampaignDetail"), **(extra or {}), "409": _PROBLEM, **_ERRORS},
    }


def document() -> dict[str, Any]:
    """Return the OpenAPI document."""
    campaign_list = {
        "type": "object",
        "required": ["items", "next"],
        "properties": {
            "items": {"type": "array", "items": {"$ref": "#/components/schemas/Campaign"}},
            "next": {"type": ["string", "null"]},
        },
    }
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "sendbrake ops API",
            "version": __version__,
            "description": "Inspect, hold, release and reject campaigns; pause the relay.",
        },
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "schemas": {
                "ReasonBody": ReasonBody.model_json_schema(),
                "ReleaseBody": ReleaseBody.model_json_schema(),
                "ManifestBody": ManifestBody.model_json_schema(),
                "SignoffBody": SignoffBody.model_json_schema(),
                "PolicyReload": {
                    "type": "object",
                    "required": ["version", "previous", "changed", "files", "rules"],
                    "properties": {
                        "version": {"type": "string"},
                        "previous": {"type": "string"},
                        "changed": {"type": "boolean"},
                        "files": {"type": "array", "items": {"type": "string"}},
                        "rules": {"type": "array", "items": {"type": "object"}},
                        "identities": {"type": "array", "items": {"type": "string"}},
                    },
                },
                "Problem": {
                    "type": "object",
                    "required": ["type", "title", "status", "detail"],
                    "properties": {
                        "type": {"type": "string"},
                        "title": {"type": "string"},
                        "status": {"type": "integer"},
                        "detail": {"type": "string"},
                        "instance": {"type": "string"},
                        "errors": {
                            "type": "array",
                            "items": {
                                "type": "object",
                                "properties": {
                                    "field": {"type": "string"},
                                    "detail": {"type": "string"},
                                },
                            },
                        },
                    },
                },
                "Campaign": {
                    "type": "object",
                    "required": [
                        "id",
                        "key",
                        "client",
                        "implicit",
                        "state",
                        "sender",
                        "subject",
                        "declared",
                        "counters",
                        "findings",
                        "created_at",
                        "updated_at",
                    ],
                    "properties": {
                        "id": {"type": "string"},
                        "key": {"type": "string"},
                        "client": {"type": "string"},
                        "implicit": {"type": "boolean"},
                        "state": {"enum": ["open", "held", "released", "rejected"]},
                        "sender": {"type": "string"},
                        "subject": {"type": "string"},
                        "declared": {
                            "type": "object",
                            "properties": {
                                "size": {"type": ["integer", "null"]},
                                "category": {"type": ["string", "null"]},
                                "locale": {"type": ["string", "null"]},
                            },
                        },
                        "counters": {
                            "type": "object",
                            "properties": {
                                name: {"type": "integer"}
                                for name in (
                                    "received",
                                    "queued",
                                    "held",
                                    "relayed",
                                    "deferred",
                                    "failed",
                                    "discarded",
                                    "suppressed",
                                    "escaped",
                                )
                            },
                        },
                        "findings": {
                            "type": "array",
                            "items": {"$ref": "#/components/schemas/Finding"},
                        },
                        "duplicates": {"type": "integer"},
                        "acknowledged": {"type": "array"},
                        "held_at": {"type": ["string", "null"]},
                        "created_at": {"type": "string"},
                        "updated_at": {"type": "string"},
                    },
                },
                "CampaignDetail": {
                    "allOf": [
                        {"$ref": "#/components/schemas/Campaign"},
                        {
                            "type": "object",
                            "properties": {
                                "signoffs": {"type": "array", "items": {"type": "object"}},
                                "signoffs_missing": {"type": "array", "items": {"type": "string"}},
                                "sample": {"type": ["object", "null"]},
                                "timeline": {"type": "array"},
                                "recipients_url": {"type": "string"},
                            },
                        },
                    ]
                },
                "Finding": {
                    "type": "object",
                    "required": [
                        "rule",
                        "kind",
                        "mode",
                        "message",
                        "evidence",
                        "policy_version",
                        "at",
                    ],
                    "properties": {
                        "rule": {"type": "string"},
                        "kind": {"type": "string"},
                        "mode": {"enum": ["enforce", "shadow"]},
                        "message": {"type": "string"},
                        "evidence": {"type": "object"},
                        "policy_version": {"type": "string"},
                        "at": {"type": "string"},
                        "count": {"type": "integer"},
                    },
                },
                "CampaignList": campaign_list,
                "Page": {
                    "type": "object",
                    "required": ["items", "next"],
                    "properties": {
                        "items": {"type": "array"},
                        "next": {"type": ["string", "null"]},
                    },
                },
                "Message": {"type": "object"},
                "Manifest": {"type": "object"},
                "SegmentLoad": {
                    "type": "object",
                    "properties": {
                        "name": {"type": "string"},
                        "size": {"type": "integer"},
                        "lines": {"type": "integer"},
                        "invalid": {"type": "integer"},
                        "duplicates": {"type": "integer"},
                        "invalid_samples": {"type": "array"},
                        "version": {"type": "integer"},
                        "replaced_version": {"type": ["integer", "null"]},
                    },
                },
                "Relay": {"type": "object", "properties": {"paused": {"type": "boolean"}}},
                "Health": {"type": "object", "properties": {"status": {"type": "string"}}},
            },
        },
        "paths": {
            "/healthz": {"get": {"summary": "Liveness", "responses": {"200": _ok("Health")}}},
            "/readyz": {
                "get": {
                    "summary": "Readiness (the spool answers)",
                    "responses": {"200": _ok("Health"), "503": _ok("Health", "Not ready")},
                }
            },
            "/metrics": {
                "get": {
                    "summary": "Prometheus metrics",
                    "responses": {"200": {"description": "Prometheus text format"}},
                }
            },
            "/api/v1/openapi.json": {
                "get": {
                    "summary": "This document",
                    "responses": {"200": {"description": "OpenAPI"}},
                }
            },
            "/api/v1/campaigns": {
                "get": {
                    "summary": "List campaigns, newest first",
                    "security": [{"bearer": []}],
                    "parameters": [
                        {
                            "name": "state",
                            "in": "query",
                            "schema": {"enum": ["open", "held", "released", "rejected"]},
                        },
                        *_PAGE,
                    ],
                    "responses": {"200": _ok("CampaignList"), **_ERRORS},
                }
            },
            "/api/v1/campaigns/{id}": {
                "get": {
                    "summary": "A campaign with findings, sample message and timeline",
                    "security": [{"bearer": []}],
                    "parameters": [_id()],
                    "responses": {"200": _ok("CampaignDetail"), **_ERRORS},
                }
            },
            "/api/v1/campaigns/{key}": {
                "put": {
                    "summary": "Register a campaign's declaration (manifest); it wins over headers",
                    "security": [{"bearer": []}],
                    "parameters": [_id("key")],
                    "requestBody": _body("ManifestBody"),
                    "responses": {"200": _ok("Manifest"), **_ERRORS},
                }
            },
            "/api/v1/campaigns/{id}/recipients": {
                "get": {
                    "summary": "A campaign's recipients",
                    "security": [{"bearer": []}],
                    "parameters": [
                        _id(),
                        {"name": "state", "in": "query", "schema": {"type": "string"}},
                        *_PAGE,
                    ],
                    "responses": {"200": _ok("Page"), **_ERRORS},
                }
            },
            "/api/v1/campaigns/{id}/hold": {
                "post": _mutation("Hold a campaign (kill switch)", "ReasonBody")
            },
            "/api/v1/campaigns/{id}/release": {
                "post": _mutation(
                    "Release held recipients (all or max_recipients); large releases need two operators",
                    "ReleaseBody",
                    extra={
                        "202": {
                            "description": "Approval recorded; a second operator must release too"
                        }
                    },
                )
            },
            "/api/v1/campaigns/{id}/reject": {
                "post": _mutation("Reject: discard held mail, refuse later mail", "ReasonBody")
            },
            "/api/v1/campaigns/{id}/signoffs": {
                "post": _mutation(
                    "Register a protected identity's sign-off (its own token, or an admin on its"
                    " behalf); releases a campaign that only waited for sign-offs",
                    "SignoffBody",
                )
            },
            "/api/v1/policies/reload": {
                "post": {
                    "summary": "Reload the policy files; an invalid set keeps the old one (422)",
                    "security": [{"bearer": []}],
                    "requestBody": _body("ReasonBody"),
                    "responses": {"200": _ok("PolicyReload"), **_ERRORS},
                }
            },
            "/api/v1/messages/{id}": {
                "get": {
                    "summary": "A message: headers, decoded preview, recipients",
                    "security": [{"bearer": []}],
                    "parameters": [_id()],
                    "responses": {"200": _ok("Message"), **_ERRORS},
                }
            },
            "/api/v1/messages/{id}/raw": {
                "get": {
                    "summary": "The message as it will be relayed",
                    "security": [{"bearer": []}],
                    "parameters": [_id()],
                    "responses": {
                        "200": {
                            "description": "RFC 5322 message",
                            "content": {"message/rfc822": {}},
                        },
                        **_ERRORS,
                    },
                }
            },
            "/api/v1/relay": {
                "get": {
                    "summary": "Whether the relay is paused",
                    "security": [{"bearer": []}],
                    "responses": {"200": _ok("Relay"), **_ERRORS},
                }
            },
            "/api/v1/relay/pause": {
                "post": {
                    "summary": "Pause all relaying (ingest keeps accepting)",
                    "security": [{"bearer": []}],
                    "requestBody": _body("ReasonBody"),
                    "responses": {"200": _ok("Relay"), **_ERRORS},
                }
            },
            "/api/v1/relay/resume": {
                "post": {
                    "summary": "Resume relaying",
                    "security": [{"bearer": []}],
                    "requestBody": _body("ReasonBody"),
                    "responses": {"200": _ok("Relay"), **_ERRORS},
                }
            },
            "/api/v1/segments": {
                "get": {
                    "summary": "Segments: name, size, source, loaded at",
                    "security": [{"bearer": []}],
                    "responses": {"200": _ok("Page"), **_ERRORS},
                }
            },
            "/api/v1/segments/{name}": {
                "put": {
                    "summary": "Replace a segment with a streamed list (atomic)",
                    "security": [{"bearer": []}],
                    "parameters": [
                        _id("name"),
                        {
                            "name": "reason",
                            "in": "query",
                            "required": True,
                            "schema": {"type": "string"},
                        },
                        {
                            "name": "column",
                            "in": "query",
                            "schema": {"type": "string"},
                            "description": "CSV column with the address (default: a column named email)",
                        },
                    ],
                    "requestBody": {
                        "required": True,
                        "content": {
                            "text/plain": {
                                "schema": {"type": "string"},
                                "example": "ada@example.org\nbob@example.org\n",
                            },
                            "text/csv": {
                                "schema": {"type": "string"},
                                "example": "email,name\nada@example.org,Ada\n",
                            },
                        },
                    },
                    "responses": {
                        "200": _ok("SegmentLoad"),
                        "413": _PROBLEM,
                        "415": _PROBLEM,
                        **_ERRORS,
                    },
                }
            },
            "/api/v1/audit": {
                "get": {
                    "summary": "The audit log, newest first",
                    "security": [{"bearer": []}],
                    "parameters": _PAGE,
                    "responses": {"200": _ok("Page"), **_ERRORS},
                }
            },
        },
    }
