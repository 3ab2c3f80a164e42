"""Signature and content policies end to end: realistic multipart HTML mail over SMTP, the
shipped content rules plus a site file with identities, decisions checked over the API and
at a capturing upstream."""

from __future__ import annotations

import shutil
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest

from tests.harness import POLICIES, run_gateway
from tests.helpers import eventually
from tests.mail import build, html_page, paragraphs_html

SITE = """\
version: 1
internal_domains: [shop.test]
segments:
  sales-reps: {file: reps.txt}
identities:
  - id: ceo
    name: Jane Doe
    addresses: [jane@shop.test]
    signoffs: [Jane, Jane Doe]
  - id: sales-reps
    segment: sales-reps
    signoff_patterns: ['^[\\w .''-]+, your account manager$']
rules:
  - {id: founder-signoff, kind: signature, bulk_threshold: 100}
"""
REPS = [f"rep{i}@shop.test" for i in range(5)]

WINBACK = """\
Hi Sam,

We noticed you have not ordered in a while, and we miss you. Over the last months we
rebuilt our kitchen range from the ground up: new pans, sharper knives and a coffee grinder
our customers call the best they ever owned.

Come back this week and take 20% off your next order with the code WELCOME20.

Thanks,
Jane
Co-founder, Shop
"""


def policies(tmp_path: Path) -> Path:
    folder = tmp_path / "policies"
    folder.mkdir(exist_ok=True)
    shutil.copy(POLICIES / "default.yaml", folder / "default.yaml")
    (folder / "site.yaml").write_text(SITE)
    (folder / "reps.txt").write_text("".join(f"{rep}\n" for rep in REPS))
    return folder


def settings(settings_for, upstream, tmp_path: Path):
    return settings_for(upstream.port, policies={"dir": str(policies(tmp_path))})


async def campaign_of(gw, key: str) -> dict:
    status, page = await gw.api().get("/api/v1/campaigns?limit=100")
    assert status == 200
    [found] = [c for c in page["items"] if c["key"] == key]
    status, detail = await gw.api().get(f"/api/v1/campaigns/{found['id']}")
    assert status == 200
    return detail


async def settled(gw, key: str) -> dict | None:
    campaign = await campaign_of(gw, key)
    counters = campaign["counters"]
    return campaign if counters["queued"] == 0 and counters["deferred"] == 0 else None


def recipients(count: int, domain: str = "example.org", start: int = 0) -> list[str]:
    return [f"reader{start + i}@{domain}" for i in range(count)]


def findings(campaign: dict) -> set[tuple[str, str]]:
    return {(f["rule"], f["kind"]) for f in campaign["findings"]}


async def test_founder_signed_winback_is_held_until_the_founder_signs_off_then_relayed(
    settings_for, upstream, tmp_path
):
    content = build(
        subject="We miss you, Sam",
        text=WINBACK,
        headers={"X-Campaign-ID": "winback-q1", "X-Campaign-Category": "win-back"},
    )
    async with run_gateway(settings(settings_for, upstream, tmp_path)) as gw:
        await gw.send("news@shop.test", recipients(150), content)
        held = await eventually(lambda: settled(gw, "winback-q1"))
        base = f"/api/v1/campaigns/{held['id']}"
        assert held["state"] == "held"
        assert findings(held) == {("founder-signoff", "signoff_required")}
        [finding] = held["findings"]
        assert finding["evidence"]["identities"] == ["ceo"]
        assert finding["evidence"]["matches"][0]["fragment"] == "Thanks, / Jane / Co-founder, Shop"
        assert held["signoffs_missing"] == ["ceo"]
        assert upstream.recipients == []

        # An operator's token is bound to no identity: it cannot sign for the founder.
        status, refused = await gw.api("alice").post(f"{base}/signoffs", {"reason": "ok"})
        assert status == 422, refused
        status, refused = await gw.api("alice").post(
            f"{base}/signoffs", {"identity": "ceo", "reason": "ok"}
        )
        assert status == 403, refused

        status, signed = await gw.api("jane").post(
            f"{base}/signoffs", {"reason": "I wrote it, send it"}
        )
        assert status == 200, signed
        assert signed["state"] == "released"
        assert [s["identity"] for s in signed["signoffs"]] == ["ceo"]
        assert signed["signoffs"][0]["on_behalf"] is False
        assert signed["signoffs_missing"] == []
        await eventually(lambda: len(upstream.recipients) == 150)

        # Later mail of the signed campaign passes.
        await gw.send("news@shop.test", recipients(50, start=150), content)
        final = await eventually(lambda: settled(gw, "winback-q1"))
        status, audit = await gw.api().get("/api/v1/audit?limit=10")
    assert final["state"] == "released"
    assert final["counters"]["relayed"] == 200
    assert [e["event"] for e in final["timeline"]][-2:] == ["signed_off", "released"]
    actions = [(e["actor"], e["action"], e["outcome"]) for e in audit["items"]]
    assert ("jane", "sign off campaign", "ok") in actions
    assert ("alice", "sign off campaign", "refused") in actions


async def test_admin_signs_off_on_the_founders_behalf_with_a_reason(
    settings_for, upstream, tmp_path
):
    content = build(subject="A personal note", text=WINBACK, headers={"X-Campaign-ID": "note"})
    async with run_gateway(settings(settings_for, upstream, tmp_path)) as gw:
        await gw.send("news@shop.test", recipients(120), content)
        held = await eventually(lambda: settled(gw, "note"))
        assert held["state"] == "held"
        status, signed = await gw.api("admin").post(
            f"/api/v1/campaigns/{held['id']}/signoffs",
            {"identity": "ceo", "reason": "Jane approved by phone from the airport"},
        )
        await eventually(lambda: len(upstream.recipients) == 120)
        _, audit = await gw.api().get("/api/v1/audit?limit=5")
    assert status == 200, signed
    assert signed["state"] == "released"
    assert signed["signoffs"][0]["on_behalf"] is True
    assert signed["signoffs"][0]["actor"] == "admin"
    [entry] = [e for e in audit["items"] if e["action"] == "sign off campaign"]
    assert entry["details"]["on_behalf"] is True
    assert entry["reason"] == "Jane approved by phone from the airport"


async def test_mass_mail_signed_by_each_customers_sales_rep_is_held(
    settings_for, upstream, tmp_path
):
    async with run_gateway(settings(settings_for, upstream, tmp_path)) as gw:
        for index, rep in enumerate(REPS[:3]):
            text = (
                "Hello,\n\nYour contract renews next month. I put together the options that "
                "fit how your team used the product this year; reply and we will book a call."
                f"\n\nBest,\nRep Number{index}, your account manager\n"
            )
            content = build(
                subject="Your renewal options",
                text=text,
                sender=f"Rep Number{index} <{rep}>",
                headers={"X-Campaign-ID": "renewals"},
            )
            await gw.send(rep, recipients(50, start=50 * index), content)
            if index < 2:  # relayed before the next rep's mail: only what waits is held
                await eventually(lambda n=50 * (index + 1): len(upstream.recipients) == n)
        campaign = await eventually(lambda: settled(gw, "renewals"))
    assert campaign["state"] == "held"
    [finding] = campaign["findings"]
    assert finding["kind"] == "signoff_required"
    assert finding["evidence"]["identities"] == ["sales-reps"]
    assert {m["via"] for m in finding["evidence"]["matches"]} == {"from", "signoff_pattern"}
    # The first 100 went out (the bulk threshold); the third rep's 50 waited.
    assert campaign["counters"]["held"] == 50
    assert len(upstream.recipients) == 100


TAGS = ["{{FirstName}}", "*|FNAME|*", "%%First_Name%%", "{!Contact.FirstName}"]


@pytest.mark.parametrize("tag", TAGS)
async def test_unrendered_merge_tag_is_caught_in_subject_html_and_quoted_printable_text(
    settings_for, upstream, tmp_path, tag
):
    clean = "Our spring collection is here, with linen shirts and light jackets for warm days."
    long_line = "Dear customer, we picked these for you " + "and more " * 6 + f"{tag}, enjoy!"
    cases = {
        "subject": build(subject=f"{tag}, spring is here", text=clean),
        "html": build(
            subject="Spring is here",
            text=clean,
            html=html_page(f"<p>Hello <b>{tag}</b>,</p>" + paragraphs_html(clean)),
        ),
        # A long line, so quoted-printable breaks it with soft line breaks near the tag.
        "text": build(
            subject="Spring is here",
            text=f"{long_line}\n\n{clean}\n",
            html=html_page(paragraphs_html(clean)),
        ),
    }
    async with run_gateway(settings(settings_for, upstream, tmp_path)) as gw:
        for where, raw in cases.items():
            content = raw.replace(
                b"Subject:", f"X-Campaign-ID: tags-{where}\r\nSubject:".encode(), 1
            )
            await gw.send("news@shop.test", recipients(3), content)
        found = {
            where: await eventually(lambda w=where: settled(gw, f"tags-{w}")) for where in cases
        }
    for where, campaign in found.items():
        assert campaign["state"] == "held", where
        [finding] = campaign["findings"]
        assert (finding["rule"], finding["kind"]) == ("merge-tags", "merge_tag")
        shown = finding["evidence"]["found"][0]
        assert (shown["where"], shown["fragment"]) == (where, tag)
        assert tag in finding["message"]
    assert upstream.recipients == []


async def test_analysis_processes_hold_a_leaked_tag_and_pass_clean_mail(
    settings_for, upstream, tmp_path
):
    # The default on a multi-CPU machine: content read in child processes.
    gw_settings = settings_for(
        upstream.port, policies={"dir": str(policies(tmp_path)), "content_processes": 2}
    )
    clean = "Our spring collection is here, with linen shirts and light jackets for warm days."
    leaked = build(subject="Spring is here", text=f"Hello {{{{FirstName}}}},\n\n{clean}\n")
    passing = build(subject="Spring is here", text=f"Hello Sam,\n\n{clean}\n")
    async with run_gateway(gw_settings) as gw:
        assert len(gw.gateway.admitter.analysers.pids) == 2
        for key, raw in {"leaked": leaked, "clean": passing}.items():
            content = raw.replace(b"Subject:", f"X-Campaign-ID: {key}\r\nSubject:".encode(), 1)
            await gw.send("news@shop.test", recipients(3), content)
        held = await eventually(lambda: settled(gw, "leaked"))
        await eventually(lambda: len(upstream.recipients) == 3)
    assert held["state"] == "held"
    assert [f["kind"] for f in held["findings"]] == ["merge_tag"]


def clock_at(day: datetime):
    """A clock that runs from `day` (the relay's backoff and leases keep working)."""
    offset = day.timestamp() - time.time()
    return lambda: time.time() + offset


NEW_YEAR = """\
Happy New Year from all of us at Shop!

Thank you for a wonderful year. To start the next one well, everything in our winter range
is 30% off until Sunday, and shipping is free on every order.
"""


@pytest.mark.parametrize(
    ("day", "state"),
    [(datetime(2027, 2, 2, 9, tzinfo=UTC), "held"), (datetime(2027, 1, 2, 9, tzinfo=UTC), "open")],
)
async def test_happy_new_year_is_held_in_february_and_passes_in_january(
    settings_for, upstream, tmp_path, day, state
):
    content = build(subject="Happy New Year!", text=NEW_YEAR, headers={"X-Campaign-ID": "ny"})
    gw_settings = settings(settings_for, upstream, tmp_path)
    async with run_gateway(gw_settings, clock=clock_at(day)) as gw:
        await gw.send("news@shop.test", recipients(5), content)
        campaign = await eventually(lambda: settled(gw, "ny"))
    assert campaign["state"] == state
    if state == "held":
        [finding] = campaign["findings"]
        assert (finding["rule"], finding["kind"]) == ("seasonal", "out_of_season")
        assert finding["evidence"]["date"] == "2027-02-02"
    else:
        assert campaign["findings"] == []
        assert len(upstream.recipients) == 5


SPANISH = """\
Hola,

Esta semana lanzamos nuestra nueva colección de primavera. Hay camisas de lino, chaquetas
ligeras y zapatillas para los días de calor, y el envío es gratuito en todos los pedidos de
más de cincuenta euros. Gracias por confiar en nosotros un año más.
"""


async def test_spanish_body_with_declared_locale_en_is_held(settings_for, upstream, tmp_path):
    content = build(
        subject="Nueva colección",
        text=SPANISH,
        headers={"X-Campaign-ID": "spring-es", "X-Campaign-Locale": "en-US"},
    )
    async with run_gateway(settings(settings_for, upstream, tmp_path)) as gw:
        await gw.send("news@shop.test", recipients(5), content)
        campaign = await eventually(lambda: settled(gw, "spring-es"))
    assert campaign["state"] == "held"
    [finding] = campaign["findings"]
    assert (finding["rule"], finding["kind"]) == ("language", "language_mismatch")
    assert finding["evidence"]["detected"] == "es"
    assert finding["evidence"]["declared"] == "en-US"


async def test_integration_test_email_to_outside_addresses_is_held_and_to_staff_passes(
    settings_for, upstream, tmp_path
):
    text = "This message checks the pipeline end to end. Please ignore it.\n"
    outside = build(
        subject="Integration Test Email #1", text=text, headers={"X-Campaign-ID": "it-1"}
    )
    inside = build(
        subject="Integration Test Email #2", text=text, headers={"X-Campaign-ID": "it-2"}
    )
    async with run_gateway(settings(settings_for, upstream, tmp_path)) as gw:
        await gw.send("ci@shop.test", ["qa@shop.test", *recipients(3)], outside)
        await gw.send("ci@shop.test", ["qa@shop.test", "dev@shop.test"], inside)
        held = await eventually(lambda: settled(gw, "it-1"))
        passed = await eventually(lambda: settled(gw, "it-2"))
    assert held["state"] == "held"
    [finding] = held["findings"]
    assert (finding["rule"], finding["kind"]) == ("test-markers", "test_send")
    assert finding["evidence"]["outside"] == 3
    assert finding["evidence"]["markers"][0]["fragment"] == "Integration Test Email"
    assert passed["state"] == "open"
    assert sorted(upstream.recipients) == ["dev@shop.test", "qa@shop.test"]


async def test_bulk_marketing_mail_without_one_click_unsubscribe_is_recorded_in_shadow(
    settings_for, upstream, tmp_path
):
    campaign = {"X-Campaign-Category": "newsletter"}
    one_click = {
        "List-Unsubscribe": "<https://shop.test/u/8f3a>, <mailto:unsubscribe@shop.test>",
        "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
    }
    text = "Linen shirts are back.\n\nUnsubscribe: https://shop.test/u/8f3a"
    mails = {
        "spring": build(
            subject="Spring", text=text, headers={"X-Campaign-ID": "spring", **campaign}
        ),
        "summer": build(
            subject="Summer",
            text=text,
            headers={"X-Campaign-ID": "summer", **campaign, **one_click},
        ),
    }
    async with run_gateway(settings(settings_for, upstream, tmp_path)) as gw:
        for key, content in mails.items():
            for batch in range(2):  # 1,200 recipients: past the rule's bulk threshold of 1,000
                rcpts = [f"{key}{batch}-{i}@example.org" for i in range(600)]
                await gw.send("news@shop.test", rcpts, content)
        _, page = await gw.api().get("/api/v1/campaigns")
    found = {
        c["key"]: (c["state"], [(f["rule"], f["mode"]) for f in c["findings"]])
        for c in page["items"]
    }
    assert found == {
        "spring": ("open", [("unsubscribe", "shadow")]),  # recorded, not held
        "summer": ("open", []),
    }
