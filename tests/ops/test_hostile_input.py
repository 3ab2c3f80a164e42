"""Hostile input to the ops API: every wrong input is a problem document naming the field.

Each probe was once a 500; now each answers 4xx with the project's problem format.
"""

from __future__ import annotations

import base64

import aiohttp
import pytest

from tests.harness import TOKENS, held_campaign, run_gateway


def cursor(text: str) -> str:
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


def fields(problem: dict) -> set[str]:
    return {e["field"] for e in problem.get("errors") or []}


async def test_a_huge_max_recipients_is_a_422_naming_it(settings_for):
    async with run_gateway(settings_for()) as gw:
        campaign_id = await held_campaign(gw, 60)
        status, problem = await gw.api().post(
            f"/api/v1/campaigns/{campaign_id}/release",
            {"reason": "sample", "max_recipients": 10**30},
        )
        _, campaign = await gw.api().get(f"/api/v1/campaigns/{campaign_id}")
    assert (status, fields(problem)) == (422, {"max_recipients"})
    assert campaign["state"] == "held"


async def test_a_manifest_with_a_huge_size_is_a_422_naming_it(settings_for):
    async with run_gateway(settings_for()) as gw:
        status, problem = await gw.api("platform").put(
            "/api/v1/campaigns/promo", {"reason": "declared", "size": 10**30}
        )
    assert (status, fields(problem)) == (422, {"size"})


async def test_deeply_nested_json_is_a_400_not_a_crash(settings_for):
    async with run_gateway(settings_for()) as gw:
        status, problem = await gw.api().post(
            "/api/v1/relay/pause",
            data="[" * 100_000,
            headers={"Content-Type": "application/json"},
        )
    assert (status, problem["type"]) == (400, "https://sendbrake.dev/problems/invalid-json")


AUDIT, CAMPAIGNS = "/api/v1/audit", "/api/v1/campaigns"


@pytest.mark.parametrize(
    ("query", "field", "lists"),
    [
        ("limit=%C2%B2", "limit", (AUDIT, CAMPAIGNS)),  # "²" is a digit to str.isdigit only
        ("limit=%D9%A1", "limit", (AUDIT, CAMPAIGNS)),  # ARABIC-INDIC DIGIT ONE
        ("limit=" + "9" * 40, "limit", (AUDIT, CAMPAIGNS)),
        ("cursor=" + cursor("²"), "cursor", (AUDIT, CAMPAIGNS)),
        ("cursor=" + cursor("١٢"), "cursor", (AUDIT, CAMPAIGNS)),
        ("cursor=" + cursor("9" * 40), "cursor", (AUDIT,)),  # past any row id
        ("cursor=" + cursor("x" * 65), "cursor", (AUDIT, CAMPAIGNS)),
        ("cursor=" + cursor("ABC"), "cursor", (AUDIT,)),  # a campaign cursor given to audit
    ],
)
async def test_wrong_paging_parameters_are_a_422_naming_them(settings_for, query, field, lists):
    async with run_gateway(settings_for()) as gw:
        answers = set()
        for path in lists:
            status, problem = await gw.api("viewer").get(f"{path}?{query}")
            answers.add((status, frozenset(fields(problem))))
    assert answers == {(422, frozenset({field}))}


@pytest.mark.parametrize(
    "reason", ["", "   ", "\t\n", "x" * 1001, "a\x00b", "bad \ud800 surrogate", "\x1b[2J"]
)
async def test_a_reason_must_say_something_sane(settings_for, reason):
    async with run_gateway(settings_for()) as gw:
        status, problem = await gw.api().post("/api/v1/relay/pause", {"reason": reason})
        _, relay = await gw.api().get("/api/v1/relay")
    assert (status, fields(problem)) == (422, {"reason"})
    assert relay == {"paused": False}


async def test_a_segment_upload_reason_follows_the_same_rules(settings_for):
    async with run_gateway(settings_for()) as gw:
        status, problem = await gw.api().put(
            "/api/v1/segments/vip?reason=" + "x" * 1001,
            data="ada@example.org\n",
            headers={"Content-Type": "text/plain"},
        )
    assert (status, fields(problem)) == (422, {"reason"})


@pytest.mark.parametrize(
    "body",
    [
        {"reason": "x", "category": "a\x00b"},
        {"reason": "x", "client": "\ud800"},
        {"reason": "x", "locale": "x" * 1000},
        {"reason": "x", "size": True},
        {"reason": "x", "size": 1.5},
    ],
)
async def test_manifest_strings_and_numbers_are_checked(settings_for, body):
    async with run_gateway(settings_for()) as gw:
        status, problem = await gw.api("platform").put("/api/v1/campaigns/promo", body)
    assert status == 422, problem
    assert fields(problem) & {"category", "client", "locale", "size"}


@pytest.mark.parametrize(
    "path",
    [
        "/api/v1/campaigns/%00",
        "/api/v1/campaigns/%ff%fe",
        "/api/v1/messages/%ed%a0%80",
        "/api/v1/campaigns/" + "x" * 5000,
    ],
)
async def test_odd_ids_in_paths_are_not_found_not_a_crash(settings_for, path):
    async with run_gateway(settings_for()) as gw, aiohttp.ClientSession() as http:
        headers = {"Authorization": f"Bearer {TOKENS['viewer'][0]}"}
        url = aiohttp.client.URL(gw.http_url + path, encoded=True)
        async with http.get(url, headers=headers) as response:
            assert response.status == 404, await response.text()
            assert response.content_type == "application/problem+json"
        # A refused call is audited with the path's id as its target, stored escaped.
        hold = aiohttp.client.URL(gw.http_url + path + "/hold", encoded=True)
        async with http.post(hold, json={"reason": "x"}) as response:
            assert response.status in {401, 404}, await response.text()
        _, audit = await gw.api("viewer").get("/api/v1/audit")
    assert all(e["target"].isprintable() and len(e["target"]) <= 200 for e in audit["items"])


async def test_an_authorization_header_that_is_not_ascii_is_a_401(settings_for):
    async with run_gateway(settings_for()) as gw:
        status, problem = await gw.api(None).get(
            "/api/v1/campaigns",
            headers={
                "Authorization": "Bearer s\u00e9cret\udcff".encode(
                    "utf-8", "surrogateescape"
                ).decode("latin-1")
            },
        )
    assert status == 401, problem
