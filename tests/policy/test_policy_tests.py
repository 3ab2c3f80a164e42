"""`sendbrake policies test` and `policies explain`: the shipped fixtures run in CI, every
shipped rule has a fixture that fires it, and a failing fixture prints a readable diff."""

from __future__ import annotations

import shutil
from pathlib import Path

import yaml
from click.testing import CliRunner

from gateway.cli import main
from tests.harness import POLICIES
from tests.policy.factories import load

EXAMPLE = POLICIES / "examples" / "signature"


def run(*args: str):
    return CliRunner().invoke(main, list(args))


def expected_rules(folder: Path) -> set[str]:
    rules = set()
    for path in (folder / "tests").glob("*.yaml"):
        for case in yaml.safe_load(path.read_text())["tests"]:
            if case["expect"] != "none":
                rules |= {e["rule"] for e in case["expect"]}
    return rules


def test_the_shipped_policy_tests_pass():
    result = run("policies", "test", str(POLICIES))
    assert result.exit_code == 0, result.output
    assert ", 0 failed (policy version sha256:" in result.output


def test_the_example_signature_policy_tests_pass():
    result = run("policies", "test", str(EXAMPLE))
    assert result.exit_code == 0, result.output


def test_every_shipped_rule_has_a_fixture_that_fires_it():
    for folder in (POLICIES, EXAMPLE):
        rules = {r.id for r in load(folder).rules}
        assert rules <= expected_rules(folder), folder


def test_a_failing_policy_test_exits_1_with_what_was_missing_and_unexpected(tmp_path):
    folder = tmp_path / "policies"
    shutil.copytree(POLICIES, folder, ignore=shutil.ignore_patterns("examples"))
    (folder / "tests" / "wrong.yaml").write_text(
        "tests:\n"
        "  - name: expects the wrong finding\n"
        "    message: {subject: 'Hi {{FirstName}}', text: Hello}\n"
        "    expect: [{rule: seasonal, kind: out_of_season}]\n"
    )
    result = run("policies", "test", str(folder))
    assert result.exit_code == 1
    assert f"FAIL  expects the wrong finding  ({folder}/tests/wrong.yaml:2)" in result.output
    assert "missing:    seasonal/out_of_season" in result.output
    assert "unexpected: merge-tags/merge_tag: unrendered merge tag {{FirstName}}" in result.output
    assert "1 failed" in result.output


def test_a_broken_fixture_file_is_reported_with_file_line_and_key(tmp_path):
    folder = tmp_path / "policies"
    shutil.copytree(POLICIES, folder, ignore=shutil.ignore_patterns("examples"))
    (folder / "tests" / "broken.yaml").write_text(
        "tests:\n  - name: no expectation\n    message: {subject: Hello}\n"
    )
    result = run("policies", "test", str(folder))
    assert result.exit_code == 1
    assert f"{folder}/tests/broken.yaml:2: tests.0.expect: Field required" in result.output


def test_a_folder_without_policy_tests_fails(tmp_path):
    (tmp_path / "p.yaml").write_text("version: 1\nrules: []\n")
    result = run("policies", "test", str(tmp_path))
    assert result.exit_code == 1
    assert "no policy tests in" in result.output


def test_explain_prints_what_every_rule_says_about_one_message(tmp_path):
    eml = tmp_path / "m.eml"
    eml.write_bytes(
        b"From: Shop <news@shop.test>\r\nSubject: Happy New Year, {{FirstName}}!\r\n"
        b"Content-Type: text/plain; charset=utf-8\r\n\r\nA wonderful year.\r\n"
    )
    result = run(
        "policies",
        "explain",
        str(eml),
        "--dir",
        str(POLICIES),
        "--date",
        "2027-02-02",
        "--recipients",
        "300",
        "--size",
        "200",
    )
    assert result.exit_code == 0, result.output
    lines = {line.split()[0]: line for line in result.output.splitlines() if line.startswith("  ")}
    assert (
        "HOLD  merge_tag: unrendered merge tag {{FirstName}} in the subject" in lines["merge-tags"]
    )
    assert "HOLD  out_of_season" in lines["seasonal"]
    assert lines["blast-declared"].split()[-1] == "pass"
    assert "pass" in lines["undecodable"]
    assert "date 2027-02-02" in result.output
