"""The console in a real browser: sign in, decide, two operators, a hostile message, axe.

One Chromium for the module (tests/console/conftest.py), a context per test and per
operator; each test runs its own gateway on real sockets. Waiting is Playwright's (its
locators and `expect` wait for the page) or `eventually`'s, never a sleep.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from playwright.async_api import expect

from tests.clock import ManualClock
from tests.console.browser import (
    LAPTOP,
    PHONE,
    Requests,
    axe_violations,
    sign_in,
    signed_in,
    watch_server,
)
from tests.harness import held_campaign, run_gateway
from tests.helpers import eventually
from tests.mail import build, message

pytestmark = pytest.mark.asyncio(loop_scope="module")
DOCS = Path(__file__).resolve().parents[2] / "docs"


async def audit(gw) -> list[dict]:
    status, body = await gw.api("viewer").get("/api/v1/audit")
    assert status == 200
    return body["items"]


async def open_campaign(page, key: str) -> None:
    """From the list of held campaigns, open the one with this key."""
    await page.goto("/console/campaigns")
    await page.get_by_role("link", name=key, exact=True).click()
    await expect(page.get_by_role("heading", level=1)).to_contain_text(key)


async def test_an_operator_finds_the_oversize_campaign_and_releases_it_upstream(
    browser, settings_for, upstream
):
    async with run_gateway(settings_for(upstream.port)) as gw:
        campaign_id = await held_campaign(gw, 60)
        async with signed_in(browser, gw, "alice", through_the_form=True) as page:
            row = page.get_by_role("row").filter(has=page.get_by_role("link", name="promo"))
            await expect(row).to_contain_text("held")
            await expect(row).to_contain_text("60 / 5")
            await expect(row).to_contain_text("blast-declared")
            await row.get_by_role("link", name="promo").click()
            await expect(page.locator("#n-received")).to_have_text("60")
            await expect(page.locator("#n-declared")).to_have_text("5")
            await expect(page.locator("#n-held")).to_have_text("60")
            finding = page.get_by_role("article").filter(has_text="blast-declared")
            await expect(finding).to_contain_text("over_declared_size")
            await expect(finding).to_contain_text("declared 5; the limit is 55")
            await page.get_by_label("Reason (written to the audit log)").first.fill(
                "the list was checked: 60 is right"
            )
            await page.get_by_role("button", name="Review release…").click()
            await expect(page.locator("#count")).to_have_text("60")
            assert upstream.recipients == []  # reviewing sends nothing
            await page.get_by_role("button", name="Release 60 recipients now").click()
            await expect(page.get_by_role("status")).to_contain_text("Released 60 recipients")
            await expect(page.get_by_role("heading", level=1)).to_contain_text("released")
            await page.get_by_role("link", name="Audit log").click()
            entry = page.get_by_role("row").filter(has_text="release campaign")
            await expect(entry).to_contain_text("the list was checked: 60 is right")
            await expect(entry.get_by_role("rowheader")).to_have_text("alice")
        await eventually(lambda: len(upstream.recipients) == 60)
        entries = await audit(gw)
    [release] = [e for e in entries if e["action"] == "release campaign"]
    assert (release["actor"], release["target"], release["outcome"]) == (
        "alice",
        campaign_id,
        "ok",
    )
    assert release["reason"] == "the list was checked: 60 is right"
    assert release["details"]["recipients"] == 60


async def test_an_operator_rejects_a_campaign_and_nothing_of_it_goes_out(
    browser, settings_for, upstream
):
    async with run_gateway(settings_for(upstream.port)) as gw:
        campaign_id = await held_campaign(gw, 60)
        await gw.api("alice").post("/api/v1/relay/pause", {"reason": "provider incident"})
        async with signed_in(browser, gw, "bob") as page:
            await open_campaign(page, "promo")
            await expect(page.get_by_role("alert")).to_contain_text("Relay paused")
            await page.locator("#reject-reason").fill("wrong list entirely")
            await page.get_by_role("button", name="Review rejection…").click()
            await expect(page.locator("#count")).to_have_text("60")
            await page.get_by_role("button", name="Reject and discard").click()
            await expect(page.get_by_role("status")).to_contain_text("60 recipients discarded")
            await expect(page.get_by_role("heading", level=1)).to_contain_text("rejected")
            # A rejected campaign offers no release and no second rejection.
            await expect(page.get_by_role("button", name=re.compile("Review"))).to_have_count(0)
        _, campaign = await gw.api().get(f"/api/v1/campaigns/{campaign_id}")
    assert (campaign["state"], campaign["counters"]["discarded"]) == ("rejected", 60)
    assert campaign["counters"]["relayed"] == 0
    assert upstream.recipients == []


async def test_a_viewer_sees_no_actions_and_posts_without_the_csrf_token_are_refused(
    browser, settings_for
):
    async with run_gateway(settings_for()) as gw:
        campaign_id = await held_campaign(gw, 60)
        path = f"/console/campaigns/{campaign_id}/release"
        async with signed_in(browser, gw, "viewer") as page:
            await open_campaign(page, "promo")
            await expect(page.locator("#n-held")).to_have_text("60")
            await expect(page.get_by_role("button", name=re.compile("Review"))).to_have_count(0)
            await expect(page.locator("textarea")).to_have_count(0)
            # Even with the session's own CSRF token, the role decides: 403, audited.
            csrf = await page.locator("form.signout input[name=csrf]").input_value()
            forbidden = await page.request.post(
                path, form={"csrf": csrf, "reason": "sneaky", "confirm": "yes"}
            )
            assert forbidden.status == 403
        async with signed_in(browser, gw, "alice") as page:
            # A forged form (another site's, or a script's) has no CSRF token.
            forged = await page.request.post(path, form={"reason": "forged", "confirm": "yes"})
            assert forged.status == 403
            assert "did not come from your console session" in await forged.text()
            wrong = await page.request.post(
                path, form={"csrf": "guess", "reason": "forged", "confirm": "yes"}
            )
            assert wrong.status == 403
        _, campaign = await gw.api().get(f"/api/v1/campaigns/{campaign_id}")
        entries = await audit(gw)
    assert campaign["state"] == "held"
    assert [(e["actor"], e["action"], e["outcome"], e["details"]["status"]) for e in entries] == [
        ("viewer", "release campaign", "refused", 403)
    ]


async def test_two_operators_release_a_large_campaign_from_two_browsers(
    browser, settings_for, upstream
):
    settings = settings_for(upstream.port, ops={"two_person_release_above": 10})
    async with run_gateway(settings) as gw:
        await held_campaign(gw, 100)
        async with (
            signed_in(browser, gw, "alice") as alice,
            signed_in(browser, gw, "bob") as bob,
        ):
            await open_campaign(alice, "promo")
            await alice.locator("#release-reason").fill("rendering checked, list matches CRM")
            await alice.get_by_role("button", name="Review release…").click()
            await expect(alice.locator("#confirm")).to_contain_text("first approval")
            await alice.get_by_role("button", name="Approve releasing 100 recipients").click()
            await expect(alice.get_by_role("status")).to_contain_text("nothing was sent")
            await expect(alice.get_by_role("heading", level=1)).to_contain_text("held")

            await open_campaign(bob, "promo")
            waiting = bob.get_by_role("region", name="Waiting for a second operator")
            await expect(waiting).to_contain_text("alice asked to release 100 recipients")
            await expect(waiting).to_contain_text("rendering checked, list matches CRM")
            await bob.locator("#release-reason").fill("agreed with alice")
            await bob.get_by_role("button", name="Review release…").click()
            await expect(bob.locator("#confirm")).to_contain_text("it sends them now")
            await bob.get_by_role("button", name="Release 100 recipients now").click()
            await expect(bob.get_by_role("status")).to_contain_text("Released 100 recipients")

            await alice.reload()
            await expect(alice.get_by_role("heading", level=1)).to_contain_text("released")
        await eventually(lambda: len(upstream.recipients) == 100)
        entries = await audit(gw)
    assert [(e["actor"], e["outcome"]) for e in entries[:2]] == [
        ("bob", "ok"),
        ("alice", "pending"),
    ]


def hostile_html(watch: str) -> str:
    """A message that tries every way to run code or phone home, to `watch` or outside."""
    return f"""<!DOCTYPE html><html><head>
<base href="{watch}/base/">
<meta http-equiv="refresh" content="0;url={watch}/meta-refresh">
<link rel="stylesheet" href="{watch}/link.css">
<style>
  @import url("{watch}/import.css");
  body {{ background: url({watch}/body-bg.png); }}
  h1 {{ font-family: x; src: url('https://fonts.remote.example/f.woff'); }}
</style>
<script>document.title = "pwned"; window.name = "pwned"; fetch("{watch}/script-ran");</script>
</head><body onload="fetch('{watch}/onload')">
<h1>Hostile offer</h1>
<img src="https://tracker.remote.example/open.gif" width="1" height="1" alt="">
<img src="{watch}/pixel.gif" alt="pixel">
<img src="x" onerror="fetch('{watch}/onerror')" alt="broken">
<img srcset="{watch}/srcset.png 2x" alt="srcset">
<div style="background-image: url('{watch}/inline-bg.png')">styled</div>
<table background="{watch}/table-bg.png"><tr><td>cell</td></tr></table>
<form action="{watch}/form" method="post"><input name="card"><button>Claim</button></form>
<a id="js" href="javascript:fetch('{watch}/javascript-link')">Click to win</a>
<a id="out" href="{watch}/tracked-link" ping="{watch}/ping">Unsubscribe</a>
<iframe src="{watch}/iframe"></iframe>
<object data="{watch}/object"></object>
<video poster="{watch}/poster.png" src="{watch}/video.mp4"></video>
<svg><image href="{watch}/svg-image.png"/><style>@import url({watch}/svg.css);</style></svg>
</body></html>"""


async def test_a_hostile_message_renders_without_running_or_loading_anything(browser, settings_for):
    async with watch_server() as watch, run_gateway(settings_for()) as gw:
        content = build(
            subject="Hostile offer",
            text="Claim your prize",
            html=hostile_html(watch.url),
            headers={"X-Campaign-ID": "hostile", "X-Declared-Size": "5"},
        )
        await gw.send("news@shop.test", [f"r{i}@example.org" for i in range(60)], content)
        async with signed_in(browser, gw, "alice") as page:
            requests = Requests(page)
            await open_campaign(page, "hostile")
            frame = page.frame_locator("iframe.message")
            await expect(frame.get_by_role("heading", name="Hostile offer")).to_be_visible()
            blocked = frame.locator('img[src^="data:image/svg+xml"]')
            await expect(blocked).to_have_count(4)  # each remote image is a placeholder
            await expect(frame.locator("form, script, iframe, object, base, meta")).to_have_count(0)
            await frame.locator("#js").click()
            await frame.locator("#out").click()
            await frame.get_by_role("button", name="Claim").click()
            # The frame's document itself, opened on its own: CSP `sandbox` keeps it inert.
            frame_url = await page.locator("iframe.message").get_attribute("src")
            await page.goto(frame_url)
            await expect(page.get_by_role("heading", name="Hostile offer")).to_be_visible()
            await page.wait_for_load_state("networkidle")
            title, name = await page.evaluate("[document.title, window.name]")
    assert watch.hits == []
    assert requests.leaving(gw.http_url) == []
    assert (title, name) == ("", "")  # the script would have set both to "pwned"


async def test_the_campaign_list_refreshes_in_place_keeping_the_readers_place(
    browser, settings_for
):
    settings = settings_for(console={"refresh_interval": "200ms"})
    async with run_gateway(settings) as gw, signed_in(browser, gw, "viewer") as page:
        await page.goto("/console/campaigns")
        await expect(page.get_by_role("cell", name="No campaigns match.")).to_be_visible()
        await page.locator("#q").fill("half-typed search")  # what a reload would lose
        await page.evaluate("window.reader = 'still here'")
        await held_campaign(gw, 60)
        await expect(page.get_by_role("link", name="promo")).to_be_visible()
        assert await page.evaluate("window.reader") == "still here"  # no reload
        assert await page.locator("#q").input_value() == "half-typed search"


async def test_the_console_works_from_the_keyboard_alone(browser, settings_for):
    async with run_gateway(settings_for()) as gw:
        await held_campaign(gw, 60)
        context = await browser.new_context(base_url=gw.http_url)
        page = await context.new_page()
        await page.goto("/console/")
        await page.keyboard.press("Tab")
        await expect(page.get_by_role("link", name="Skip to content")).to_be_focused()
        await page.keyboard.press("Tab")
        await page.keyboard.press("Tab")
        await expect(page.get_by_label("API token")).to_be_focused()
        await page.keyboard.type("sb_test_alice")
        await page.keyboard.press("Enter")
        link = page.get_by_role("link", name="promo")
        await link.focus()
        await page.keyboard.press("Enter")
        await expect(page.locator("#n-held")).to_have_text("60")
        await page.get_by_role("link", name="Policies").click()
        version = gw.gateway.engine.policies.version
        await expect(page.locator("#policy-version")).to_have_text(version)
        await expect(page.get_by_role("rowheader", name="blast-declared")).to_be_visible()
        await expect(page.get_by_role("alert")).to_have_count(0)  # the relay runs: no banner
        await context.close()


async def seed(gw, clock: ManualClock) -> str:
    """A realistic queue for the screenshots: an oversize campaign and a quiet one."""
    await gw.send(
        "news@shop.test",
        [f"c{i}@example.org" for i in range(3)],
        message(subject="Weekly digest", X_Campaign_ID="weekly-digest", X_Declared_Size="3"),
    )
    content = build(
        subject="Tell us what you think",
        text="Hi,\n\nWe would love your feedback on your last order.\n\nThe Shop team",
        headers={
            "X-Campaign-ID": "survey-2026-q4",
            "X-Declared-Size": "200",
            "X-Campaign-Category": "survey",
        },
    )
    await gw.send("news@shop.test", [f"r{i}@example.org" for i in range(600)], content)
    clock.advance(300)
    tagged = build(
        subject="Hi {{first_name}}, your winter offer",
        text="Hi {{first_name}},\n\n20% off everything this week.\n\nShop",
        headers={"X-Campaign-ID": "winter-offer", "X-Declared-Size": "40"},
    )
    await gw.send("news@shop.test", [f"w{i}@example.org" for i in range(40)], tagged)
    _, page = await gw.api().get("/api/v1/campaigns?state=held")
    return next(c["id"] for c in page["items"] if c["key"] == "survey-2026-q4")


async def test_list_and_campaign_pages_pass_axe_and_are_photographed_for_the_docs(
    browser, settings_for
):
    clock = ManualClock(1_796_000_000.0)  # fixed times: the same screenshots every run
    async with run_gateway(settings_for(), clock=clock) as gw:
        campaign_id = await seed(gw, clock)
        clock.advance(754)  # held for a while when the reviewer looks
        async with signed_in(browser, gw, "alice") as page:
            for name, viewport in (("laptop", LAPTOP), ("phone", PHONE)):
                await page.set_viewport_size(viewport)
                await page.goto("/console/campaigns")
                await expect(page.get_by_role("link", name="survey-2026-q4")).to_be_visible()
                assert await axe_violations(page) == []
                await page.screenshot(path=DOCS / f"console-list-{name}.png", full_page=True)
                await page.goto(f"/console/campaigns/{campaign_id}")
                await expect(page.locator("#n-received")).to_have_text("600")
                frame = page.frame_locator("iframe.message")
                await expect(frame.get_by_text("We would love your feedback")).to_be_visible()
                assert await axe_violations(page) == []
                await page.screenshot(path=DOCS / f"console-campaign-{name}.png")
                # Apart, scrolled to: a capture beyond the viewport leaves the sandboxed
                # frame (a process of its own) blank.
                await page.get_by_role("heading", name="Sample message").evaluate(
                    "heading => heading.scrollIntoView()"
                )
                await page.screenshot(path=DOCS / f"console-message-{name}.png")


async def test_a_session_survives_only_until_sign_out(browser, settings_for):
    async with run_gateway(settings_for()) as gw:
        context = await browser.new_context(base_url=gw.http_url)
        page = await context.new_page()
        await sign_in(page, "viewer")
        [cookie] = [c for c in await context.cookies() if c["name"] == "sb_console"]
        assert (cookie["httpOnly"], cookie["sameSite"], cookie["path"]) == (
            True,
            "Strict",
            "/console",
        )
        await page.get_by_role("button", name="Sign out").click()
        await expect(page.get_by_role("status")).to_contain_text("signed out")
        await context.add_cookies([cookie])  # the old cookie, replayed
        await page.goto("/console/campaigns")
        await expect(page.get_by_label("API token")).to_be_visible()
        await context.close()
