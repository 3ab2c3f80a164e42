"""The console's security model over plain HTTP: cookies, sessions, CSRF, policies, audit.

What a browser cannot easily show (cookie attributes, exact headers, expiry under an
injected clock, lock-out, identical audit entries) is checked with a cookie-keeping
client against a real gateway.
"""

from __future__ import annotations

import io
import json
import re

import pytest

from gateway.log import configure
from gateway.model import Role, Token
from gateway.ops.auth import token_hash
from gateway.ops.console.app import PAGE_CSP
from gateway.ops.console.pages import FRAME_CSP
from tests.clock import ManualClock
from tests.console.client import ConsoleClient
from tests.harness import held_campaign, run_gateway, send_campaign
from tests.helpers import eventually
from tests.mail import build

# The loop of tests/console's upstream fixture (its browser tests share one per module).
pytestmark = pytest.mark.asyncio(loop_scope="module")
WRONG = "sb_guess"


async def audit(gw) -> list[dict]:
    _, body = await gw.api("viewer").get("/api/v1/audit")
    return body["items"]


async def test_the_session_cookie_is_httponly_strict_and_pages_carry_a_strict_policy(
    settings_for,
):
    async with run_gateway(settings_for()) as gw, ConsoleClient(gw.http_url) as console:
        answer, _ = await console.sign_in("viewer")
        assert (answer.status, answer.headers["Location"]) == (303, "/console/campaigns")
        cookie = answer.cookies["sb_console"]
        assert cookie["httponly"] is True
        assert (cookie["samesite"], cookie["path"]) == ("Strict", "/console")
        assert not cookie["secure"]  # plain HTTP: a Secure cookie would never come back
        page, _ = await console.get("/console/campaigns")
    assert page.status == 200
    assert page.headers["Content-Security-Policy"] == PAGE_CSP
    script_src = re.search(r"script-src ([^;]*)", PAGE_CSP).group(1)
    assert script_src == "'self'"  # nothing inline, no nonces, no eval
    assert "frame-ancestors 'none'" in PAGE_CSP
    assert page.headers["X-Frame-Options"] == "DENY"
    assert page.headers["Cache-Control"] == "no-store"
    assert page.headers["X-Content-Type-Options"] == "nosniff"


async def secure_sign_in(console: ConsoleClient) -> tuple[bool, bool]:
    """Sign in as behind a TLS proxy; return whether each cookie set was marked Secure.

    A client on plain HTTP keeps a Secure cookie to itself, so the form's CSRF cookie is
    sent back by hand, as the browser on the proxy's HTTPS side would.
    """
    form, _ = await console.get("/console/signin")
    signin_cookie = form.cookies["sb_console_signin"]
    answer, _ = await console.post(
        "/console/signin",
        {"csrf": console.csrf, "token": "sb_test_viewer", "next": ""},
        headers={"Cookie": f"sb_console_signin={signin_cookie.value}"},
    )
    assert answer.status == 303
    return bool(signin_cookie["secure"]), bool(answer.cookies["sb_console"]["secure"])


async def test_the_cookies_are_secure_when_a_trusted_proxy_says_the_browser_used_https(
    settings_for,
):
    https = {"X-Forwarded-Proto": "https"}
    trusting = settings_for(ops={"trusted_proxies": ["127.0.0.1/32"]})
    async with run_gateway(trusting) as gw, ConsoleClient(gw.http_url, https) as console:
        behind_proxy = await secure_sign_in(console)
    async with run_gateway(settings_for()) as gw, ConsoleClient(gw.http_url, https) as console:
        anyone_can_say_so = await secure_sign_in(console)
    assert behind_proxy == (True, True)
    assert anyone_can_say_so == (False, False)


async def test_a_session_ends_after_its_idle_timeout_and_after_its_lifetime(settings_for):
    clock = ManualClock()
    settings = settings_for(console={"idle_timeout": "60s", "session_lifetime": "180s"})
    async with run_gateway(settings, clock=clock) as gw, ConsoleClient(gw.http_url) as console:
        await console.sign_in("viewer")
        for _ in range(3):  # used every 50 s: the idle timeout never runs out
            clock.advance(50)
            page, _ = await console.get("/console/campaigns")
            assert page.status == 200
        clock.advance(40)  # 190 s after sign-in: past its lifetime, however busy
        ended, _ = await console.get("/console/campaigns")
        await console.sign_in("viewer")
        clock.advance(61)
        idle, _ = await console.get("/console/audit")
    assert (ended.status, ended.headers["Location"]) == (
        303,
        "/console/signin?next=/console/campaigns",
    )
    assert idle.status == 303


async def test_revoking_the_token_ends_its_console_sessions_at_once(settings_for):
    async with run_gateway(settings_for()) as gw, ConsoleClient(gw.http_url) as console:
        token = "sb_console_temp_token"
        await gw.spool.add_token(Token("temp", token_hash(token), frozenset({Role.OPERATOR})))
        signed, _ = await console.sign_in(secret=token)
        before, _ = await console.get("/console/campaigns")
        assert await gw.spool.revoke_token("temp", 0.0)
        after, _ = await console.get("/console/campaigns")
    assert (signed.status, before.status, after.status) == (303, 200, 303)


async def test_wrong_tokens_are_refused_audited_and_locked_out_as_on_the_api(settings_for):
    settings = settings_for(ops={"auth_max_failures": 2})
    async with run_gateway(settings) as gw, ConsoleClient(gw.http_url) as console:
        first, text = await console.sign_in(secret=WRONG)
        assert first.status == 401
        assert "a valid bearer token is required" in text
        assert "WWW-Authenticate" not in first.headers  # no browser password dialog
        await console.sign_in(secret=WRONG + "_again")
        locked, text = await console.sign_in("alice")  # even the right one, for a while
        assert locked.status == 429
        assert int(locked.headers["Retry-After"]) > 0
        entries = await gw.spool.audit_log()  # the API is locked out for this address too
    assert [(e.actor, e.action, e.details["status"]) for e in entries] == [
        ("anonymous", "sign in to console", 429),
        ("anonymous", "sign in to console", 401),
        ("anonymous", "sign in to console", 401),
    ]


async def test_a_submitter_token_cannot_sign_in_and_the_form_needs_its_csrf_value(
    settings_for,
):
    async with run_gateway(settings_for()) as gw, ConsoleClient(gw.http_url) as console:
        submitter, text = await console.sign_in("platform")
        assert submitter.status == 403
        assert "may not sign in to console" in text
        await console.get("/console/signin")
        forged, _ = await console.post("/console/signin", {"token": "sb_test_alice"})
        assert forged.status == 403
        still_out, _ = await console.get("/console/campaigns")
    assert still_out.status == 303


async def test_sign_in_returns_to_the_page_asked_for_and_never_to_another_site(settings_for):
    async with run_gateway(settings_for()) as gw, ConsoleClient(gw.http_url) as console:
        asked, _ = await console.get("/console/audit")
        assert asked.headers["Location"] == "/console/signin?next=/console/audit"
        await console.get(asked.headers["Location"])
        back, _ = await console.post(
            "/console/signin",
            {"csrf": console.csrf, "token": "sb_test_viewer", "next": "/console/audit"},
        )
    async with run_gateway(settings_for()) as gw, ConsoleClient(gw.http_url) as console:
        await console.get("/console/signin")
        elsewhere, _ = await console.post(
            "/console/signin",
            {"csrf": console.csrf, "token": "sb_test_viewer", "next": "https://evil.test/"},
        )
    assert back.headers["Location"] == "/console/audit"
    assert elsewhere.headers["Location"] == "/console/campaigns"


async def test_the_message_frame_and_raw_source_are_served_sandboxed_loading_nothing(
    settings_for,
):
    html = '<p>Hi</p><img src="https://t.remote.example/o.gif"><script>alert(1)</script>'
    content = build(subject="Hi", text="Hi", html=html, headers={"X-Campaign-ID": "k"})
    async with run_gateway(settings_for()) as gw, ConsoleClient(gw.http_url) as console:
        await gw.send("news@shop.test", ["a@example.org"], content)
        _, page = await gw.api().get("/api/v1/campaigns")
        _, detail = await gw.api().get(f"/api/v1/campaigns/{page['items'][0]['id']}")
        message_id = detail["sample"]["id"]
        await console.sign_in("viewer")
        frame, body = await console.get(f"/console/messages/{message_id}/render")
        raw, source = await console.get(f"/console/messages/{message_id}/raw")
    assert frame.headers["Content-Security-Policy"] == FRAME_CSP
    assert FRAME_CSP.startswith("default-src 'none'; img-src data:;")
    assert FRAME_CSP.endswith("; sandbox")  # inert even when opened outside the frame
    assert "<script" not in body
    assert 'src="https://t.remote.example' not in body
    assert 'src="data:image/svg+xml,' in body
    assert raw.content_type == "text/plain"
    assert (
        raw.headers["Content-Security-Policy"]
        == "default-src 'none'; frame-ancestors 'none'; sandbox"
    )
    assert "X-Campaign-ID: k" in source


async def test_a_console_decision_writes_the_same_audit_entry_and_log_line_as_the_api(
    settings_for,
):
    log = io.StringIO()
    configure("json", "info", stream=log)
    async with run_gateway(settings_for()) as gw, ConsoleClient(gw.http_url) as console:
        await gw.api().post("/api/v1/relay/pause", {"reason": "keep everything here"})
        by_api = await send_campaign(gw, "by-api", [f"a{i}@example.org" for i in range(3)])
        by_console = await send_campaign(gw, "by-console", [f"c{i}@example.org" for i in range(3)])
        await gw.api().post(f"/api/v1/campaigns/{by_api}/hold", {"reason": "odd"})
        await console.sign_in("alice")
        await console.get(f"/console/campaigns/{by_console}")
        form = {"csrf": console.csrf, "reason": "odd", "confirm": "yes"}
        held, _ = await console.post(f"/console/campaigns/{by_console}/hold", form)
        assert held.status == 303
        entries = await audit(gw)
    hold_entries = [e for e in entries if e["action"] == "hold campaign"]
    assert [{**e, "id": 0, "at": 0, "target": 0} for e in hold_entries] == [
        {**hold_entries[1], "id": 0, "at": 0, "target": 0}
    ] * 2
    events = [json.loads(line) for line in log.getvalue().splitlines() if line.startswith("{")]
    held_lines = [e for e in events if e["event"] == "campaign_held" and e.get("actor") == "alice"]
    assert [e["campaign"] for e in held_lines] == [by_api, by_console]
    drop = {"campaign", "key", "timestamp"}
    assert [{k: v for k, v in e.items() if k not in drop} for e in held_lines] == [
        {k: v for k, v in held_lines[0].items() if k not in drop}
    ] * 2


async def test_a_large_release_confirmation_names_the_first_approver_and_their_reason(
    settings_for,
):
    settings = settings_for(ops={"two_person_release_above": 10})
    async with run_gateway(settings) as gw, ConsoleClient(gw.http_url) as console:
        campaign_id = await held_campaign(gw, 60)
        await gw.api("alice").post(
            f"/api/v1/campaigns/{campaign_id}/release", {"reason": "list checked twice"}
        )
        await console.sign_in("alice")
        await console.get(f"/console/campaigns/{campaign_id}")
        review = {"csrf": console.csrf, "reason": "again", "scope": "count", "max_recipients": "20"}
        _, mine = await console.post(f"/console/campaigns/{campaign_id}/release", review)
        async with ConsoleClient(gw.http_url) as bob:
            await bob.sign_in("bob")
            await bob.get(f"/console/campaigns/{campaign_id}")
            review["csrf"] = bob.csrf
            _, theirs = await bob.post(f"/console/campaigns/{campaign_id}/release", review)
    assert "You already approved this release." in mine
    assert "alice</strong> asked to release 60 recipients" in theirs
    assert "list checked twice" in theirs
    assert re.search(r'id="count">20<', theirs)  # what bob's own release would send


async def test_partial_releases_by_count_and_by_segment_send_only_those(settings_for, upstream):
    async with (
        run_gateway(settings_for(upstream.port)) as gw,
        ConsoleClient(gw.http_url) as console,
    ):
        campaign_id = await held_campaign(gw, 60)  # r0 … r59
        vip = "".join(f"r{i}@example.org\n" for i in range(50, 55))
        status, _ = await gw.api("alice").call(
            "PUT",
            "/api/v1/segments/vip?reason=test",
            data=vip.encode(),
            headers={"Content-Type": "text/plain"},
        )
        assert status == 200
        await console.sign_in("alice")
        _, page = await console.get(f"/console/campaigns/{campaign_id}")
        assert "<option>vip</option>" in page
        path = f"/console/campaigns/{campaign_id}/release"
        some = {"csrf": console.csrf, "reason": "a first ten", "scope": "count"}
        _, review = await console.post(path, {**some, "max_recipients": "10"})
        assert re.search(r'id="count">10<', review)
        await console.post(path, {**some, "max_recipients": "10", "confirm": "yes"})
        _, page = await console.get(f"/console/campaigns/{campaign_id}")
        assert "Released 10 recipients of promo; 50 still held." in page
        segment = {"csrf": console.csrf, "reason": "the vips", "scope": "segment"}
        _, review = await console.post(path, {**segment, "only_segment": "vip"})
        assert "who are in segment <strong>vip</strong>" in review
        await console.post(path, {**segment, "only_segment": "vip", "confirm": "yes"})
        _, page = await console.get(f"/console/campaigns/{campaign_id}")
        assert "Released 5 recipients of promo; 45 still held." in page
        wrong = {**some, "max_recipients": "ten", "confirm": "yes"}
        await console.post(path, wrong)
        _, page = await console.get(f"/console/campaigns/{campaign_id}")
        assert "Nothing was done: max_recipients:" in page
        await eventually(lambda: len(upstream.recipients) == 15)
    assert sorted(upstream.recipients) == sorted(
        [f"r{i}@example.org" for i in range(10)] + [f"r{i}@example.org" for i in range(50, 55)]
    )
