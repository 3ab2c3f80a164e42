"""deploy/: alert rules pass promtool (check and unit tests), the examples are valid, and
every metric the rules and the dashboard use is one the gateway really exposes.

promtool and amtool are required, not optional: `make test` installs them (Debian's
prometheus and prometheus-alertmanager packages). A missing tool fails these tests
rather than skipping them.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import aiohttp
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from tests.harness import run_gateway
from tests.metrics import DESIGN_METRICS

ROOT = Path(__file__).resolve().parent.parent.parent
PROMETHEUS = ROOT / "deploy" / "prometheus"
DASHBOARD = ROOT / "deploy" / "grafana" / "sendbrake.json"
RUNBOOK = ROOT / "docs" / "runbook.md"
METRIC = re.compile(r"\bsendbrake_[a-z_]+\b")


def tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"{name} is not installed: run `make test`, which installs it")
    return path


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, cwd=PROMETHEUS, capture_output=True, text=True, check=False)


def alerts() -> list[dict]:
    groups = yaml.safe_load((PROMETHEUS / "alerts.yml").read_text())["groups"]
    return [rule for group in groups for rule in group["rules"] if "alert" in rule]


def dashboard_exprs() -> list[str]:
    found = []

    def walk(node):
        if isinstance(node, dict):
            for key, value in node.items():
                if key == "expr" and isinstance(value, str):
                    found.append(value)
                else:
                    walk(value)
        elif isinstance(node, list):
            for item in node:
                walk(item)

    walk(json.loads(DASHBOARD.read_text()))
    return found


def test_alert_rules_pass_promtool_check():
    result = run(tool("promtool"), "check", "rules", "alerts.yml")
    assert result.returncode == 0, result.stdout + result.stderr


def test_alert_rules_pass_their_promtool_unit_tests():
    result = run(tool("promtool"), "test", "rules", "alerts_test.yml")
    assert result.returncode == 0, result.stdout + result.stderr


def test_example_scrape_config_passes_promtool_check():
    result = run(tool("promtool"), "check", "config", "prometheus.yml")
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_alert_has_a_firing_and_a_quiet_unit_test_case():
    cases = yaml.safe_load((PROMETHEUS / "alerts_test.yml").read_text())["tests"]
    evaluations = [check for case in cases for check in case["alert_rule_test"]]
    for rule in alerts():
        name = rule["alert"]
        mine = [check["exp_alerts"] for check in evaluations if check["alertname"] == name]
        assert any(mine), f"{name} has no case where it fires"
        assert not all(mine), f"{name} has no case where it stays quiet"


def test_every_alert_is_explained_in_the_runbook_it_links_to():
    runbook = RUNBOOK.read_text()
    for rule in alerts():
        name = rule["alert"]
        assert f"## {name}" in runbook, f"docs/runbook.md has no section for {name}"
        assert rule["annotations"]["runbook_url"] == f"docs/runbook.md#{name.lower()}"


def test_campaign_held_alert_links_to_the_campaign_in_the_api():
    [held] = [rule for rule in alerts() if rule["alert"] == "SendbrakeCampaignHeld"]
    assert held["annotations"]["campaign_url"] == (
        "{{ $labels.gateway_url }}/api/v1/campaigns/{{ $labels.campaign }}"
    )


def test_alertmanager_example_routes_every_severity_to_a_defined_receiver():
    config = yaml.safe_load((PROMETHEUS / "alertmanager.yml").read_text())
    receivers = {receiver["name"] for receiver in config["receivers"]}
    routes = [config["route"], *config["route"]["routes"]]
    assert {route["receiver"] for route in routes} <= receivers
    severities = {rule["labels"]["severity"] for rule in alerts()}
    matched = " ".join(m for route in routes for m in route.get("matchers", []))
    for severity in severities - {"warning"}:  # warnings take the default route
        assert f'severity="{severity}"' in matched


def test_alertmanager_example_passes_amtool():
    amtool = tool("amtool")
    result = run(amtool, "check-config", "alertmanager.yml")
    assert result.returncode == 0, result.stdout + result.stderr
    routed = run(
        amtool,
        "config",
        "routes",
        "test",
        "--config.file=alertmanager.yml",
        "alertname=SendbrakeCampaignHeld",
        "severity=page",
    )
    assert routed.stdout.strip() == "campaign-reviewers", routed.stdout + routed.stderr


def exposed_names(text: str) -> set[str]:
    """Every family and sample name in an exposition, families without samples included."""
    names = set()
    for family in text_string_to_metric_families(text):
        names.add(family.name)
        names |= {sample.name for sample in family.samples}
    return names


async def test_every_metric_in_the_rules_and_the_dashboard_is_exposed_by_the_gateway(
    settings_for,
):
    async with (
        run_gateway(settings_for()) as gw,
        aiohttp.ClientSession() as http,
        http.get(f"{gw.http_url}/metrics") as response,
    ):
        exposed = exposed_names(await response.text())
    assert exposed >= DESIGN_METRICS
    used = {
        name
        for text in [*(rule["expr"] for rule in alerts()), *dashboard_exprs()]
        for name in METRIC.findall(text)
    }
    assert used, "no metric names found"
    assert used - exposed == set()
