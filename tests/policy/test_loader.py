"""Policy files: the shipped defaults load, mistakes are named by file, line and key."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.errors import PolicyError
from gateway.policy.rules.blast import DeclaredSize
from tests.policy.factories import load

ROOT = Path(__file__).resolve().parents[2]


def write(tmp_path: Path, text: str, name: str = "site.yaml") -> Path:
    (tmp_path / name).write_text(text)
    return tmp_path / name


def test_shipped_default_policy_loads_with_its_documented_rules():
    policies = load(ROOT / "policies")
    assert [r.id for r in policies.rules] == [
        "blast-declared",
        "blast-undeclared",
        "blast-ceiling",
        "sent-twice",
        "sent-again",
        "merge-tags",
        "test-markers",
        "seasonal",
        "language",
        "undecodable",
        "unsubscribe",
        "provider-template",
        "feedback-breaker",
    ]
    declared = policies.rules[0].rule
    assert isinstance(declared, DeclaredSize)
    assert (declared.ratio, declared.slack) == (1.5, 50)
    assert policies.version.startswith("sha256:")
    # New kinds ship in shadow until operators' templates pass them.
    assert {r.id for r in policies.rules if r.mode != "enforce"} == {"unsubscribe"}


def test_file_defaults_apply_to_rules_that_do_not_set_their_own(tmp_path):
    write(
        tmp_path,
        "version: 1\ndefaults: {mode: shadow}\nrules:\n"
        "  - {id: a, kind: declared_size}\n  - {id: b, kind: absolute_ceiling, mode: enforce}\n",
    )
    modes = {r.id: r.mode for r in load(tmp_path).rules}
    assert modes == {"a": "shadow", "b": "enforce"}


def test_version_changes_when_a_file_changes(tmp_path):
    path = write(tmp_path, "version: 1\nrules:\n  - {id: a, kind: declared_size}\n")
    before = load(tmp_path).version
    path.write_text("version: 1\nrules:\n  - {id: a, kind: declared_size, ratio: 2}\n")
    assert load(tmp_path).version != before


@pytest.mark.parametrize(
    ("text", "line", "key", "reason"),
    [
        (
            "version: 1\nrules:\n  - id: a\n    kind: declared_size\n    ratio: 2: 3\n",
            5,
            "",
            "invalid YAML",
        ),
        (
            "version: 1\nrules:\n  - id: a\n    kind: declared_size\n    ratoi: 2\n",
            5,
            "rules.0.ratoi",
            "unknown key",
        ),
        (
            "version: 1\nrules:\n  - id: a\n    kind: declared_size\n    ratio: lots\n",
            5,
            "rules.0.ratio",
            "valid number",
        ),
        (
            "version: 1\nrules:\n  - id: a\n    kind: declared_size\n  - id: b\n    kind: send_nothing\n",
            6,
            "rules.1.kind",
            "unknown rule kind 'send_nothing'",
        ),
        (
            "version: 1\nrules:\n  - id: a\n    kind: declared_size\n  - id: a\n    kind: absolute_ceiling\n",
            5,
            "rules.1.id",
            "duplicate rule id",
        ),
        (
            "version: 1\nrules:\n  - {id: a, kind: declared_size, action: suppress}\n",
            3,
            "rules.0.action",
            "cannot suppress",
        ),
        ("version: 2\nrules: []\n", 1, "version", "1"),
        ("verison: 1\n", 1, "verison", "unknown key"),
    ],
)
def test_malformed_policy_names_file_line_key_and_reason(tmp_path, text, line, key, reason):
    path = write(tmp_path, text)
    with pytest.raises(PolicyError) as error:
        load(tmp_path)
    problem = error.value.problems[-1] if key else error.value.problems[0]
    assert problem.where == f"{path}:{line}"
    assert problem.key == key
    assert reason in problem.reason


def test_every_problem_of_every_file_is_reported_at_once(tmp_path):
    write(tmp_path, "version: 1\nrules:\n  - {id: a, kind: nope}\n", "a.yaml")
    write(tmp_path, "version: 1\nrules:\n  - {id: b, kind: declared_size, slack: -1}\n", "b.yaml")
    with pytest.raises(PolicyError) as error:
        load(tmp_path)
    assert [p.where for p in error.value.problems] == [
        f"{tmp_path}/a.yaml:3",
        f"{tmp_path}/b.yaml:3",
    ]
    assert "a.yaml:3: rules.0.kind: unknown rule kind" in str(error.value)


def test_a_missing_policy_directory_is_an_error_not_an_empty_policy(tmp_path):
    with pytest.raises(PolicyError, match="no such policy directory"):
        load(tmp_path / "absent")


def test_a_file_that_is_not_utf8_is_reported_not_a_crash(tmp_path):
    (tmp_path / "latin1.yaml").write_bytes("version: 1\n# Grüße\n".encode("latin-1"))
    with pytest.raises(PolicyError) as error:
        load(tmp_path)
    assert error.value.problems[0].where == str(tmp_path / "latin1.yaml")
    assert "cannot read the file" in error.value.problems[0].reason
