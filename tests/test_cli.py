"""The `sendbrake` command as an operator runs it."""

from __future__ import annotations

import subprocess
import sys

import yaml


def sendbrake(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gateway", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )


def test_config_show_prints_effective_yaml_with_secrets_masked(tmp_path):
    path = tmp_path / "sendbrake.yaml"
    path.write_text("upstream:\n  kind: smtp\n  username: relay\n  password: s3cret\n")
    result = sendbrake(
        "config",
        "show",
        "--config",
        str(path),
        env={"SENDBRAKE_SMTP__LISTEN": "127.0.0.1:2626", "PATH": ""},
    )
    assert result.returncode == 0, result.stderr
    shown = yaml.safe_load(result.stdout)
    assert shown["smtp"]["listen"] == "127.0.0.1:2626"
    assert shown["upstream"]["username"] == "relay"
    assert shown["upstream"]["password"] == "**********"
    assert "s3cret" not in result.stdout


def test_bad_config_exits_non_zero_naming_file_line_key_and_reason(tmp_path):
    path = tmp_path / "sendbrake.yaml"
    path.write_text("smtp:\n  listen: 127.0.0.1:2525\nrelay:\n  concurrency: -3\n")
    for command in (["serve"], ["config", "show"]):
        result = sendbrake(*command, "--config", str(path))
        assert result.returncode != 0
        assert f"{path}:4: relay.concurrency: Input should be greater than 0" in result.stderr


def test_help_lists_the_commands():
    result = sendbrake("--help")
    assert result.returncode == 0
    assert "serve" in result.stdout
    assert "config" in result.stdout
