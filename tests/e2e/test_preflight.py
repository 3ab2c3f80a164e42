"""Preflight: the findings a send would raise, from the same code path, with nothing kept.

Every mail of both corpora and a set of disasters is preflighted and then really sent over SMTP to
the same recipients, today (so a corpus mail may be out of season: both must say so); the
findings (rule, kind, mode) and the hold must be the same. A
preflight stores nothing (no campaign, no recipient, no metric) and sends nothing, and
judged as a client's next message it sees that client's campaign as it is.
"""

from __future__ import annotations

import base64
import shutil
from email.utils import getaddresses
from pathlib import Path

import pytest

from gateway.mail.headers import HeaderBlock
from tests.harness import POLICIES, run_gateway, send_campaign, upload_segment
from tests.helpers import eventually
from tests.mail import message

CORPUS_DIR = Path(__file__).resolve().parents[1] / "corpus"
CORPUS = sorted(CORPUS_DIR.glob("**/*.eml"))  # both corpora: the first and the blind one
SENDER = "news@shop.test"
DISASTERS = {
    "merge-tag": message(subject="{{FirstName}}, your spring picks"),
    "lorem": message(subject="Spring sale", body="Lorem ipsum dolor sit amet, consectetur."),
    "spanish": message(
        subject="Nueva colección",
        X_Campaign_Locale="en",
        body=(
            "Hola, nuestra nueva colección de primavera ya está aquí. Camisas de lino, "
            "vestidos ligeros y sandalias hechas a mano te esperan en la tienda. Ven a "
            "vernos este fin de semana y disfruta de un diez por ciento de descuento."
        ),
    ),
    "test-send": message(subject="Integration Test Email #1"),
    "christmas": message(subject="Merry Christmas from all of us!", body="Happy holidays."),
}


def findings(items: list[dict]) -> set[tuple[str, str, str]]:
    return {(f["rule"], f["kind"], f["mode"]) for f in items}


def recipients_of(content: bytes) -> list[str]:
    headers = HeaderBlock.parse(content)
    return [a for _, a in getaddresses([headers.get("To") or ""]) if a]


async def preflight(gw, body: dict, token: str = "platform") -> tuple[int, dict]:  # noqa: S107
    return await gw.api(token).post("/api/v1/preflight", body)


async def test_preflight_and_a_real_send_find_the_same_on_every_corpus_mail_and_disaster(
    settings_for, upstream
):
    mails = {str(path.relative_to(CORPUS_DIR)): path.read_bytes() for path in CORPUS} | DISASTERS
    async with run_gateway(settings_for(upstream.port)) as gw:
        expected, keys = {}, {}
        for name, content in mails.items():
            body = {"message_base64": base64.b64encode(content).decode(), "mail_from": SENDER}
            status, answer = await preflight(gw, body)
            assert status == 200, (name, answer)
            expected[name] = (answer["held"], findings(answer["findings"]))
            keys[name] = answer["key"]
        _, page = await gw.api().get("/api/v1/campaigns")
        assert page["items"] == []  # nothing stored by all those preflights
        for name, content in mails.items():
            rcpts = recipients_of(content) or ["reader@example.org"]
            assert await gw.send(SENDER, rcpts, content) == {}, name
        _, page = await gw.api().get("/api/v1/campaigns?limit=1000")
    assert len(set(keys.values())) == len(mails) == len(page["items"])
    sent = {c["key"]: (c["state"] == "held", findings(c["findings"])) for c in page["items"]}
    assert {name: sent[keys[name]] for name in mails} == expected
    held = {name for name, (held, _) in expected.items() if held}
    assert held >= set(DISASTERS) - {"christmas"}
    assert len(held) >= 50  # most blind disasters too (one message each): not an idle comparison


async def test_a_preflight_stores_counts_and_sends_nothing(settings_for, upstream):
    async with run_gateway(settings_for(upstream.port)) as gw:
        body = {"message": DISASTERS["merge-tag"].decode(), "recipients": ["a@example.org"]}
        status, answer = await preflight(gw, body)
        assert status == 200
        assert answer["held"] is True
        assert [(f["rule"], f["kind"]) for f in answer["findings"]] == [("merge-tags", "merge_tag")]
        assert answer["key"].startswith("implicit:news@shop.test:")
        status, clean = await preflight(gw, {"message": message().decode(), "size": 1})
        assert (status, clean["held"], clean["findings"]) == (200, False, [])
        await gw.send(SENDER, ["b@example.org"], message(subject="After the preflights"))
        await eventually(lambda: upstream.recipients == ["b@example.org"])
        _, page = await gw.api().get("/api/v1/campaigns")
        received = gw.gateway.metrics.registry.get_sample_value(
            "sendbrake_messages_received_total", {"ingress": "smtp"}
        )
    assert [c["subject"] for c in page["items"]] == ["After the preflights"]
    assert received == 1


async def test_as_a_clients_next_message_it_sees_that_campaigns_counters(settings_for, upstream):
    async with run_gateway(settings_for(upstream.port)) as gw:
        rcpts = [f"r{i}@example.org" for i in range(40)]
        campaign_id = await send_campaign(gw, "spring", rcpts, declared=10)  # limit 60
        more = [f"s{i}@example.org" for i in range(30)]
        draft = message(X_Campaign_ID="spring").decode()
        body = {"message": draft, "recipients": more, "client": "127.0.0.0/8"}
        status, answer = await preflight(gw, body)
        assert status == 200
        assert (answer["held"], answer["key"]) == (True, "spring")
        assert [f["rule"] for f in answer["findings"]] == ["blast-declared"]
        alone = {"message": draft, "recipients": more}  # a new campaign of its own: 30 < 60
        assert (await preflight(gw, alone))[1]["held"] is False
        _, campaign = await gw.api().get(f"/api/v1/campaigns/{campaign_id}")
    assert (campaign["state"], campaign["counters"]["received"]) == ("open", 40)


async def test_a_declaration_in_the_body_wins_over_the_messages_headers(settings_for):
    async with run_gateway(settings_for()) as gw:
        content = message(X_Declared_Size="100").decode()
        rcpts = [f"r{i}@example.org" for i in range(70)]
        _, as_sent = await preflight(gw, {"message": content, "recipients": rcpts})
        _, declared = await preflight(gw, {"message": content, "recipients": rcpts, "size": 5})
    assert as_sent["held"] is False
    assert declared["held"] is True


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"message": "Subject: nobody\n\nHi\n"}, "recipients"),
        ({"message": message().decode(), "recipients": ["not an address"]}, "recipients.0"),
        ({"message": message().decode(), "mail_from": "a@b@c"}, "mail_from"),
        ({"message": message(X_Declared_Size="²").decode()}, "message"),
    ],
)
async def test_input_a_send_could_not_carry_is_a_problem_naming_the_field(
    settings_for, body, field
):
    async with run_gateway(settings_for()) as gw:
        status, problem = await preflight(gw, body)
    assert status == 422
    assert [e["field"] for e in problem["errors"]] == [field]


async def test_a_rejected_campaign_is_said_to_refuse_the_send(settings_for, upstream):
    async with run_gateway(settings_for(upstream.port)) as gw:
        campaign_id = await send_campaign(gw, "gone", ["a@example.org"])
        status, _ = await gw.api("alice").post(
            f"/api/v1/campaigns/{campaign_id}/reject", {"reason": "wrong list"}
        )
        assert status == 200
        body = {"message": message(X_Campaign_ID="gone").decode(), "client": "127.0.0.0/8"}
        status, problem = await preflight(gw, body)
    assert status == 422
    assert "550 5.7.1" in problem["detail"]
    assert problem["errors"][0]["field"] == "message"


WINBACK = """\
version: 1
rules:
  - {id: winback-not-active, kind: segment_exclude, when: {category: win-back},
     segment: active-users}
"""


async def test_a_segment_as_the_audience_is_judged_by_its_members(settings_for, tmp_path):
    folder = tmp_path / "policies"
    folder.mkdir()
    shutil.copy(POLICIES / "default.yaml", folder)
    (folder / "winback.yaml").write_text(WINBACK)
    lapsed = [f"lapsed{i}@example.org" for i in range(80)]
    async with run_gateway(settings_for(policies={"dir": str(folder)})) as gw:
        await upload_segment(gw.api(), "lapsed", lapsed)
        await upload_segment(gw.api(), "active-users", [*lapsed[:3], "fan@example.net"])
        draft = message(subject="We miss you", X_Campaign_ID="winback-12").decode()
        body = {"message": draft, "segment": "lapsed", "category": "win-back"}
        _, small = await preflight(gw, {**body, "size": 100})
        _, big = await preflight(gw, {**body, "size": 10})  # 80 > 10 x 1.5 and 10 + 50
        status, missing = await preflight(gw, {**body, "segment": "nobody"})
        _, page = await gw.api().get("/api/v1/campaigns")
    overlap = next(f for f in small["findings"] if f["rule"] == "winback-not-active")
    assert overlap["evidence"]["overlap"] == 3  # the lapsed members also active
    assert {f["rule"] for f in small["findings"]} == {"winback-not-active"}
    assert {f["rule"] for f in big["findings"]} == {"winback-not-active", "blast-declared"}
    assert (status, missing["errors"][0]["field"]) == (422, "segment")
    assert page["items"] == []
