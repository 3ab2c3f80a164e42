"""The rule registry: the loader and the engine know only the kinds they are handed.

A rule unit defined here, in the test, runs end to end through the loader and the
engine; kinds a registry lacks are config errors naming file, line and key.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Literal

import pytest
from pydantic import Field

from gateway.errors import PolicyError
from gateway.mail.content import Document
from gateway.model import ContentHit, Facts, Needs
from gateway.policy.engine import Engine
from gateway.policy.fixtures import CampaignSpec, submission_for
from gateway.policy.loader import load_policies
from gateway.policy.registry import Registry, default_registry
from gateway.policy.rules.base import Context, Observation, Rule, Shared, Unit
from tests.policy.factories import campaign


class Shouting(Rule):
    """A subject with more exclamation marks than allowed (a kind only this test has)."""

    kind: Literal["shouting"]
    max_marks: int = Field(2, ge=0)
    segment: str | None = None

    def needs(self, shared: Shared) -> Needs:
        return Needs(segments=frozenset({self.segment} if self.segment else ()))


def scan_shouting(rule: Shouting, doc: Document, shared: Shared) -> list[ContentHit]:
    marks = doc.subject.count("!")
    return [ContentHit("shouting", "subject", doc.subject)] if marks > rule.max_marks else []


def check_shouting(rule: Shouting, ctx: Context) -> list[Observation]:
    hits = ctx.scan(rule.id).hits
    if not hits:
        return []
    members = ctx.facts.members.get(rule.segment, frozenset()) if rule.segment else frozenset()
    return [Observation("shouting", f"the subject shouts: {hits[0].fragment}", recipients=members)]


SHOUTING = Unit(Shouting, check_shouting, scan=scan_shouting, suppressible=True)
POLICY = """\
version: 1
rules:
  - {id: blast, kind: declared_size}
  - id: loud
    kind: shouting
    max_marks: 1
"""


def with_shouting() -> Registry:
    return Registry([*default_registry().units, SHOUTING])


def write(folder: Path, text: str) -> Path:
    (folder / "p.yaml").write_text(text)
    return folder / "p.yaml"


def test_a_rule_kind_defined_outside_the_gateway_runs_through_loader_and_engine(tmp_path):
    registry = with_shouting()
    write(tmp_path, POLICY)
    policies = load_policies(tmp_path, registry)
    loud = policies.rules[1].rule
    assert isinstance(loud, Shouting)
    assert loud.max_marks == 1
    engine = Engine(policies, registry=registry)
    sub = submission_for(b"Subject: Sale!!\r\n\r\nToday only.\r\n", CampaignSpec())
    sub = replace(sub, report=engine.analyse(sub))
    assert [h.fragment for h in sub.report.scans["loud"].hits] == ["Sale!!"]
    verdict = engine.decide(campaign(5), sub, Facts())
    assert verdict.hold
    assert [(f.rule, f.kind, f.message) for f in verdict.findings] == [
        ("loud", "shouting", "the subject shouts: Sale!!")
    ]
    calm = submission_for(b"Subject: Sale!\r\n\r\nToday only.\r\n", CampaignSpec())
    calm = replace(calm, report=engine.analyse(calm))
    assert not engine.decide(campaign(5), calm, Facts()).hold


def test_a_custom_kind_says_what_it_needs_and_whether_it_may_suppress(tmp_path):
    registry = with_shouting()
    write(
        tmp_path,
        "version: 1\nrules:\n  - {id: loud, kind: shouting, segment: vip, action: suppress}\n",
    )
    engine = Engine(load_policies(tmp_path, registry), registry=registry)
    assert engine.needs(campaign(5)).segments == {"vip"}
    sub = submission_for(
        b"Subject: Sale!!!\r\n\r\nNow.\r\n", CampaignSpec(recipients=["a@x", "b@x"])
    )
    sub = replace(sub, report=engine.analyse(sub))
    verdict = engine.decide(campaign(5), sub, Facts(members={"vip": frozenset({1})}))
    assert not verdict.hold
    assert verdict.suppress == {1: "loud"}
    not_suppressible = Registry([*default_registry().units, replace(SHOUTING, suppressible=False)])
    with pytest.raises(PolicyError) as error:
        load_policies(tmp_path, not_suppressible)
    [problem] = error.value.problems
    assert (problem.key, problem.reason) == (
        "rules.0.action",
        "rule kind shouting cannot suppress single recipients; use hold",
    )


def test_a_kind_the_registry_lacks_is_an_error_naming_file_line_key_and_known_kinds(tmp_path):
    path = write(tmp_path, POLICY)
    with pytest.raises(PolicyError) as error:
        load_policies(tmp_path, default_registry())
    [problem] = error.value.problems
    assert problem.where == f"{path}:5"
    assert problem.key == "rules.1.kind"
    assert problem.reason.startswith("unknown rule kind 'shouting'; known kinds: declared_size, ")
    with pytest.raises(PolicyError) as error:
        load_policies(tmp_path, Registry([SHOUTING]))
    [problem] = error.value.problems
    assert problem.where == f"{path}:3"
    assert (problem.key, problem.reason) == (
        "rules.0.kind",
        "unknown rule kind 'declared_size'; known kinds: shouting",
    )


def test_a_rule_without_a_kind_is_an_error_at_the_rule(tmp_path):
    path = write(tmp_path, "version: 1\nrules:\n  - {id: blast, kind: declared_size}\n  - id: b\n")
    with pytest.raises(PolicyError) as error:
        load_policies(tmp_path, default_registry())
    [problem] = error.value.problems
    assert (problem.where, problem.key) == (f"{path}:4", "rules.1.kind")
    assert problem.reason.startswith("a rule needs a kind; known kinds: declared_size, ")


def test_a_custom_kind_keys_are_checked_by_its_own_model(tmp_path):
    path = write(tmp_path, POLICY.replace("max_marks: 1", "max_marks: -1\n    volume: 11"))
    with pytest.raises(PolicyError) as error:
        load_policies(tmp_path, with_shouting())
    assert [(p.where, p.key) for p in error.value.problems] == [
        (f"{path}:6", "rules.1.max_marks"),
        (f"{path}:7", "rules.1.volume"),
    ]
    assert error.value.problems[1].reason == "unknown key"


@pytest.mark.parametrize(
    ("identities", "rule", "reason"),
    [
        ("", "{id: sig, kind: signature}", "no identities are declared; add an identities list"),
        (
            "identities:\n  - {id: ceo, name: Jane Doe}\n",
            "{id: sig, kind: signature, identities: [ceo, cfo]}",
            "unknown identity 'cfo' (declared: ceo)",
        ),
    ],
)
def test_a_signature_rule_naming_no_declared_identity_is_an_error(
    tmp_path, identities, rule, reason
):
    path = write(tmp_path, f"version: 1\n{identities}rules:\n  - {rule}\n")
    with pytest.raises(PolicyError) as error:
        load_policies(tmp_path, default_registry())
    [problem] = error.value.problems
    line = 3 + identities.count("\n")
    assert (problem.where, problem.key, problem.reason) == (
        f"{path}:{line}",
        "rules.0.identities",
        reason,
    )


def test_an_engine_refuses_rules_its_registry_cannot_check(tmp_path):
    write(tmp_path, POLICY)
    policies = load_policies(tmp_path, with_shouting())
    with pytest.raises(LookupError, match="'loud' of kind 'shouting'"):
        Engine(policies, registry=default_registry())


def test_a_registry_refuses_a_kind_twice_and_a_model_without_a_literal_kind():
    with pytest.raises(ValueError, match="'shouting' is registered twice"):
        Registry([SHOUTING, SHOUTING])

    class Vague(Rule):
        kind: str

    with pytest.raises(TypeError, match=r"Vague\.kind must be a Literal"):
        Registry([Unit(Vague, check_shouting)])


def test_the_default_registry_names_the_documented_kinds_in_order():
    assert default_registry().kinds == (
        "declared_size",
        "undeclared_limit",
        "absolute_ceiling",
        "duplicate_recipients",
        "duplicate_content",
        "segment_exclude",
        "segment_only",
        "segment_mix",
        "segment_coverage",
        "frequency_cap",
        "signature",
        "merge_tags",
        "test_markers",
        "seasonal",
        "language",
        "undecodable",
        "unsubscribe",
        "provider_template",
        "feedback",
        "throttle",
    )
    reading = {u.kind for u in default_registry().units if u.reads_content}
    assert reading == {
        "duplicate_content",
        "signature",
        "merge_tags",
        "test_markers",
        "seasonal",
        "language",
        "undecodable",
        "unsubscribe",
    }
    suppressible = {u.kind for u in default_registry().units if u.suppressible}
    assert suppressible == {
        "duplicate_recipients",
        "duplicate_content",
        "segment_exclude",
        "segment_only",
        "frequency_cap",
    }
