"""Settings: defaults, overrides, errors that name file, line and key, generated docs."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway import settings
from gateway.cli.settings_docs import reference_markdown
from gateway.errors import ConfigError

ROOT = Path(__file__).resolve().parent.parent


def test_defaults_match_the_operator_contract():
    s = settings.load(environ={})
    assert s.smtp.listen == "127.0.0.1:2525"
    assert s.http.listen == "127.0.0.1:8080"
    assert s.spool.url == "sqlite:///var/spool.db"
    assert s.policies.dir == Path("policies")
    assert s.upstream.kind == "capture"
    assert s.upstream.outbox == Path("var/outbox")


def test_file_values_and_environment_overrides_combine(tmp_path):
    path = tmp_path / "sendbrake.yaml"
    path.write_text("smtp:\n  listen: 0.0.0.0:25\nupstream:\n  kind: smtp\n  port: 587\n")
    s = settings.load(
        path, environ={"SENDBRAKE_UPSTREAM__PORT": "2587", "SENDBRAKE_RELAY__RETRY_BASE": "2m"}
    )
    assert s.smtp.listen == "0.0.0.0:25"
    assert s.upstream.port == 2587
    assert s.relay.retry_base == 120.0


def test_config_path_comes_from_the_environment(tmp_path):
    path = tmp_path / "other.yaml"
    path.write_text("http:\n  listen: 127.0.0.1:9999\n")
    assert settings.load(environ={"SENDBRAKE_CONFIG": str(path)}).http.listen == "127.0.0.1:9999"


def test_settings_are_frozen():
    s = settings.load(environ={})
    with pytest.raises(ValueError, match="frozen"):
        s.smtp.listen = "x"  # type: ignore[misc]


@pytest.mark.parametrize(
    ("text", "line", "key", "reason"),
    [
        (
            "smtp:\n  listen: 127.0.0.1:2525\n  max_recipients: lots\n",
            3,
            "smtp.max_recipients",
            "integer",
        ),
        ("smtp:\n  lisen: 127.0.0.1:2525\n", 2, "smtp.lisen", "Extra inputs"),
        (
            "upstream:\n  kind: carrier-pigeon\n",
            2,
            "upstream.kind",
            "'capture', 'smtp' or 'sendgrid'",
        ),
        ("relay:\n  retry_base: soon\n", 2, "relay.retry_base", "duration"),
        ("smtp:\n  listen: nowhere\n", 2, "smtp.listen", "HOST:PORT"),
    ],
)
def test_bad_config_names_file_line_key_and_reason(tmp_path, text, line, key, reason):
    path = tmp_path / "sendbrake.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as error:
        settings.load(path, environ={})
    assert error.value.where == f"{path}:{line}"
    assert error.value.key == key
    assert reason in error.value.reason


def test_invalid_yaml_names_the_line(tmp_path):
    path = tmp_path / "sendbrake.yaml"
    path.write_text("smtp:\n  listen: [unclosed\n")
    with pytest.raises(ConfigError) as error:
        settings.load(path, environ={})
    assert error.value.where.startswith(f"{path}:")
    assert "invalid YAML" in error.value.reason


def test_bad_environment_override_names_the_variable():
    with pytest.raises(ConfigError) as error:
        settings.load(environ={"SENDBRAKE_HTTP__LISTEN": "no-port"})
    assert error.value.where == "environment SENDBRAKE_HTTP__LISTEN"
    assert error.value.key == "http.listen"


def test_effective_config_masks_secrets():
    s = settings.load(environ={"SENDBRAKE_UPSTREAM__PASSWORD": "hunter2"})
    assert s.upstream.password.get_secret_value() == "hunter2"
    shown = settings.effective(s)
    assert shown["upstream"]["password"] == "**********"
    assert "hunter2" not in repr(shown)


def test_the_sendgrid_api_key_is_masked_and_required_for_that_kind():
    key = "SG.a-key-for-this-test.0123456789abcdef"
    s = settings.load(
        environ={"SENDBRAKE_UPSTREAM__KIND": "sendgrid", "SENDBRAKE_UPSTREAM__API_KEY": key}
    )
    assert s.upstream.api_key.get_secret_value() == key
    shown = settings.effective(s)
    assert shown["upstream"]["api_key"] == "**********"
    assert key not in repr(shown)
    assert key not in repr(s)
    with pytest.raises(ConfigError) as error:
        settings.load(environ={"SENDBRAKE_UPSTREAM__KIND": "sendgrid"})
    assert "upstream.api_key is required when upstream.kind is sendgrid" in error.value.reason
    with pytest.raises(ConfigError) as error:
        settings.load(environ={"SENDBRAKE_UPSTREAM__PERSONALIZATIONS_PER_CALL": "1001"})
    assert error.value.key == "upstream.personalizations_per_call"


def test_every_field_has_a_description():
    for section in settings.Settings.model_fields.values():
        for name, info in section.annotation.model_fields.items():  # type: ignore[union-attr]
            assert info.description, name


def test_settings_reference_in_docs_is_generated_from_the_code():
    committed = (ROOT / "docs" / "settings.md").read_text(encoding="utf-8")
    assert committed == reference_markdown(), "run `make docs` to regenerate docs/settings.md"


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("250ms", 0.25), ("30s", 30), ("5m", 300), ("1h", 3600), ("7d", 604800), (12, 12)],
)
def test_durations_accept_units(text, seconds):
    assert settings.parse_duration(text) == seconds


@pytest.mark.parametrize(
    ("process", "cpus", "separate"),
    [
        ("auto", {0}, False),
        ("auto", {0, 1}, True),
        ("separate", {0}, True),
        ("gateway", {0, 1, 2, 3}, False),
    ],
)
def test_upstream_process_auto_means_separate_on_more_than_one_usable_cpu(
    monkeypatch, process, cpus, separate
):
    monkeypatch.setattr(settings.os, "sched_getaffinity", lambda _pid: cpus, raising=False)
    monkeypatch.setattr(settings, "CPU_MAX", settings.Path("/nonexistent/cpu.max"))
    upstream = settings.UpstreamSettings(process=process)
    assert upstream.separate_process() is separate


@pytest.mark.parametrize(
    ("setting", "machine", "processes"),
    [  # machine: usable CPUs and the cgroup's cpu.max (None: no such file)
        ("auto", (1, None), 0),  # one CPU: threads
        ("auto", (2, None), 2),
        ("auto", (32, "200000 100000"), 2),  # a container limited to 2 CPUs on a big node
        ("auto", (32, "150000 100000"), 2),  # 1.5 CPUs: round up
        ("auto", (32, "50000 100000"), 0),  # half a CPU
        ("auto", (4, "max 100000"), 4),  # no quota
        (3, (1, None), 3),
        (0, (8, None), 0),
    ],
)
def test_content_processes_auto_follows_the_usable_cpus_and_the_cgroup_quota(
    monkeypatch, tmp_path, setting, machine, processes
):
    cpus, cpu_max = machine
    monkeypatch.setattr(
        settings.os, "sched_getaffinity", lambda _pid: set(range(cpus)), raising=False
    )
    quota = tmp_path / "cpu.max"
    if cpu_max is not None:
        quota.write_text(cpu_max + "\n")
    monkeypatch.setattr(settings, "CPU_MAX", quota)
    policies = settings.PolicySettings(content_processes=setting)
    assert policies.analysis_processes() == processes
    smtp = settings.SmtpSettings(processes=setting)  # SMTP ingress processes: the same rule
    assert smtp.ingress_processes() == processes


def test_content_processes_refuses_a_negative_count():
    with pytest.raises(ValueError, match="content_processes"):
        settings.PolicySettings(content_processes=-1)
    with pytest.raises(ValueError, match="processes"):
        settings.SmtpSettings(processes=-1)


def test_smtp_auth_off_from_the_environment_is_off_not_false(monkeypatch):
    monkeypatch.setenv("SENDBRAKE_SMTP__AUTH", "off")  # YAML would read a bare off as false
    assert settings.load(None).smtp.auth == "off"


@pytest.mark.parametrize(
    ("listen", "auth", "mode"),
    [
        ("127.0.0.1:2525", "auto", "optional"),
        ("[::1]:2525", "auto", "optional"),
        ("0.0.0.0:2525", "auto", "required"),
        ("mail.internal:2525", "auto", "required"),
        ("0.0.0.0:2525", "optional", "optional"),
    ],
)
def test_auth_is_required_by_default_beyond_loopback(listen, auth, mode):
    smtp = settings.SmtpSettings(listen=listen, auth=auth)
    assert smtp.auth_mode() == mode
