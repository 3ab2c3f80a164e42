"""`sendbrake tokens …` as an operator runs it: real subprocesses on a real spool (a SQLite
file, a PostgreSQL schema), beside a gateway running in the test."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import subprocess
import sys
from pathlib import Path

import aiohttp

from gateway.ops.auth import token_hash
from gateway.settings import Settings
from tests.harness import run_gateway
from tests.process import sendbrake


async def asendbrake(*args: str, spool_url: str) -> subprocess.CompletedProcess[str]:
    """Run the CLI without blocking the loop the gateway under test runs on."""
    return await asyncio.to_thread(sendbrake, *args, spool_url=spool_url)


def added_token(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 0, result.stderr
    return result.stdout.splitlines()[-1]


async def campaigns_status(http_url: str, token: str) -> int:
    headers = {"Authorization": f"Bearer {token}"}
    async with (
        aiohttp.ClientSession() as http,
        http.get(f"{http_url}/api/v1/campaigns", headers=headers) as response,
    ):
        return response.status


def test_add_prints_the_token_alone_on_the_last_line_and_stores_only_its_hash(tmp_path):
    url = f"sqlite:///{tmp_path}/var/spool.db"
    result = sendbrake("tokens", "add", "deploy", "--role", "operator", spool_url=url)
    token = added_token(result)
    assert token.startswith("sb_")
    assert result.stdout == token + "\n"
    assert "deploy" in result.stderr
    with sqlite3.connect(tmp_path / "var" / "spool.db") as conn:
        rows = conn.execute("SELECT name, sha256, roles FROM tokens").fetchall()
    assert rows == [("deploy", token_hash(token), '["operator"]')]
    for path in (tmp_path / "var").iterdir():
        assert token.encode() not in path.read_bytes(), path


async def test_a_token_added_while_the_gateway_runs_works_at_once_and_revoked_it_gets_401(
    settings_for, unopened_spool_url
):
    url = unopened_spool_url
    settings: Settings = settings_for(spool={"url": url})
    async with run_gateway(settings) as gw:
        token = added_token(
            await asendbrake("tokens", "add", "ci", "--role", "viewer", spool_url=url)
        )
        assert await campaigns_status(gw.http_url, token) == 200

        revoked = await asendbrake("tokens", "revoke", "ci", spool_url=url)
        assert revoked.returncode == 0, revoked.stderr
        assert await campaigns_status(gw.http_url, token) == 401


def test_list_shows_roles_identity_and_revocation_as_a_table_and_as_json(unopened_spool_url):
    url = unopened_spool_url
    added_token(
        sendbrake("tokens", "add", "ops", "--role", "operator", "--role", "viewer", spool_url=url)
    )
    added_token(
        sendbrake(
            "tokens", "add", "ceo-mail", "--role", "submitter", "--identity", "ceo", spool_url=url
        )
    )
    assert sendbrake("tokens", "revoke", "ops", spool_url=url).returncode == 0

    table = sendbrake("tokens", "list", spool_url=url)
    assert table.returncode == 0, table.stderr
    header, ceo, ops = table.stdout.splitlines()
    assert header.split() == ["NAME", "ROLES", "IDENTITY", "CREATED", "REVOKED"]
    assert ceo.split()[:3] == ["ceo-mail", "submitter", "ceo"]
    assert ceo.split()[4] == "-"
    assert ops.split()[:3] == ["ops", "operator,viewer", "-"]
    assert ops.split()[4].endswith("Z")

    listed = json.loads(sendbrake("tokens", "list", "--json", spool_url=url).stdout)
    assert [(t["name"], t["roles"], t["identity"]) for t in listed] == [
        ("ceo-mail", ["submitter"], "ceo"),
        ("ops", ["operator", "viewer"], None),
    ]
    assert listed[0]["revoked_at"] is None
    assert listed[1]["revoked_at"] is not None
    assert "sha256" not in listed[0]


def test_a_taken_name_and_an_unknown_revoke_are_clear_errors(unopened_spool_url):
    url = unopened_spool_url
    added_token(sendbrake("tokens", "add", "ops", "--role", "operator", spool_url=url))
    again = sendbrake("tokens", "add", "ops", "--role", "viewer", spool_url=url)
    assert again.returncode == 1
    assert again.stdout == ""
    assert "error: a token named 'ops' exists already" in again.stderr

    missing = sendbrake("tokens", "revoke", "nobody", spool_url=url)
    assert missing.returncode == 1
    assert "error: no live token named 'nobody'" in missing.stderr

    assert sendbrake("tokens", "revoke", "ops", spool_url=url).returncode == 0
    revoked_again = sendbrake("tokens", "revoke", "ops", spool_url=url)
    assert revoked_again.returncode == 1
    assert "error: no live token named 'ops'" in revoked_again.stderr


def test_an_unknown_role_is_refused_before_anything_is_stored(tmp_path):
    result = sendbrake(
        "tokens", "add", "x", "--role", "root", spool_url=f"sqlite:///{tmp_path}/s.db"
    )
    assert result.returncode == 2
    assert "'root' is not one of" in result.stderr
    assert not (tmp_path / "s.db").exists()


async def test_hash_gives_the_sha256_a_config_file_token_is_declared_by(settings_for, tmp_path):
    token = "sb_from-a-password-manager"
    result = sendbrake(
        "tokens", "hash", spool_url=f"sqlite:///{tmp_path}/unused.db", stdin=token + "\n"
    )
    assert result.returncode == 0, result.stderr
    digest = result.stdout.strip()
    assert digest == token_hash(token)
    entry = {"name": "dash", "sha256": digest, "roles": ["viewer"]}
    async with run_gateway(settings_for(ops={"tokens": [entry]})) as gw:
        assert await campaigns_status(gw.http_url, token) == 200
        assert await campaigns_status(gw.http_url, token + "x") == 401


def test_hash_refuses_empty_input(tmp_path):
    result = sendbrake("tokens", "hash", spool_url=f"sqlite:///{tmp_path}/s.db", stdin="\n")
    assert result.returncode == 1
    assert "no token" in result.stderr
    assert not Path(tmp_path / "s.db").exists()


def test_a_name_used_by_a_config_file_token_is_refused(tmp_path):
    config = tmp_path / "sendbrake.yaml"
    config.write_text(
        f"spool: {{url: 'sqlite:///{tmp_path}/spool.db'}}\n"
        "ops:\n  tokens:\n    - {name: ci, sha256: '" + "0" * 64 + "', roles: [viewer]}\n"
    )
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "gateway",
            "tokens",
            "add",
            "ci",
            "--role",
            "viewer",
            "--config",
            str(config),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 1
    assert "config file already has a token named 'ci'" in result.stderr
    assert result.stdout == ""
