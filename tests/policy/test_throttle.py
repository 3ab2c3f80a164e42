"""The throttle rule kind: validated at load, never holds, names its buckets per scope."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from gateway.errors import PolicyError
from gateway.model import Facts
from gateway.policy.engine import Engine
from gateway.policy.registry import default_registry
from tests.policy.factories import campaign, load, submission


def _engine(tmp_path: Path, rules: str) -> Engine:
    (tmp_path / "site.yaml").write_text(f"version: 1\nrules:\n{rules}")
    return Engine(load(tmp_path), registry=default_registry())


@pytest.mark.parametrize(
    ("rule", "key", "reason"),
    [
        ("{id: t, kind: throttle}", "rules.0.per_second", "Field required"),
        ("{id: t, kind: throttle, per_second: 0}", "rules.0.per_second", "greater than 0"),
        ("{id: t, kind: throttle, per_second: fast}", "rules.0.per_second", "valid number"),
        ("{id: t, kind: throttle, per_second: 5, burst: 0}", "rules.0.burst", "greater than"),
        ("{id: t, kind: throttle, per_second: 5, scope: tenant}", "rules.0.scope", "'campaign'"),
        ("{id: t, kind: throttle, per_second: 5, rate: 3}", "rules.0.rate", "unknown key"),
        ("{id: t, kind: throttle, per_second: 5, action: hold}", "rules.0", "never holds"),
    ],
)
def test_bad_throttle_parameters_are_named_by_file_line_and_key(tmp_path, rule, key, reason):
    path = tmp_path / "site.yaml"
    path.write_text(f"version: 1\nrules:\n  - {rule}\n")
    with pytest.raises(PolicyError) as error:
        load(tmp_path)
    [problem] = error.value.problems
    assert problem.where == f"{path}:3"
    assert problem.key == key
    assert reason in problem.reason


def test_a_throttle_never_holds_and_names_one_bucket_per_scope(tmp_path):
    engine = _engine(
        tmp_path,
        "  - {id: per-campaign, kind: throttle, per_second: 20, burst: 20}\n"
        "  - {id: per-client, kind: throttle, per_second: 50, scope: client}\n"
        "  - {id: all, kind: throttle, per_second: 100, scope: global}\n"
        "  - {id: news-only, kind: throttle, per_second: 1, when: {category: newsletter}}\n"
        "  - {id: trial, kind: throttle, per_second: 1, mode: shadow}\n",
    )
    spring = campaign(500)
    verdict = engine.decide(spring, submission(["a@x.test"]), Facts())
    assert not verdict.hold
    assert verdict.findings == ()
    throttles = engine.throttles(spring)
    assert [(t.rule, t.bucket, t.per_second, t.burst, t.scope) for t in throttles] == [
        ("per-campaign", "per-campaign:campaign:C1", 20.0, 20, "campaign"),
        ("per-client", "per-client:client:127.0.0.0/8", 50.0, 1, "client"),
        ("all", "all:global", 100.0, 1, "global"),
    ]  # the newsletter rule does not select it; a shadow throttle slows nothing
    other_tenant = replace(spring, id="C2", client="bob")
    assert [t.bucket for t in engine.throttles(other_tenant)][:2] == [
        "per-campaign:campaign:C2",
        "per-client:client:bob",
    ]
    assert engine.throttle_rules() == ["per-campaign", "per-client", "all", "news-only"]
