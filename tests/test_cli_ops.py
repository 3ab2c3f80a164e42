"""`sendbrake policies check`, `campaigns …` and `relay …` against a real gateway.

The CLI runs in click's CliRunner; its blocking HTTP calls run in a thread so the gateway
under test keeps serving on the test's loop. Campaigns come from real mail sent with
smtplib.
"""

from __future__ import annotations

import asyncio
import json
import socket
from typing import Any

from click.testing import CliRunner, Result

from gateway.cli import main
from gateway.ops.auth import new_token, token_hash
from gateway.states import CampaignState
from tests.harness import POLICIES, Api, Running, run_gateway, upload_segment
from tests.helpers import eventually
from tests.mail import message

ROLES = {"alice": "operator", "bob": "operator", "vera": "viewer"}
TOKENS = {name: new_token() for name in ROLES}


def ops(**extra: Any) -> dict[str, Any]:
    """The ops settings section: one config-file token per entry of ROLES."""
    tokens = [
        {"name": name, "sha256": token_hash(TOKENS[name]), "roles": [role]}
        for name, role in ROLES.items()
    ]
    return {"tokens": tokens, **extra}


async def sendbrake(gw: Running, *args: str, as_user: str | None = "alice") -> Result:
    """Run the CLI against `gw`, with URL and token from the environment as operators do."""
    env = {"SENDBRAKE_URL": gw.http_url, "SENDBRAKE_TOKEN": TOKENS[as_user] if as_user else None}
    return await asyncio.to_thread(CliRunner().invoke, main, list(args), env=env)


def ok(result: Result) -> Result:
    assert result.exit_code == 0, (result.stdout, result.stderr, result.exception)
    return result


async def held_campaign(gw: Running, key: str = "spring") -> str:
    """Send one mailbox the same campaign twice, so the shipped sent-twice rule holds it."""
    for _ in range(2):
        await gw.send("news@shop.test", ["a@example.org"], message(X_Campaign_ID=key))
    [campaign] = await eventually(lambda: gw.spool.campaigns(state=CampaignState.HELD))
    return campaign.id


async def sent_campaign(gw: Running, key: str) -> str:
    await gw.send("news@shop.test", [f"{key}@example.org"], message(X_Campaign_ID=key))
    campaign = await eventually(lambda: gw.spool.find_campaign("127.0.0.0/8", key))
    return campaign.id


# -- policies check -------------------------------------------------------------------------


def test_policies_check_accepts_the_shipped_policies():
    result = ok(CliRunner().invoke(main, ["policies", "check", str(POLICIES)]))
    assert result.stdout.startswith("policies OK: 13 rules from default.yaml (version sha256:")


def test_policies_check_reads_the_directory_from_the_settings(tmp_path):
    (tmp_path / "one.yaml").write_text(
        "version: 1\nrules:\n  - {id: d, kind: duplicate_recipients}\n"
    )
    env = {"SENDBRAKE_POLICIES__DIR": str(tmp_path)}
    result = ok(CliRunner().invoke(main, ["policies", "check"], env=env))
    assert result.stdout.startswith("policies OK: 1 rule from one.yaml")


def test_policies_check_names_file_line_and_key_of_every_problem(tmp_path):
    (tmp_path / "a.yaml").write_text("version: 1\nrules: [\n")
    (tmp_path / "b.yaml").write_text(
        "version: 1\nrules:\n  - id: fine\n    kind: duplicate_recipients\n"
        "  - id: typo\n    kind: declared_sise\n"
    )
    result = CliRunner().invoke(main, ["policies", "check", str(tmp_path)])
    assert result.exit_code == 1
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert lines[0].startswith(f"{tmp_path / 'a.yaml'}:3: invalid YAML")
    assert lines[1].startswith(f"{tmp_path / 'b.yaml'}:6: rules.1.kind: unknown rule kind")
    assert lines[-1] == f"error: {tmp_path}: 2 problems; nothing loaded"


# -- campaigns ------------------------------------------------------------------------------


async def test_list_shows_a_held_campaign_as_a_table_and_as_json(settings_for):
    async with run_gateway(settings_for(ops=ops())) as gw:
        campaign_id = await held_campaign(gw)
        await sent_campaign(gw, "autumn")
        table = ok(await sendbrake(gw, "campaigns", "list", "--state", "held"))
        listed = ok(await sendbrake(gw, "campaigns", "list", "--json"))
    header, row = table.stdout.splitlines()
    assert header.split() == ["ID", "STATE", "KEY", "RECEIVED", "RELAYED", "HELD", "FINDINGS"]
    cells = row.split()
    assert cells[:3] == [campaign_id, "held", "spring"]
    assert cells[3] == "2"
    assert cells[-1] == "sent-twice"
    assert header.index("KEY") == row.index("spring")  # columns line up
    body = json.loads(listed.stdout)
    assert [c["key"] for c in body["items"]] == ["autumn", "spring"]
    assert body["next"] is None


async def test_show_prints_declaration_counters_findings_sample_and_timeline(settings_for):
    async with run_gateway(settings_for(ops=ops())) as gw:
        campaign_id = await held_campaign(gw)

        async def first_relayed() -> bool:  # so that both views below show the same counters
            return (await gw.spool.campaign(campaign_id)).counters.relayed == 1

        await eventually(first_relayed, message="the first message was never relayed")
        shown = ok(await sendbrake(gw, "campaigns", "show", campaign_id, as_user="vera"))
        raw = ok(await sendbrake(gw, "campaigns", "show", campaign_id, "--json"))
    data = json.loads(raw.stdout)
    assert data["id"] == campaign_id
    text = shown.stdout
    assert text.startswith(f"campaign {campaign_id}  HELD\n")
    assert "  key        spring\n" in text
    assert "  subject    Spring sale\n" in text
    counters = "  ".join(f"{name} {value}" for name, value in data["counters"].items())
    assert f"  counters   {counters}\n" in text
    assert counters.startswith("received 2  ")
    [finding] = data["findings"]
    assert f"sent-twice [{finding['kind']}, enforce]: {finding['message']}" in text
    assert f"sample message {data['sample']['id']}" in text
    assert "  preview  Hello!" in text
    timeline = text.split("\ntimeline\n")[1].splitlines()
    assert len(timeline) == len(data["timeline"])
    assert any("  held  by policy  rules=sent-twice" in line for line in timeline)


async def test_hold_release_and_reject_move_the_campaign_and_print_its_state(settings_for):
    async with run_gateway(settings_for(ops=ops())) as gw:
        campaign_id = await sent_campaign(gw, "summer")

        held = ok(await sendbrake(gw, "campaigns", "hold", campaign_id, "--reason", "looks off"))
        assert held.stdout.startswith(f"campaign {campaign_id} (summer) is held: received 1")
        assert (await gw.spool.campaign(campaign_id)).state is CampaignState.HELD

        released = ok(await sendbrake(gw, "campaigns", "release", campaign_id, "--reason", "ok"))
        assert f"campaign {campaign_id} (summer) is released" in released.stdout

        rejected = ok(
            await sendbrake(gw, "campaigns", "reject", campaign_id, "--reason", "no", "--json")
        )
        assert json.loads(rejected.stdout)["state"] == "rejected"
        assert (await gw.spool.campaign(campaign_id)).state is CampaignState.REJECTED


async def test_a_partial_release_leaves_the_rest_held(settings_for):
    async with run_gateway(settings_for(ops=ops())) as gw:
        campaign_id = await held_campaign(gw)
        await gw.send("news@shop.test", ["a@example.org"], message(X_Campaign_ID="spring"))
        await eventually(lambda: _held_count(gw, campaign_id, 2), message="third copy was not held")
        result = ok(
            await sendbrake(
                gw, "campaigns", "release", campaign_id, "--reason", "one", "--max-recipients", "1"
            )
        )
    assert f"campaign {campaign_id} (spring) is held" in result.stdout
    assert "held 1" in result.stdout


async def _held_count(gw: Running, campaign_id: str, count: int) -> bool:
    campaign = await gw.spool.campaign(campaign_id)
    return campaign is not None and campaign.counters.held == count


async def test_a_big_release_records_one_approval_and_waits_for_a_second_operator(settings_for):
    async with run_gateway(settings_for(ops=ops(two_person_release_above=0))) as gw:
        campaign_id = await held_campaign(gw)
        first = ok(await sendbrake(gw, "campaigns", "release", campaign_id, "--reason", "fine"))
        assert first.stdout.startswith("approval recorded (approvals: alice; 2 needed)")
        assert f"sendbrake campaigns release {campaign_id}" in first.stdout
        assert (await gw.spool.campaign(campaign_id)).state is CampaignState.HELD

        second = ok(
            await sendbrake(
                gw, "campaigns", "release", campaign_id, "--reason", "ok", as_user="bob"
            )
        )
        assert "is released" in second.stdout


async def test_list_follows_next_cursors_only_with_all(settings_for):
    async with run_gateway(settings_for(ops=ops())) as gw:
        for key in ("one", "two", "three"):
            await sent_campaign(gw, key)
        page = ok(await sendbrake(gw, "campaigns", "list", "--limit", "1"))
        every = ok(await sendbrake(gw, "campaigns", "list", "--limit", "1", "--all"))
        as_json = ok(await sendbrake(gw, "campaigns", "list", "--limit", "2", "--all", "--json"))
    assert len(page.stdout.splitlines()) == 2
    assert "more campaigns" in page.stderr
    assert [line.split()[2] for line in every.stdout.splitlines()[1:]] == ["three", "two", "one"]
    assert every.stderr == ""
    body = json.loads(as_json.stdout)
    assert len(body["items"]) == 3
    assert body["next"] is None


async def test_relay_pause_and_resume(settings_for):
    async with run_gateway(settings_for(ops=ops())) as gw:
        paused = ok(await sendbrake(gw, "relay", "pause", "--reason", "incident 42"))
        assert paused.stdout == "relay paused (by alice: incident 42)\n"
        assert await gw.spool.relay_paused()
        resumed = ok(await sendbrake(gw, "relay", "resume", "--reason", "fixed", "--json"))
        assert json.loads(resumed.stdout) == {"paused": False, "by": "alice", "reason": "fixed"}
        assert not await gw.spool.relay_paused()
        again = ok(await sendbrake(gw, "relay", "resume", "--reason", "still fine"))
        assert again.stdout == "relay resumed (by alice: still fine)\n"
        assert not await gw.spool.relay_paused()


# -- errors ---------------------------------------------------------------------------------


async def test_a_refused_call_prints_status_title_and_detail_and_exits_1(settings_for):
    async with run_gateway(settings_for(ops=ops())) as gw:
        campaign_id = await sent_campaign(gw, "winter")
        result = await sendbrake(
            gw, "campaigns", "hold", campaign_id, "--reason", "x", "--token", TOKENS["vera"]
        )
        state = (await gw.spool.campaign(campaign_id)).state
    assert result.exit_code == 1
    assert result.stdout == ""
    assert result.stderr == (
        "error: 403 Forbidden: token 'vera' (roles: viewer) may not hold campaign\n"
    )
    assert state is CampaignState.OPEN


async def test_invalid_input_names_each_wrong_field(settings_for):
    async with run_gateway(settings_for(ops=ops())) as gw:
        campaign_id = await held_campaign(gw)
        result = await sendbrake(gw, "campaigns", "release", campaign_id, "--reason", "")
    assert result.exit_code == 1
    first, *fields = result.stderr.splitlines()
    assert first.startswith("error: 422 Unprocessable Content: ")
    assert first.endswith(": invalid input: reason")
    assert fields[0].startswith("  reason: ")


async def test_missing_token_and_unknown_campaign_are_explained(settings_for):
    async with run_gateway(settings_for(ops=ops())) as gw:
        anonymous = await sendbrake(gw, "campaigns", "list", as_user=None)
        missing = await sendbrake(gw, "campaigns", "show", "nope")
    assert anonymous.exit_code == 1
    assert anonymous.stderr.startswith("error: 401 Unauthorized: a valid bearer token is required")
    assert "hint: pass --token or set SENDBRAKE_TOKEN" in anonymous.stderr
    assert missing.exit_code == 1
    assert missing.stderr == "error: 404 Not Found: no campaign with id 'nope'\n"


def test_an_unreachable_gateway_is_a_clear_error():
    with socket.socket() as probe:  # a port that was free a moment ago: nothing listens
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    result = CliRunner().invoke(main, ["campaigns", "list", "--url", url, "--token", "t"])
    assert result.exit_code == 1
    assert result.stderr.startswith(f"error: cannot reach {url}: ")
    assert "is the gateway running?" in result.stderr


def test_every_api_command_takes_url_token_and_json():
    for command in (["campaigns", "list"], ["campaigns", "hold"], ["relay", "pause"]):
        text = CliRunner().invoke(main, [*command, "--help"]).stdout
        assert "SENDBRAKE_URL" in text
        assert "SENDBRAKE_TOKEN" in text
        assert "--json" in text


async def test_release_only_segment_sends_the_segments_held_recipients(settings_for):
    async with run_gateway(settings_for(ops=ops())) as gw:
        await gw.send("news@shop.test", ["a@example.org"], message(X_Campaign_ID="spring"))
        await gw.send(
            "news@shop.test",
            ["a@example.org", "b@example.org", "c@example.org"],
            message(X_Campaign_ID="spring"),
        )
        [campaign] = await eventually(lambda: gw.spool.campaigns(state=CampaignState.HELD))
        status, _ = await Api(gw.http_url, TOKENS["alice"]).call(
            "PUT",
            "/api/v1/segments/pilot?reason=pilot",
            data=b"b@example.org\n",
            headers={"Content-Type": "text/plain"},
        )
        assert status == 200
        result = ok(
            await sendbrake(
                gw,
                "campaigns",
                "release",
                campaign.id,
                "--reason",
                "pilot",
                "--only-segment",
                "pilot",
            )
        )
        assert f"campaign {campaign.id} (spring) is held" in result.stdout
        queued = await gw.spool.recipients(campaign_id=campaign.id)
    states = {r.address: str(r.state) for r in queued if r.message_id != queued[0].message_id}
    assert states["b@example.org"] in {"queued", "sending", "relayed"}
    assert states["c@example.org"] == "held"


# -- terminal safety ------------------------------------------------------------------------

# An encoded word that decodes to a terminal reset, a bell and a right-to-left override.
EVIL_SUBJECT = "=?utf-8?q?Sale=1Bc=07=E2=80=AEtxt.exe?="


async def test_list_and_show_escape_control_characters_from_mail(settings_for):
    async with run_gateway(settings_for(ops=ops())) as gw:
        # Ingress refuses control characters in a key header (554 5.6.0); the implicit
        # key of mail without one is made from its subject, which may carry them.
        content = message(subject=EVIL_SUBJECT)
        assert await gw.send("news@shop.test", ["a@example.org"], content) == {}
        [campaign] = await eventually(gw.spool.campaigns)
        listed = ok(await sendbrake(gw, "campaigns", "list"))
        shown = ok(await sendbrake(gw, "campaigns", "show", campaign.id))
        raw = ok(await sendbrake(gw, "campaigns", "show", campaign.id, "--json"))
        missing = await sendbrake(gw, "campaigns", "show", "nope\x1b[2J")
    for output in (listed.stdout, shown.stdout, raw.stdout, missing.stderr):
        assert not any(c in output for c in "\x1b\x07\x9b\u202e"), repr(output)
    assert "sale\\x1bc\\x07\\u202etxt.exe" in listed.stdout  # the key: lower case
    assert "Sale\\x1bc\\x07\\u202etxt.exe" in shown.stdout
    assert "\x1b" in campaign.key  # the key itself carries the escape sequence
    assert json.loads(raw.stdout)["key"] == campaign.key  # --json: escaped, the same string


async def test_preflight_prints_the_findings_and_exits_3_when_the_send_would_be_held(
    settings_for, tmp_path
):
    draft = tmp_path / "draft.eml"
    draft.write_bytes(message(subject="Hi {{FirstName}}", X_Campaign_ID="survey-march"))
    clean = tmp_path / "clean.eml"
    clean.write_bytes(message(subject="Our March survey", X_Campaign_ID="survey-march"))
    async with run_gateway(settings_for(ops=ops())) as gw:
        held = await sendbrake(gw, "preflight", str(draft), "--declared", "200", "--to", "a@x.test")
        passed = ok(await sendbrake(gw, "preflight", str(clean), "--category", "survey"))
        as_json = await sendbrake(gw, "preflight", str(draft), "--json", as_user="vera")
        operator = Api(gw.http_url, TOKENS["alice"])
        await upload_segment(operator, "inactive", [f"gone{i}@example.org" for i in range(60)])
        segment = ["--to-segment", "inactive", "--declared", "5"]  # 60 > 55
        to_segment = await sendbrake(gw, "preflight", str(clean), *segment)
        campaigns = await gw.spool.campaigns()
    assert held.exit_code == 3, held.output
    lines = held.stdout.splitlines()
    assert lines[0] == "would be HELD: campaign survey-march (client preflight)"
    assert lines[1].startswith("  merge-tags [merge_tag, enforce]: ")
    assert (
        passed.stdout == "would go out: campaign survey-march (client preflight)\n  no findings\n"
    )
    assert as_json.exit_code == 3
    assert json.loads(as_json.stdout)["findings"][0]["kind"] == "merge_tag"
    assert to_segment.exit_code == 3, to_segment.output
    assert to_segment.stdout.splitlines()[1].startswith("  blast-declared [over_declared_size")
    assert campaigns == []  # nothing was stored
