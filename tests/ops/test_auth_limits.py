"""Failed token checks are limited per client address, and so are the audit rows of refusals.

Without a token nobody can flood the audit log or keep the gateway hashing guesses: past
`ops.auth_max_failures` failures within `ops.auth_failure_window` an address gets 429 with
`Retry-After`, and at most `ops.audit_refusals_per_minute` refused calls of one address a
minute are audited one by one, then one summary row; the number left out is on the next.
"""

from __future__ import annotations

import hmac
import io
import json

import aiohttp
from aiohttp.test_utils import make_mocked_request

from gateway.failures import FailedAttempts
from gateway.log import configure
from gateway.ops import auth
from gateway.ops.auth import Authenticator, token_hash
from gateway.ops.throttle import Audit, ClientAddress, RefusalBudget
from gateway.settings import TokenSettings
from tests.clock import ManualClock
from tests.harness import run_gateway

ATTEMPTS = 100


async def test_bad_tokens_past_the_limit_get_429_and_the_audit_log_stays_bounded(settings_for):
    captured = io.StringIO()
    configure("json", "warning", stream=captured)
    clock = ManualClock()
    settings = settings_for(
        ops={"auth_max_failures": 5, "auth_failure_window": "60s", "audit_refusals_per_minute": 3}
    )
    async with run_gateway(settings, clock=clock) as gw, aiohttp.ClientSession() as http:
        url = f"{gw.http_url}/api/v1/relay/pause"
        answers = []
        for attempt in range(ATTEMPTS):
            headers = {"Authorization": f"Bearer sb_guess_{attempt}"}
            async with http.post(url, json={"reason": "x"}, headers=headers) as response:
                body = await response.json(content_type=None)
                answers.append((response.status, response.headers.get("Retry-After"), body))
        # A locked-out address is refused before any token is looked up, good ones too.
        status, problem = await gw.api("alice").post("/api/v1/relay/pause", {"reason": "x"})
        assert status == 429
        assert problem["type"] == "https://sendbrake.dev/problems/too-many-failures"
        status, _ = await gw.api("viewer").get("/api/v1/relay")
        assert status == 429  # reads from the locked address are refused as well
        rows = await gw.spool.audit_log(limit=1000)
        clock.advance(61)
        status, _ = await gw.api(None).post("/api/v1/relay/pause", {"reason": "x"})
        assert status == 401  # the window has passed: a new failure counts again
        newest = (await gw.spool.audit_log(limit=1))[0]
        _, relay = await gw.api("viewer").get("/api/v1/relay")
    events = [json.loads(line)["event"] for line in captured.getvalue().splitlines()]
    assert events.count("api_client_locked_out") == 1
    assert events.count("audit_refusals_throttled") == 1
    statuses = [s for s, _, _ in answers]
    assert statuses == [401] * 5 + [429] * (ATTEMPTS - 5)
    retry_after = {int(r) for s, r, _ in answers if s == 429}
    assert retry_after == {60}  # the clock stood still
    assert all(b["status"] == s for s, _, b in answers)
    assert relay == {"paused": False}
    assert len(rows) == 4  # 3 one by one, then one summary
    assert [r.details["status"] for r in reversed(rows)] == [401, 401, 401, 401]
    assert {r.outcome for r in rows} == {"refused"}
    assert "summary" in rows[0].details
    assert {r.details["client"] for r in rows} == {"127.0.0.1"}
    # Every mutating refusal after the summary was left out: 96 guesses and alice's 429.
    assert newest.details["unaudited_before"] == ATTEMPTS + 1 - 4


async def test_failures_below_the_limit_leave_valid_tokens_working(
    settings_for,
):
    settings = settings_for(ops={"auth_max_failures": 3})
    async with run_gateway(settings) as gw:
        for _ in range(2):
            status, _ = await gw.api(None).get(
                "/api/v1/relay", headers={"Authorization": "Bearer sb_wrong"}
            )
            assert status == 401
        status, relay = await gw.api("viewer").get("/api/v1/relay")
    assert (status, relay) == (200, {"paused": False})


def test_failed_tokens_lock_an_address_until_its_oldest_counted_failure_expires():
    clock = ManualClock(1000.0)
    failures = FailedAttempts(limit=3, window=60, clock=clock)
    for _ in range(3):
        assert failures.retry_after("10.0.0.1") is None
        failures.failed("10.0.0.1")
        clock.advance(10)
    assert failures.retry_after("10.0.0.1") == 30  # the first failure leaves at 1060
    assert failures.retry_after("10.0.0.2") is None  # per address
    clock.advance(30)
    assert failures.retry_after("10.0.0.1") is None


def test_the_refusal_budget_audits_n_then_one_summary_then_reports_what_it_left_out():
    clock = ManualClock(0.0)
    budget = RefusalBudget(per_window=2, window=60, clock=clock)
    decisions = [budget.decide("a") for _ in range(6)]
    assert decisions == [
        (Audit.ROW, 0),
        (Audit.ROW, 0),
        (Audit.SUMMARY, 0),
        (Audit.SKIP, 0),
        (Audit.SKIP, 0),
        (Audit.SKIP, 0),
    ]
    assert budget.decide("b") == (Audit.ROW, 0)
    clock.advance(60)
    assert budget.decide("a") == (Audit.ROW, 3)
    assert budget.decide("a") == (Audit.ROW, 0)


class NoTokens:
    """A spool without tokens of its own."""

    async def token_by_hash(self, _sha256: str) -> None:
        return None


async def test_every_configured_token_is_compared_in_constant_time(monkeypatch):
    configured = [
        TokenSettings(name=f"t{i}", sha256=token_hash(f"sb_{i}"), roles=("viewer",))
        for i in range(4)
    ]
    compared = []
    original = hmac.compare_digest

    def counting(a: str, b: str) -> bool:
        compared.append(a)
        return original(a, b)

    monkeypatch.setattr(auth.hmac, "compare_digest", counting)
    authenticator = Authenticator(NoTokens(), configured)  # type: ignore[arg-type]
    request = make_mocked_request("GET", "/", headers={"Authorization": "Bearer sb_0"})
    principal = await authenticator.principal(request)
    assert principal is not None
    assert principal.name == "t0"
    # The first token matched, and every other one was still compared: no early exit.
    assert len(compared) == len(configured)


async def test_behind_a_trusted_proxy_the_forwarded_client_is_limited_not_the_proxy(
    settings_for,
):
    settings = settings_for(ops={"auth_max_failures": 3, "trusted_proxies": ["127.0.0.0/8"]})
    attacker = {"X-Forwarded-For": "203.0.113.5"}
    async with run_gateway(settings) as gw:
        statuses = [
            (await gw.api(None).post("/api/v1/relay/pause", {"reason": "x"}, headers=attacker))[0]
            for _ in range(4)
        ]
        colleague = {"X-Forwarded-For": "198.51.100.7, 127.0.0.1"}
        status, _ = await gw.api("alice").get("/api/v1/relay", headers=colleague)
        rows = await gw.spool.audit_log(limit=10)
    assert statuses == [401, 401, 401, 429]
    assert status == 200
    assert {r.details["client"] for r in rows} == {"203.0.113.5"}


async def test_without_trusted_proxies_a_forwarded_header_changes_nothing(settings_for):
    async with run_gateway(settings_for(ops={"auth_max_failures": 3})) as gw:
        statuses = [
            (
                await gw.api(None).get(
                    "/api/v1/relay", headers={"X-Forwarded-For": f"203.0.113.{i}"}
                )
            )[0]
            for i in range(4)
        ]
    assert statuses == [401, 401, 401, 429]


def test_the_client_is_the_nearest_forwarded_hop_that_is_not_a_trusted_proxy():
    client = ClientAddress.of(["10.0.0.0/8", "::1/128"])
    assert client("10.1.1.1", "198.51.100.7, 203.0.113.5, 10.2.2.2") == "203.0.113.5"
    assert client("10.1.1.1", "10.3.3.3, 10.2.2.2") == "10.3.3.3"
    assert client("10.1.1.1", None) == "10.1.1.1"
    assert client("10.1.1.1", "not an address") == "10.1.1.1"
    assert client("192.0.2.1", "203.0.113.5") == "192.0.2.1"  # the peer is no proxy of ours
    assert client(None, None) == "unknown"
    assert ClientAddress.of([])("10.1.1.1", "203.0.113.5") == "10.1.1.1"
