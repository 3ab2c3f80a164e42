"""Fuzzing the ops API from its own OpenAPI document: no input makes it answer 5xx.

Hypothesis draws requests for every operation of `/api/v1/openapi.json`: path IDs
(real and hostile), query parameters by their schema and beyond it, JSON bodies by their
schema, off it, nested thousands deep or not JSON at all, under any content type, with any
of the test tokens or none. Every answer must be below 500, and every problem document
must have the project's shape with the answer's status. The gateway runs in a thread of
its own (Hypothesis's test is synchronous) with the failed-token limit out of the way.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import http.client
import json
import queue
import smtplib
import threading
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote, urlencode

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.ops.schemas import ProblemDetails
from tests.harness import (
    IDENTITY_TOKENS,
    TOKENS,
    held_campaign,
    make_settings,
    run_gateway,
    send_campaign,
)
from tests.mail import message

PROMO = message(X_Campaign_ID="promo", X_Declared_Size="5")  # the first campaign's mail
EXAMPLES = 60  # per operation and kind (well-formed or not): about 20 s in all

HOSTILE_TEXT = st.sampled_from(
    ["", " ", "\t\n", "\x00", "\ud800", "\x1b[2J", "x" * 1001, "²", "١٢", "9" * 40, "%", "../"]
)
PLAIN_TEXT = st.sampled_from(["ok", "vip", "promo", "en", "*", "127.0.0.0/8", "ceo"])
TEXT = st.one_of(PLAIN_TEXT, st.text(max_size=40), HOSTILE_TEXT)
# Cursors as the API makes them (base64 of a value), of hostile values.
CURSORS = TEXT.map(lambda t: base64.urlsafe_b64encode(raw(t)).decode().rstrip("=")) | TEXT
BOUNDARIES = [0, 1, -1, 2**31 - 1, 2**31, 2**63 - 1, 2**63, 2**64, 10**30, -(10**30)]
INTEGERS = st.one_of(st.integers(-3, 100), st.integers(), st.sampled_from(BOUNDARIES))
ANY_JSON = st.recursive(
    st.none() | st.booleans() | st.floats(allow_nan=False) | INTEGERS | TEXT,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(TEXT, inner, max_size=3),
    max_leaves=8,
)
CONTENT_TYPES = st.sampled_from(
    [
        *["application/json"] * 8,
        "application/json; charset=latin-1",
        "application/json; charset=no-such-charset",
        "text/plain",
        "text/csv",
        "application/x-www-form-urlencoded",
        "",
    ]
)
HEADER_TEXT = st.text(
    alphabet=st.characters(max_codepoint=255, blacklist_characters="\r\n\x00"), max_size=60
)


@contextlib.contextmanager
def gateway_thread(tmp_path: Any) -> Iterator[tuple[str, int, dict[str, str], dict[str, Any]]]:
    """Run a gateway on a loop of its own; yield host, port, known IDs and its document."""
    gateway_settings = make_settings(
        tmp_path, ops={"auth_max_failures": 10**9, "two_person_release_above": 10**6}
    )
    handed: queue.Queue[Any] = queue.Queue()

    async def main() -> None:
        stop = asyncio.Event()
        async with run_gateway(gateway_settings) as gw:
            campaign_id = await held_campaign(gw, 60)
            victim = await send_campaign(gw, "victim", ["v@example.org"])
            _, detail = await gw.api().get(f"/api/v1/campaigns/{campaign_id}")
            _, doc = await gw.api().get("/api/v1/openapi.json")
            ids = {
                "smtp": "{}:{}".format(*gw.addresses.smtp),
                "id": campaign_id,
                "victim": victim,
                "message": detail["sample"]["id"],
                "key": "promo",
            }
            handed.put((gw.addresses.http, ids, doc, asyncio.get_running_loop(), stop))
            await stop.wait()

    thread = threading.Thread(target=asyncio.run, args=(main(),), daemon=True)
    thread.start()
    (host, port), ids, doc, loop, stop = handed.get(timeout=60)
    try:
        yield host, port, ids, doc
    finally:
        loop.call_soon_threadsafe(stop.set)
        thread.join(timeout=30)


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    with gateway_thread(tmp_path_factory.mktemp("fuzz")) as running:
        yield running


def value_for(
    schema: dict[str, Any], components: dict[str, Any], *, wellformed: bool = False
) -> st.SearchStrategy[Any]:
    """Values of a JSON schema (the subset the document uses), and some just off it.

    `wellformed`: objects have their required text fields plain and no unknown fields, and
    values keep their schema's type (they may still break its bounds).
    """
    if "$ref" in schema:
        target = components[schema["$ref"].rsplit("/", 1)[1]]
        return value_for(target, components, wellformed=wellformed)
    if "anyOf" in schema:
        return st.one_of([value_for(s, components, wellformed=wellformed) for s in schema["anyOf"]])
    if "enum" in schema:
        return st.sampled_from(schema["enum"]) | TEXT
    kind = schema.get("type")
    if kind == "object":
        properties = {k: value_for(v, components) for k, v in schema["properties"].items()}
        required = {k: properties.pop(k) for k in schema.get("required", [])}
        if wellformed:
            plain = dict.fromkeys(required, PLAIN_TEXT)
            typed = {
                k: value_for(v, components, wellformed=True)
                for k, v in schema["properties"].items()
                if k not in required
            }
            return st.fixed_dictionaries(plain, optional=typed)
        valid = st.fixed_dictionaries(required, optional=properties)
        return valid | st.fixed_dictionaries(
            {}, optional={**required, **properties, "extra": ANY_JSON}
        )
    typed = {
        "string": TEXT,
        "integer": st.sampled_from(BOUNDARIES) | INTEGERS,
        "null": st.none(),
        "boolean": st.booleans(),
    }.get(kind, ANY_JSON)
    return typed if wellformed else typed | typed | typed | ANY_JSON


def raw(text: str) -> bytes:
    """UTF-8 of `text`, lone surrogates included (as the invalid bytes they would be)."""
    return text.encode("utf-8", "surrogatepass")


def operations(doc: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [
        (method.upper(), path, operation)
        for path, item in sorted(doc["paths"].items())
        for method, operation in sorted(item.items())
    ]


def path_of(draw: st.DrawFn, ids: dict[str, str], template: str, *, wellformed: bool) -> str:
    """The template with its parameters: the IDs of real records, or anything."""
    # Rejecting is for good: reject only the second campaign, so the first can be held
    # and released again and again.
    first = ids["victim"] if template.endswith("/reject") else ids["id"]
    known = st.sampled_from([first] * 4 + [ids["message"], ids["key"], "vip"])
    path = template
    for name in ("id", "key", "name"):
        if "{" + name + "}" in path:
            value = first if wellformed and name == "id" else draw(known | known | TEXT)
            path = path.replace("{" + name + "}", quote(raw(value), safe="") or "x")
    return path


def query_of(draw: st.DrawFn, operation: dict[str, Any], components: dict[str, Any]) -> str:
    """A query string: the operation's parameters (each maybe), and now and then another."""
    query: dict[bytes, bytes] = {}
    for parameter in operation.get("parameters", []):
        if parameter["in"] != "query" or not draw(st.booleans()):
            continue
        schema = parameter["schema"]
        if parameter["name"] == "cursor":
            value = draw(CURSORS)
        elif schema.get("type") == "integer":
            value = str(draw(INTEGERS)) if draw(st.booleans()) else draw(TEXT)
        else:
            value = str(draw(value_for(schema, components)))
        query[raw(parameter["name"])] = raw(value)
    if draw(st.integers(0, 9)) == 0:
        query[raw(draw(TEXT))] = raw(draw(TEXT))
    return "?" + urlencode(query) if query else ""


def body_of(
    draw: st.DrawFn, operation: dict[str, Any], components: dict[str, Any], *, wellformed: bool
) -> tuple[bytes, str]:
    """A body and its content type: JSON by the schema or off it, bytes, deep nesting."""
    content = operation.get("requestBody", {}).get("content", {})
    schema = content.get("application/json", {}).get("schema", {})
    if wellformed and schema:
        if draw(st.integers(0, 9)) == 0:  # nesting past the parser's recursion limit
            depth = draw(st.sampled_from([1000, 100_000]))
            return b"[" * depth + b"]" * draw(st.sampled_from([0, depth])), "application/json"
        value = draw(value_for(schema, components, wellformed=True))
        return json.dumps(value).encode(), "application/json"
    kind = draw(st.integers(0, 9))
    if kind < 7:
        value = draw(value_for(schema, components)) if schema else draw(ANY_JSON)
        body = json.dumps(value).encode()
    elif kind < 8:
        body = draw(st.binary(max_size=200))
    else:
        body = b"[" * draw(st.sampled_from([10, 1000, 100_000])) + draw(st.binary(max_size=5))
    return body, draw(CONTENT_TYPES)


@st.composite
def requests(
    draw: st.DrawFn, live: Any, operation: tuple[str, str, dict[str, Any]], *, wellformed: bool
) -> tuple[str, str, bytes | None, dict[str, str]]:
    """One request for one operation of the document: method, target, body, headers.

    `wellformed`: the admin's token, a real ID and a JSON body of the schema's shape, so
    the values reach the handler; otherwise anything goes.
    """
    _, _, ids, doc = live
    method, template, spec = operation
    components = doc["components"]["schemas"]
    target = path_of(draw, ids, template, wellformed=wellformed) + query_of(draw, spec, components)
    everyone = [*(t for t, *_ in (*TOKENS.values(), *IDENTITY_TOKENS.values())), None]
    token = TOKENS["admin"][0] if wellformed else draw(st.sampled_from(everyone))
    headers = {}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    elif draw(st.booleans()):
        headers["Authorization"] = draw(HEADER_TEXT)
    if method == "GET":
        return method, target, None, headers
    body, headers["Content-Type"] = body_of(draw, spec, components, wellformed=wellformed)
    return method, target, body, headers


def call(live: Any, method: str, target: str, body: bytes | None, headers: dict[str, str]) -> None:
    host, port, _, _ = live
    connection = http.client.HTTPConnection(host, port, timeout=30)
    try:
        connection.request(method, target, body=body, headers=headers)
        response = connection.getresponse()
        raw = response.read()
    finally:
        connection.close()
    where = f"{method} {target} {headers} {body[:200] if body else body!r}"
    assert response.status < 500, f"{where} -> {response.status}: {raw[:500]!r}"
    if response.getheader("Content-Type", "").startswith("application/problem+json"):
        problem = json.loads(raw)
        if "version" not in problem:  # an invalid policy set has its own shape
            ProblemDetails.model_validate(problem)
        assert problem["status"] == response.status, where


def hold_again(live: Any) -> None:
    """Hold the first campaign again with mail in it, so a drawn release has work to do."""
    _, _, ids, _ = live
    headers = {"Authorization": f"Bearer {TOKENS['admin'][0]}"}
    headers["Content-Type"] = "application/json"
    body = json.dumps({"reason": "fuzz"}).encode()
    call(live, "POST", f"/api/v1/campaigns/{ids['id']}/hold", body, headers)
    host, port = ids["smtp"].rsplit(":", 1)
    with smtplib.SMTP(host, int(port), timeout=10) as client:
        client.sendmail("news@shop.test", ["a@example.org", "b@example.org"], PROMO)


def test_no_request_drawn_from_the_document_gets_a_5xx(live):
    for operation in operations(live[3]):
        for wellformed in (True, False):
            fuzz_one(live, operation, wellformed=wellformed)


def fuzz_one(live: Any, operation: tuple[str, str, dict[str, Any]], *, wellformed: bool) -> None:
    """Draw EXAMPLES requests for one operation and check each answer."""
    stateful = operation[1].endswith(("/release", "/signoffs"))

    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    @given(requests(live, operation, wellformed=wellformed))
    def fuzz(request: tuple[str, str, bytes | None, dict[str, str]]) -> None:
        if stateful:
            hold_again(live)
        call(live, *request)

    fuzz()
