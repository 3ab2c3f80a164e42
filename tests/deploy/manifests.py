"""Readers for the deployment examples in deploy/, and what the gateway's code says of them.

Helpers for tests/deploy/test_manifests.py: load each example (Dockerfile, compose file,
Kubernetes manifests, systemd unit), turn the SENDBRAKE_* variables it sets into the
gateway's real settings, parse its command line with the real CLI, and find the tools
that validate each format. Holds no tests and no fixtures.
"""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
from pathlib import Path
from typing import Any

import click
import pytest
import yaml
from dockerfile_parse import DockerfileParser

from gateway import cli, settings
from gateway.cli.settings_docs import reference_markdown
from gateway.ops.routes import PROBES

ROOT = Path(__file__).resolve().parent.parent.parent
DEPLOY = ROOT / "deploy"
K8S = DEPLOY / "k8s"
SYSTEMD = DEPLOY / "systemd"
POSTFIX = DEPLOY / "postfix"
SCHEMAS = Path(__file__).resolve().parent / "schemas"

# What an orderly stop needs beyond relay.drain_timeout: closing the listeners, cancelling
# what did not finish, giving its leases back, closing the upstream and the spool.
STOP_MARGIN = 10.0


def tool(name: str) -> str:
    """The path of a required command; fail (never skip) when it is missing."""
    path = shutil.which(name) or shutil.which(name, path="/usr/sbin:/sbin:/usr/bin")
    if path is None:
        pytest.fail(f"{name} is not installed: run `make test`, which installs it")
    return path


def run(*args: str | Path, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(a) for a in args], cwd=cwd, capture_output=True, text=True, check=False
    )


# --- settings -----------------------------------------------------------------------------


def documented_variables() -> set[str]:
    """The variables `sendbrake config docs` documents (its `environment` column)."""
    found = set(re.findall(r"\| `(SENDBRAKE_[A-Z0-9_]+)` \|", reference_markdown()))
    assert "SENDBRAKE_SMTP__LISTEN" in found, "the settings reference changed its layout"
    return found | {settings.CONFIG_ENV}


def resolve(env: dict[str, str], config: Path | None = None) -> settings.Settings:
    """The settings a gateway started with `env` (and `config`) runs with.

    Every SENDBRAKE_* name must be a documented setting: `settings.load` ignores a name
    without `__` silently, so a typo there would otherwise pass. Loading then checks each
    value with the gateway's own models.
    """
    unknown = sorted(
        n for n in env if n.startswith("SENDBRAKE_") and n not in documented_variables()
    )
    assert unknown == [], f"no such setting: {unknown} (see `sendbrake config docs`)"
    return settings.load(config, environ=env)


def port(listen: str) -> int:
    return settings.split_hostport(listen)[1]


def probe_paths() -> dict[str, str]:
    """Handler name -> path of the routes that need no token (/healthz, /readyz, ...)."""
    return {route.handler: route.path for route in PROBES}


def under(path: str | Path, folder: str | Path) -> bool:
    return Path(path).is_relative_to(Path(folder))


# --- the command line -----------------------------------------------------------------------


def cli_command(argv: list[str]) -> click.Command:
    """Resolve `sendbrake VERB ... OPTIONS` with the real CLI; fail on an unknown verb or option."""
    assert Path(argv[0]).name == "sendbrake", argv
    command: click.Command = cli.main
    ctx = click.Context(cli.main, info_name="sendbrake")
    args = list(argv[1:])
    while isinstance(command, click.Group):
        assert args, f"{argv}: `sendbrake` needs a command"
        name = args.pop(0)
        sub = command.get_command(ctx, name)
        assert sub is not None, f"{argv}: sendbrake has no command {name!r}"
        command = sub
        if isinstance(command, click.Group):
            ctx = click.Context(command, info_name=name, parent=ctx)
    try:
        command.make_context(command.name, args, parent=ctx)
    except click.ClickException as exc:
        pytest.fail(f"{argv}: {exc.format_message()}")
    return command


# --- the Dockerfile -------------------------------------------------------------------------


def dockerfile() -> DockerfileParser:
    return DockerfileParser(path=str(DEPLOY / "Dockerfile"))


def stages(parser: DockerfileParser) -> list[list[dict[str, Any]]]:
    """The instructions of each build stage, comments left out."""
    found: list[list[dict[str, Any]]] = []
    for instruction in parser.structure:
        if instruction["instruction"] == "FROM":
            found.append([])
        if instruction["instruction"] != "COMMENT" and found:
            found[-1].append(instruction)
    return found


def final_stage(name: str) -> list[str]:
    """The values of every `name` instruction of the image's (last) stage."""
    return [i["value"] for i in stages(dockerfile())[-1] if i["instruction"] == name]


def image_env() -> dict[str, str]:
    return dict(dockerfile().envs)


def image_uid() -> int:
    [user] = final_stage("USER")
    return int(user.split(":")[0])


# --- YAML manifests -------------------------------------------------------------------------


def compose() -> dict[str, Any]:
    return yaml.safe_load((DEPLOY / "compose.yaml").read_text())


def gateway_services() -> dict[str, dict[str, Any]]:
    return {name: s for name, s in compose()["services"].items() if name.startswith("gateway-")}


def k8s_documents() -> list[tuple[Path, dict[str, Any]]]:
    """Every resource in deploy/k8s, with its file (kustomization.yaml is not a resource)."""
    return [
        (path, doc)
        for path in sorted(K8S.glob("*.yaml"))
        if path.name != "kustomization.yaml"
        for doc in yaml.safe_load_all(path.read_text())
        if doc is not None
    ]


def k8s(kind: str) -> list[dict[str, Any]]:
    return [doc for _, doc in k8s_documents() if doc["kind"] == kind]


def container_env(container: dict[str, Any]) -> dict[str, str]:
    """What the container's process sees: the image's ENV, then env, then the Secrets."""
    secrets = {s["metadata"]["name"]: s.get("stringData", {}) for s in k8s("Secret")}
    env = image_env()
    for source in container.get("envFrom", []):
        env.update(secrets[source["secretRef"]["name"]])
    env.update({item["name"]: item["value"] for item in container.get("env", [])})
    return env


# --- the systemd unit -----------------------------------------------------------------------


def unit() -> dict[str, list[str]]:
    """`Section.Key` -> its values in order (a key may repeat, as SystemCallFilter does)."""
    found: dict[str, list[str]] = {}
    section = ""
    for raw in (SYSTEMD / "sendbrake.service").read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            section = line.strip("[]")
            continue
        key, _, value = line.partition("=")
        found.setdefault(f"{section}.{key.strip()}", []).append(value.strip())
    return found


def unit_exec_start() -> list[str]:
    [line] = unit()["Service.ExecStart"]
    return shlex.split(line)


def env_file(path: Path) -> dict[str, str]:
    pairs = (
        line.split("=", 1)
        for line in path.read_text().splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    )
    return {key.strip(): value.strip() for key, value in pairs}
