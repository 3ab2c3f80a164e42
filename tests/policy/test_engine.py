"""The engine and the blast-radius checks, as pure functions (no loop, no sockets)."""

from __future__ import annotations

import time
from dataclasses import replace

import pytest

from gateway.model import Facts
from tests.policy.factories import campaign, changed, engine, submission

SUB = submission(("a@x.test", "b@x.test", "a@x.test"))


@pytest.mark.parametrize(("received", "held"), [(300, False), (301, True)])
def test_declared_200_holds_past_declared_times_ratio(tmp_path, received, held):
    e = engine(tmp_path, "  - {id: blast, kind: declared_size, ratio: 1.5, slack: 50}\n")
    verdict = e.decide(campaign(received, 200), SUB, Facts())
    assert verdict.hold is held
    if held:
        [finding] = verdict.findings
        assert (finding.rule, finding.kind, finding.mode) == (
            "blast",
            "over_declared_size",
            "enforce",
        )
        assert finding.evidence == {
            "received": 301,
            "declared": 200,
            "ratio": 1.5,
            "slack": 50,
            "limit": 300,
        }
        assert finding.policy_version == e.policies.version
        assert finding.at == 1234.0
        assert "301" in finding.message


def test_slack_protects_small_campaigns(tmp_path):
    e = engine(tmp_path, "  - {id: blast, kind: declared_size, ratio: 1.5, slack: 50}\n")
    assert not e.decide(campaign(60, 10), SUB, Facts()).hold  # 10 × 1.5 = 15, but 10 + 50 = 60
    assert e.decide(campaign(61, 10), SUB, Facts()).hold


def test_undeclared_limit_only_applies_without_a_declaration(tmp_path):
    e = engine(tmp_path, "  - {id: u, kind: undeclared_limit, max_recipients: 100}\n")
    assert not e.decide(campaign(100), SUB, Facts()).hold
    assert e.decide(campaign(101), SUB, Facts()).findings[0].kind == "undeclared_over_limit"
    assert not e.decide(campaign(101, declared=1000), SUB, Facts()).hold


def test_ceiling_holds_whatever_was_declared(tmp_path):
    e = engine(tmp_path, "  - {id: c, kind: absolute_ceiling, max_recipients: 1000}\n")
    assert e.decide(campaign(1001, declared=5000), SUB, Facts()).hold


def test_duplicates_hold_or_suppress_only_the_repeats(tmp_path):
    held = engine(tmp_path, "  - {id: d, kind: duplicate_recipients}\n")
    verdict = held.decide(campaign(3, duplicates=1), SUB, Facts(duplicates=(2,)))
    assert verdict.hold
    assert verdict.findings[0].evidence["sample"] == ["a@x.test"]
    suppress = engine(tmp_path, "  - {id: d, kind: duplicate_recipients, action: suppress}\n")
    verdict = suppress.decide(campaign(3, duplicates=1), SUB, Facts(duplicates=(2,)))
    assert not verdict.hold
    assert verdict.suppress == {2: "d"}


def test_shadow_rules_record_but_never_hold(tmp_path):
    e = engine(tmp_path, "  - {id: blast, kind: declared_size, mode: shadow}\n")
    verdict = e.decide(campaign(1000, 200), SUB, Facts())
    assert not verdict.hold
    assert verdict.findings[0].mode == "shadow"


def test_acknowledged_findings_pass_and_new_kinds_hold_again(tmp_path):
    e = engine(
        tmp_path,
        "  - {id: blast, kind: declared_size}\n  - {id: c, kind: absolute_ceiling, max_recipients: 2000}\n",
    )
    released = frozenset({("blast", "over_declared_size")})
    assert not e.decide(campaign(1000, 200, acknowledged=released), SUB, Facts()).hold
    assert e.decide(campaign(2001, 200, acknowledged=released), SUB, Facts()).hold


def test_when_selects_by_category(tmp_path):
    e = engine(tmp_path, "  - {id: s, kind: declared_size, when: {category: [survey, poll]}}\n")
    assert e.decide(campaign(1000, 200, category="survey"), SUB, Facts()).hold
    assert not e.decide(campaign(1000, 200, category="newsletter"), SUB, Facts()).hold


def test_when_selects_each_campaign_by_its_own_fields_message_after_message(tmp_path):
    # What `when` selects is remembered per (category, key, sender, client): campaigns
    # that differ in any one of them, in turns, are each judged by their own rules.
    e = engine(
        tmp_path,
        "  - {id: s, kind: declared_size, when: {key: 'survey-*', sender: '*@research.test',"
        " client: '10.*'}}\n",
    )
    base = campaign(1000, 200)
    selected = replace(base, key="survey-q4", sender="Lab@Research.test", client="10.0.0.0/8")
    others = [
        replace(selected, key="spring"),
        replace(selected, sender="news@shop.test"),
        replace(selected, client="127.0.0.0/8"),
        replace(selected, declared=replace(selected.declared, category="poll")),
    ]
    for _ in range(3):
        assert e.decide(selected, SUB, Facts()).hold
        for other in others[:3]:
            assert not e.decide(other, SUB, Facts()).hold, other
        assert e.decide(others[3], SUB, Facts()).hold  # no category in `when`: any category


def test_a_check_that_crashes_holds_the_campaign(tmp_path):
    def broken(*_args):
        raise ZeroDivisionError("bad arithmetic")

    registry = changed("declared_size", check=broken)
    e = engine(tmp_path, "  - {id: blast, kind: declared_size}\n", registry=registry)
    verdict = e.decide(campaign(1, 200), SUB, Facts())
    assert verdict.hold
    assert verdict.findings[0].kind == "check_failed"
    assert "ZeroDivisionError" in verdict.findings[0].message


def test_a_check_over_its_time_budget_holds_the_campaign(tmp_path):
    def slow(*_args):
        total = 0
        for i in range(2_000_000):  # real work, well past a 1 µs budget
            total += i
        return []

    registry = changed("declared_size", check=slow)
    e = engine(
        tmp_path, "  - {id: blast, kind: declared_size}\n", budget=0.000001, registry=registry
    )
    verdict = e.decide(campaign(1, 200), SUB, Facts())
    assert verdict.hold
    assert verdict.findings[0].kind == "check_over_budget"


def test_a_check_kept_waiting_by_a_busy_machine_is_not_over_its_budget(tmp_path):
    def descheduled(*_args):
        time.sleep(0.2)  # wall time without CPU: what another process taking the core looks like
        return []

    registry = changed("declared_size", check=descheduled)
    e = engine(tmp_path, "  - {id: blast, kind: declared_size}\n", budget=0.05, registry=registry)
    verdict = e.decide(campaign(1, 200), SUB, Facts())
    assert not verdict.hold
    assert verdict.findings == ()


def test_a_check_over_its_budget_once_is_run_again_before_it_holds(tmp_path):
    calls = []

    def slow_the_first_time(*_args):  # a garbage collection landing in one run looks so
        calls.append(1)
        if len(calls) == 1:
            sum(range(3_000_000))  # real CPU work, well past a 1 ms budget
        return []

    registry = changed("declared_size", check=slow_the_first_time)
    e = engine(tmp_path, "  - {id: blast, kind: declared_size}\n", budget=0.001, registry=registry)
    verdict = e.decide(campaign(1, 200), SUB, Facts())
    assert not verdict.hold
    assert len(calls) == 2


def test_conflicting_declarations_hold_until_acknowledged(tmp_path):
    e = engine(tmp_path, "  - {id: blast, kind: declared_size}\n")
    facts = Facts(conflicts=(("size", 200, 250),))
    verdict = e.decide(campaign(10, 200), SUB, facts)
    assert verdict.hold
    [finding] = verdict.findings
    assert (finding.rule, finding.kind) == ("declaration", "conflicting_declaration")
    assert finding.evidence == {"size": {"kept": 200, "sent": 250}}
    acknowledged = frozenset({("declaration", "conflicting_declaration")})
    assert not e.decide(campaign(10, 200, acknowledged=acknowledged), SUB, facts).hold
