"""deploy/: the Dockerfile, compose file, Kubernetes manifests, systemd unit and Postfix
examples are valid for their own tools and agree with the gateway they run.

Each example is checked by a validator of its format: dockerfile-parse, the Compose
Specification's JSON schema (vendored in schemas/, since the Compose CLI is not installed
here), kubernetes-validate's offline API schemas, systemd-analyze, postconf and postmap.
And each is checked against the code: every SENDBRAKE_* variable is a setting that
`sendbrake config docs` documents and that loads, ports equal the listen settings, probe
paths are routes, command lines parse with the real CLI, policies are mounted where
policies.dir points, stop timeouts exceed relay.drain_timeout, nothing runs as root.

The tools are required, not optional: `make test` installs the missing ones (Debian's
postfix and systemd packages, the dev extra). A missing tool fails these tests.
"""

from __future__ import annotations

import asyncio
import copy
import json
import os
import re
import shlex
import sys
import time
import tomllib
from pathlib import Path

import jsonschema
import kubernetes_validate
import pytest
import yaml

from gateway import cli
from gateway.policy.loader import load_policies
from gateway.policy.registry import default_registry
from gateway.spool import sqlite_path
from tests.deploy.manifests import (
    DEPLOY,
    K8S,
    POSTFIX,
    ROOT,
    SCHEMAS,
    STOP_MARGIN,
    SYSTEMD,
    cli_command,
    compose,
    container_env,
    dockerfile,
    env_file,
    final_stage,
    gateway_services,
    image_env,
    image_uid,
    k8s,
    k8s_documents,
    port,
    probe_paths,
    resolve,
    run,
    stages,
    tool,
    under,
    unit,
    unit_exec_start,
)
from tests.harness import run_gateway

POSTGRES_URL = "postgresql://sendbrake@postgres/sendbrake"
K8S_VERSIONS = ("1.30", kubernetes_validate.utils.latest_version())


def duration(value: str) -> float:
    """Compose's `45s` / `1m30s` or systemd's `60` / `1min` as seconds."""
    units = {"": 1, "s": 1, "sec": 1, "m": 60, "min": 60, "h": 3600}
    parts = re.findall(r"(\d+(?:\.\d+)?)\s*([a-z]*)", value)
    assert parts, value
    return sum(float(number) * units[unit_] for number, unit_ in parts)


# --- every example --------------------------------------------------------------------------


def test_the_deploy_readme_lists_every_file_in_deploy():
    readme = (DEPLOY / "README.md").read_text()
    files = [p.relative_to(DEPLOY).as_posix() for p in DEPLOY.rglob("*") if p.is_file()]
    missing = [f for f in files if f != "README.md" and f"({f})" not in readme]
    assert missing == [], f"deploy/README.md does not link {missing}"


def test_the_sendbrake_command_of_the_examples_is_the_package_entry_point():
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts["sendbrake"] == "gateway.cli:main"
    result = run(Path(sys.executable).parent / "sendbrake", "serve", "--help")
    assert result.returncode == 0, result.stderr
    assert "--config" in result.stdout


def test_an_unknown_setting_verb_or_option_is_caught_by_the_checks_themselves():
    with pytest.raises(AssertionError, match="SENDBRAKE_SMTP__LISTN"):
        resolve({"SENDBRAKE_SMTP__LISTN": "0.0.0.0:2525"})
    with pytest.raises(AssertionError, match="no command 'serv'"):
        cli_command(["sendbrake", "serv"])
    with pytest.raises(pytest.fail.Exception, match="--konfig"):
        cli_command(["sendbrake", "serve", "--konfig", "x.yaml"])


# --- Dockerfile -----------------------------------------------------------------------------


def test_dockerfile_builds_a_wheel_on_python_311_slim_and_installs_the_postgres_extra():
    parser = dockerfile()
    assert parser.parent_images == ["python:3.11-slim", "python:3.11-slim"]
    build, image = stages(parser)
    build_runs = " ".join(i["value"] for i in build if i["instruction"] == "RUN")
    assert "pip wheel" in build_runs
    assert "'.[postgres]'" in build_runs
    install = " ".join(final_stage("RUN"))
    assert "from=build" in install
    assert "pip install" in install
    assert "'sendbrake[postgres]'" in install
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert "postgres" in extras["optional-dependencies"]
    assert image[0]["value"] == "python:3.11-slim"


def test_dockerfile_copies_files_that_exist_and_that_the_context_does_not_exclude():
    ignored = [
        line.strip()
        for line in (DEPLOY / "Dockerfile.dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert {".venv", ".git", "var"} <= set(ignored)
    copies = [i["value"] for i in dockerfile().structure if i["instruction"] == "COPY"]
    assert copies
    for value in copies:
        *sources, _dest = shlex.split(value)
        for source in sources:
            assert (ROOT / source).exists(), f"COPY {source}: no such file in the repository"
            top = Path(source).parts[0]
            assert top not in ignored, f"COPY {source}: excluded by Dockerfile.dockerignore"


def test_dockerfile_runs_as_a_numeric_non_root_user_created_in_the_image():
    uid = image_uid()
    assert uid != 0
    assert final_stage("USER") == [f"{uid}:{uid}"]
    created = " ".join(final_stage("RUN"))
    assert f"--uid {uid}" in created
    assert f"--gid {uid}" in created


def test_dockerfile_settings_ports_and_paths_agree():
    env = image_env()
    cfg = resolve(env)
    smtp, http = port(cfg.smtp.listen), port(cfg.http.listen)
    [exposed] = final_stage("EXPOSE")
    assert {int(p) for p in exposed.split()} == {smtp, http}
    assert cfg.smtp.listen.startswith("0.0.0.0:")
    assert cfg.http.listen.startswith("0.0.0.0:")
    # The shipped policies land where policies.dir points.
    copied = [shlex.split(v) for v in final_stage("COPY")]
    assert ["policies/", f"{cfg.policies.dir}/"] in copied
    # The SQLite spool and the outbox live in the volume, which is the working directory.
    [volume] = (json.loads(v) for v in final_stage("VOLUME"))
    [state] = volume
    assert final_stage("WORKDIR") == [state]
    assert under(sqlite_path(cfg.spool.url), state)
    assert under(cfg.upstream.outbox, state)


def test_dockerfile_stops_on_sigterm_and_runs_sendbrake_serve():
    assert final_stage("STOPSIGNAL") == ["SIGTERM"]
    [cmd] = final_stage("CMD")
    assert cli_command(json.loads(cmd)) is cli.serve


def healthcheck() -> tuple[dict[str, str], str]:
    [value] = final_stage("HEALTHCHECK")
    options, _, command = value.partition(" CMD ")
    flags = dict(flag.removeprefix("--").split("=") for flag in options.split())
    return flags, command.strip()


async def shell(command: str, env: dict[str, str]) -> int:
    proc = await asyncio.create_subprocess_exec(
        "/bin/sh", "-c", command, env=env, stderr=asyncio.subprocess.DEVNULL
    )
    return await asyncio.wait_for(proc.wait(), 20)


async def test_dockerfile_healthcheck_passes_on_a_running_gateway_and_fails_without_one(
    settings_for,
):
    flags, command = healthcheck()
    assert {"interval", "timeout", "retries"} <= flags.keys()
    assert "/healthz" in command
    assert probe_paths()["healthz"] == "/healthz"
    # The urllib timeout stays within the HEALTHCHECK's own.
    [inner] = re.findall(r"timeout=(\d+)\)", command)
    assert int(inner) < duration(flags["timeout"])
    # python is the image's interpreter; here the test environment's, which has sendbrake.
    path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"
    async with run_gateway(settings_for(http={"listen": "127.0.0.1:0"})) as gw:
        listen = f"0.0.0.0:{gw.addresses.http[1]}"
        env = {"PATH": path, "SENDBRAKE_HTTP__LISTEN": listen}
        assert await shell(command, env) == 0
    assert await shell(command, env) != 0  # the same port, nothing listening any more


# --- compose --------------------------------------------------------------------------------


def test_compose_file_is_valid_against_the_compose_specification():
    schema = json.loads((SCHEMAS / "compose-spec.json").read_text())
    validator = jsonschema.Draft7Validator(schema)
    errors = [
        f"{'/'.join(map(str, e.path))}: {e.message}" for e in validator.iter_errors(compose())
    ]
    assert errors == []
    broken = copy.deepcopy(compose())
    broken["services"]["gateway-a"]["stop_grace_periode"] = "45s"
    assert not validator.is_valid(broken), "the schema does not catch a misspelt key"


def test_compose_runs_two_gateways_built_from_the_dockerfile_on_a_healthy_postgres():
    services = compose()["services"]
    gateways = gateway_services()
    assert sorted(gateways) == ["gateway-a", "gateway-b"]
    postgres = services["postgres"]
    assert postgres["image"].split(":")[1].startswith("16")
    assert "pg_isready" in postgres["healthcheck"]["test"]
    for name, service in gateways.items():
        build = service["build"]
        assert (DEPLOY / build["context"]).resolve() == ROOT, name
        assert (DEPLOY / build["context"] / build["dockerfile"]).resolve() == DEPLOY / "Dockerfile"
        assert service["depends_on"]["postgres"]["condition"] == "service_healthy"
        url = service["environment"]["SENDBRAKE_SPOOL__URL"]
        assert url == POSTGRES_URL
        # The database the URL names is the one postgres creates.
        assert postgres["environment"]["POSTGRES_USER"] == "sendbrake"
        assert postgres["environment"]["POSTGRES_DB"] == url.rsplit("/", 1)[1]
        assert "user" not in service or not str(service["user"]).startswith(("0", "root"))


def test_compose_gateways_settings_ports_policies_and_stop_agree():
    sources = set()
    for name, service in gateway_services().items():
        env = {**image_env(), **service["environment"]}
        cfg = resolve(env)
        published = {int(str(p).split(":")[-1]) for p in service["ports"]}
        assert published == {port(cfg.smtp.listen), port(cfg.http.listen)}, name
        mounts = {v.split(":")[1]: v.split(":") for v in service["volumes"]}
        source, _, *mode = mounts[str(cfg.policies.dir)]
        assert mode == ["ro"], f"{name}: policies should be mounted read-only"
        assert list((DEPLOY / source).glob("*.yaml")), f"{name}: no policy files in {source}"
        sources.add((DEPLOY / source).resolve())
        assert under(cfg.upstream.outbox, "/var/lib/sendbrake")
        assert "/var/lib/sendbrake" in mounts, f"{name}: read_only needs a writable state folder"
        assert duration(service["stop_grace_period"]) >= cfg.relay.drain_timeout + STOP_MARGIN
        assert cli_command(service["command"]) is cli.serve
    assert len(sources) == 1, "the replicas must read the same policy files"


def test_compose_prometheus_scrapes_every_gateway_at_its_http_port():
    services = compose()["services"]
    mounts = dict(v.split(":")[1::-1] for v in services["prometheus"]["volumes"])
    config_path = DEPLOY / mounts["/etc/prometheus/prometheus.yml"]
    for source in mounts.values():
        assert (DEPLOY / source).is_file(), source
    config = yaml.safe_load(config_path.read_text())
    for rule_file in config["rule_files"]:
        assert f"/etc/prometheus/{rule_file}" in mounts, f"{rule_file} is not mounted"
    [job] = [j for j in config["scrape_configs"] if j["job_name"] == "sendbrake"]
    targets = {t for group in job["static_configs"] for t in group["targets"]}
    expected = {
        f"{name}:{port(resolve({**image_env(), **s['environment']}).http.listen)}"
        for name, s in gateway_services().items()
    }
    assert targets == expected
    [alerting] = config["alerting"]["alertmanagers"][0]["static_configs"]
    assert {t.split(":")[0] for t in alerting["targets"]} == {"alertmanager"}
    assert "alertmanager" in services
    am_mounts = dict(v.split(":")[1::-1] for v in services["alertmanager"]["volumes"])
    assert (DEPLOY / am_mounts["/etc/alertmanager/alertmanager.yml"]).is_file()
    checked = run(tool("promtool"), "check", "config", config_path.name, cwd=config_path.parent)
    assert checked.returncode == 0, checked.stdout + checked.stderr


# --- Kubernetes -----------------------------------------------------------------------------


def the_container() -> tuple[dict, dict]:
    [deployment] = k8s("Deployment")
    [container] = deployment["spec"]["template"]["spec"]["containers"]
    return deployment, container


def test_k8s_manifests_pass_kubernetes_validate_in_strict_mode():
    documents = k8s_documents()
    assert {doc["kind"] for _, doc in documents} >= {
        "Deployment",
        "Service",
        "ConfigMap",
        "Secret",
        "PodDisruptionBudget",
    }
    for path, doc in documents:
        for version in K8S_VERSIONS:
            try:
                kubernetes_validate.validate(doc, version, strict=True)
            except kubernetes_validate.ValidationError as exc:
                raise AssertionError(f"{path.name} {doc['kind']} ({version}): {exc}") from None
    broken = copy.deepcopy(the_container()[0])
    broken["spec"]["template"]["spec"]["terminationGracePeriod"] = 60
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, K8S_VERSIONS[0], strict=True)


def test_kustomization_lists_every_manifest_in_deploy_k8s():
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    files = sorted(p.name for p in K8S.glob("*.yaml") if p.name != "kustomization.yaml")
    assert sorted(kustomization["resources"]) == files


def test_k8s_settings_ports_and_probes_agree_with_the_gateway():
    deployment, container = the_container()
    assert deployment["spec"]["replicas"] == 2
    cfg = resolve(container_env(container))
    assert cfg.spool.url == POSTGRES_URL
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports == {"smtp": port(cfg.smtp.listen), "http": port(cfg.http.listen)}
    # Liveness asks only the process; readiness asks the spool too: a database outage
    # takes the pods out of the Services rather than restarting them all.
    probes = probe_paths()
    assert container["livenessProbe"]["httpGet"]["path"] == probes["healthz"]
    assert container["startupProbe"]["httpGet"]["path"] == probes["healthz"]
    assert container["readinessProbe"]["httpGet"]["path"] == probes["readyz"]
    for probe in ("livenessProbe", "readinessProbe", "startupProbe"):
        assert container[probe]["httpGet"]["port"] in {"http", ports["http"]}, probe
    annotations = deployment["spec"]["template"]["metadata"]["annotations"]
    assert int(annotations["prometheus.io/port"]) == ports["http"]
    assert annotations["prometheus.io/path"] == probes["metrics"]
    assert cli_command(container["command"]) is cli.serve


def test_k8s_services_and_disruption_budget_select_the_gateway_pods():
    deployment, container = the_container()
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert deployment["spec"]["selector"]["matchLabels"].items() <= labels.items()
    names = {p["name"] for p in container["ports"]}
    services = {s["metadata"]["name"]: s for s in k8s("Service")}
    assert sorted(services) == ["sendbrake-http", "sendbrake-smtp"]
    for service in services.values():
        assert service["spec"]["selector"].items() <= labels.items()
        for entry in service["spec"]["ports"]:
            assert entry["targetPort"] in names, entry
    [smtp] = services["sendbrake-smtp"]["spec"]["ports"]
    assert smtp["targetPort"] == "smtp"
    [pdb] = k8s("PodDisruptionBudget")
    assert pdb["spec"]["minAvailable"] == 1
    assert pdb["spec"]["selector"]["matchLabels"].items() <= labels.items()


def test_k8s_policies_config_map_is_mounted_at_policies_dir_and_loads(tmp_path):
    deployment, container = the_container()
    cfg = resolve(container_env(container))
    mounts = {m["mountPath"]: m for m in container["volumeMounts"]}
    mount = mounts[str(cfg.policies.dir)]
    assert mount.get("readOnly") is True
    volumes = {v["name"]: v for v in deployment["spec"]["template"]["spec"]["volumes"]}
    [config_map] = k8s("ConfigMap")
    assert volumes[mount["name"]]["configMap"]["name"] == config_map["metadata"]["name"]
    for name, text in config_map["data"].items():
        (tmp_path / name).write_text(text)
    loaded = load_policies(tmp_path, default_registry())
    assert loaded.rules, "the ConfigMap's policy has no rules"
    shipped = (ROOT / "policies" / "default.yaml").read_text()
    assert config_map["data"]["default.yaml"] == shipped, (
        "deploy/k8s/configmap-policies.yaml should carry policies/default.yaml as shipped"
    )


def test_k8s_grace_period_exceeds_the_pre_stop_pause_plus_the_drain():
    deployment, container = the_container()
    cfg = resolve(container_env(container))
    pause = container["lifecycle"]["preStop"]["exec"]["command"]
    assert pause[0] == "sleep"
    grace = deployment["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
    assert grace >= float(pause[1]) + cfg.relay.drain_timeout + STOP_MARGIN


def test_k8s_runs_as_the_images_non_root_user_on_a_read_only_root():
    deployment, container = the_container()
    pod = deployment["spec"]["template"]["spec"]["securityContext"]
    assert pod["runAsNonRoot"] is True
    assert pod["runAsUser"] == image_uid()
    own = container["securityContext"]
    assert own["allowPrivilegeEscalation"] is False
    assert own["readOnlyRootFilesystem"] is True
    assert own["capabilities"]["drop"] == ["ALL"]
    # What the gateway writes lands on a writable volume, not on the read-only root.
    cfg = resolve(container_env(container))
    writable = [m["mountPath"] for m in container["volumeMounts"] if not m.get("readOnly")]
    assert any(under(cfg.upstream.outbox, w) for w in writable)
    assert "/tmp" in writable  # noqa: S108 - a mount path in the manifest, not a file we open
    [workdir] = final_stage("WORKDIR")
    assert workdir in writable


def test_k8s_secret_declares_valid_token_hashes_and_the_upstream_credentials():
    [secret] = k8s("Secret")
    data = secret["stringData"]
    cfg = resolve({**image_env(), **data})
    assert cfg.ops.tokens, "no API token declared"
    assert {"SENDBRAKE_UPSTREAM__USERNAME", "SENDBRAKE_UPSTREAM__PASSWORD"} <= data.keys()
    _, container = the_container()
    assert {"secretRef": {"name": secret["metadata"]["name"]}} in container["envFrom"]


# --- systemd --------------------------------------------------------------------------------


def unit_settings():
    config = unit_exec_start()[unit_exec_start().index("--config") + 1]
    example = SYSTEMD / Path(config).name
    assert example.is_file(), f"no example of {config} in deploy/systemd"
    env = env_file(SYSTEMD / "secrets.env.example")
    for line in unit().get("Service.Environment", []):
        env.update(dict(pair.split("=", 1) for pair in shlex.split(line)))
    return resolve(env, example)


def test_systemd_unit_passes_systemd_analyze_verify(tmp_path):
    analyze = tool("systemd-analyze")
    argv = unit_exec_start()
    assert argv[0] == "/opt/sendbrake/bin/sendbrake"
    # verify checks that ExecStart's program exists: use this environment's entry point.
    real = Path(sys.executable).parent / "sendbrake"
    text = (SYSTEMD / "sendbrake.service").read_text().replace(argv[0], str(real))
    (tmp_path / "sendbrake.service").write_text(text)
    result = run(analyze, "verify", tmp_path / "sendbrake.service")
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""  # unknown keys and bad values are warnings on stderr
    (tmp_path / "broken.service").write_text(text.replace("ProtectHome=", "ProtectHomes="))
    broken = run(analyze, "verify", tmp_path / "broken.service")
    assert "ProtectHomes" in broken.stderr


def test_systemd_unit_exposure_stays_low():
    # --threshold counts tenths: 20 is the "2.0" of the 0-10 scale the report prints
    # (2.0 and below reads "OK"; an unhardened service scores about 9.6).
    result = run(
        tool("systemd-analyze"),
        "security",
        "--offline=yes",
        "--threshold=20",
        SYSTEMD / "sendbrake.service",
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr


def test_systemd_unit_paths_user_and_stop_timeout_agree_with_the_settings():
    service = unit()
    cfg = unit_settings()
    assert cli_command(unit_exec_start()) is cli.serve
    [user] = service["Service.User"]
    assert user not in {"root", "0"}
    assert service["Service.NoNewPrivileges"] == ["yes"]
    # ProtectSystem=strict: the spool and the outbox must be in the state directory.
    assert service["Service.ProtectSystem"] == ["strict"]
    [state] = service["Service.StateDirectory"]
    assert service["Service.WorkingDirectory"] == [f"/var/lib/{state}"]
    assert under(sqlite_path(cfg.spool.url), f"/var/lib/{state}")
    assert under(cfg.upstream.outbox, f"/var/lib/{state}")
    # ProtectHome and PrivateTmp hide these from the service.
    for hidden in ("/home", "/root", "/run/user", "/tmp"):  # noqa: S108 - paths, not files
        assert not under(cfg.policies.dir, hidden), cfg.policies.dir
    # No capability while both ports are unprivileged.
    assert min(port(cfg.smtp.listen), port(cfg.http.listen)) >= 1024
    assert service["Service.CapabilityBoundingSet"] == [""]
    # SIGTERM to the gateway only, and time to drain.
    assert service["Service.KillMode"] == ["mixed"]
    [stop] = service["Service.TimeoutStopSec"]
    assert duration(stop) >= cfg.relay.drain_timeout + STOP_MARGIN
    assert service["Service.EnvironmentFile"] == ["/etc/sendbrake/secrets.env"]
    assert service["Service.ExecReload"] == ["/bin/kill -HUP $MAINPID"]


def test_systemd_sysusers_file_creates_the_units_user(tmp_path):
    conf = SYSTEMD / "sendbrake.sysusers.conf"
    result = run(tool("systemd-sysusers"), "--dry-run", f"--root={tmp_path}", conf)
    assert result.returncode == 0, result.stderr
    [user] = unit()["Service.User"]
    assert f"Creating user '{user}'" in result.stderr


# --- Postfix --------------------------------------------------------------------------------


def aged(*paths: Path) -> None:
    """Date files an hour back: Postfix waits for a file changed within the last second."""
    for path in paths:
        os.utime(path, (time.time() - 3600,) * 2)


def postfix_dir(tmp_path: Path, snippet: str) -> Path:
    """A Postfix configuration folder whose main.cf is `snippet` (and Debian's master.cf)."""
    folder = tmp_path / snippet
    folder.mkdir()
    (folder / "main.cf").write_text((POSTFIX / snippet).read_text())
    (folder / "master.cf").write_text(Path("/usr/share/postfix/master.cf.dist").read_text())
    aged(folder / "main.cf", folder / "master.cf")
    return folder


def test_postfix_snippets_pass_postconf(tmp_path):
    postconf = tool("postconf")
    expected = {
        "main.cf": {"relayhost"},
        "main.cf.marketing-senders": {"sender_dependent_relayhost_maps", "transport_maps"},
    }
    for snippet, names in expected.items():
        result = run(postconf, "-c", postfix_dir(tmp_path, snippet), "-n")
        assert result.returncode == 0, result.stderr
        assert result.stderr == "", result.stderr  # e.g. "unused parameter" for a typo
        found = {line.split(" = ")[0] for line in result.stdout.splitlines()}
        assert names <= found, snippet


def test_postfix_relays_to_the_smtp_port_the_gateways_listen_on():
    [line] = [
        ln for ln in (POSTFIX / "main.cf").read_text().splitlines() if ln.startswith("relayhost")
    ]
    relay_port = int(line.rsplit(":", 1)[1])
    [smtp_service] = [s for s in k8s("Service") if s["metadata"]["name"] == "sendbrake-smtp"]
    assert relay_port == port(resolve(image_env()).smtp.listen)
    assert relay_port == port(unit_settings().smtp.listen)
    assert relay_port == smtp_service["spec"]["ports"][0]["port"]


def test_postfix_sender_map_sends_only_marketing_senders_to_sendbrake(tmp_path):
    postmap = tool("postmap")
    folder = postfix_dir(tmp_path, "main.cf.marketing-senders")
    for name in ("sendbrake_senders", "transport"):
        (folder / name).write_text((POSTFIX / name).read_text())
        aged(folder / name)
        compiled = run(postmap, "-c", folder, f"hash:{folder / name}")
        assert compiled.returncode == 0, compiled.stderr
        aged(folder / f"{name}.db")
    senders = f"hash:{folder / 'sendbrake_senders'}"
    hit = run(postmap, "-c", folder, "-q", "@news.example.com", senders)
    assert hit.stdout.strip() == "[sendbrake.internal]:2525"
    miss = run(postmap, "-c", folder, "-q", "@example.org", senders)
    assert miss.returncode == 1  # not found: this sender keeps its usual route
    # The transport map is for what bypasses sendbrake: its next hops win over the sender
    # map, so none of them may be sendbrake or a marketing sender's mail could skip it.
    entries = [
        line.split()
        for line in (POSTFIX / "transport").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert entries
    for key, nexthop in entries:
        assert "sendbrake" not in nexthop, key
        looked_up = run(postmap, "-c", folder, "-q", key, f"hash:{folder / 'transport'}")
        assert looked_up.stdout.strip() == nexthop
