"""The feedback circuit breaker: rates past `min_sent`, counts per hour, evidence, fail closed."""

from __future__ import annotations

import pytest

from gateway.errors import PolicyError
from gateway.model import Facts, Feedback, FeedbackStats
from tests.policy.factories import campaign, changed, engine, submission

BREAKER = (
    "  - {id: breaker, kind: feedback, min_sent: 100,"
    " max_rate: {complained: 0.003, bounced: 0.05}, max_per_hour: {complained: 20}}\n"
)
COMPLAINT = {"event": "spamreport", "email": "r7@example.org", "timestamp": 1234}


def verdict(tmp_path, feedback, rules=BREAKER, acknowledged=frozenset()):
    judged = engine(tmp_path, rules).judge_feedback(
        campaign(5000, acknowledged=acknowledged), feedback
    )
    return judged.hold, {f.kind: f for f in judged.findings}


def test_a_complaint_rate_past_the_threshold_holds_with_rates_and_samples(tmp_path):
    feedback = FeedbackStats(
        sent=1000,
        totals=Feedback(complained=4, delivered=990),
        samples={"complained": (COMPLAINT,)},
    )
    hold, found = verdict(tmp_path, feedback)
    assert hold
    finding = found["complaint_rate"]
    assert finding.rule == "breaker"
    assert finding.evidence["count"] == 4
    assert finding.evidence["sent"] == 1000
    assert finding.evidence["rate"] == 0.004
    assert finding.evidence["max_rate"] == 0.003
    assert finding.evidence["samples"] == [COMPLAINT]
    assert "4 of 1000 recipients sent reported it as spam" in finding.message


def test_rates_at_the_threshold_or_below_min_sent_do_not_hold(tmp_path):
    at_limit = FeedbackStats(sent=1000, totals=Feedback(complained=3, bounced=50))
    assert verdict(tmp_path, at_limit) == (False, {})
    # 5 complaints of 99 sent is 5 %, but 99 recipients are too few for a rate to mean much.
    too_few = FeedbackStats(sent=99, totals=Feedback(complained=5))
    assert verdict(tmp_path, too_few) == (False, {})


def test_an_hourly_count_holds_a_campaign_too_small_for_rates(tmp_path):
    hold, found = verdict(tmp_path, FeedbackStats(sent=40, last_hour=Feedback(complained=21)))
    assert hold
    assert found["complained_per_hour"].evidence["window"] == "1h"
    assert verdict(tmp_path, FeedbackStats(sent=40, last_hour=Feedback(complained=20))) == (
        False,
        {},
    )


def test_a_bounce_rate_is_its_own_finding(tmp_path):
    hold, found = verdict(tmp_path, FeedbackStats(sent=200, totals=Feedback(bounced=11)))
    assert hold
    assert set(found) == {"bounce_rate"}


def test_a_released_campaign_is_not_held_again_for_what_the_release_accepted(tmp_path):
    feedback = FeedbackStats(sent=1000, totals=Feedback(complained=9))
    hold, found = verdict(
        tmp_path, feedback, acknowledged=frozenset({("breaker", "complaint_rate")})
    )
    assert not hold
    assert set(found) == {"complaint_rate"}  # still recorded, for the reviewer


def test_shadow_mode_records_without_holding(tmp_path):
    rules = BREAKER.replace("kind: feedback,", "kind: feedback, mode: shadow,")
    hold, found = verdict(tmp_path, FeedbackStats(sent=1000, totals=Feedback(complained=9)), rules)
    assert not hold
    assert found["complaint_rate"].mode == "shadow"


def test_when_selects_the_campaigns_judged(tmp_path):
    rules = BREAKER.replace("kind: feedback,", "kind: feedback, when: {category: survey},")
    built = engine(tmp_path, rules)
    newsletter = campaign(5000, category="newsletter")
    assert not built.judges_feedback(newsletter)
    assert (
        built.judge_feedback(
            newsletter, FeedbackStats(sent=1000, totals=Feedback(complained=9))
        ).findings
        == ()
    )
    assert built.judges_feedback(campaign(5000, category="survey"))


def test_a_crashing_breaker_holds(tmp_path):
    def broken(rule, feedback):
        raise RuntimeError("no rates today")

    built = engine(tmp_path, BREAKER, registry=changed("feedback", judge=broken))
    judged = built.judge_feedback(campaign(5000), FeedbackStats(sent=1))
    assert judged.hold
    assert [f.kind for f in judged.findings] == ["check_failed"]


def test_admission_never_sees_a_breaker_finding(tmp_path):
    built = engine(tmp_path, BREAKER)
    assert built.decide(campaign(5000), submission(["a@example.org"]), Facts()).findings == ()


@pytest.mark.parametrize(
    ("rule", "said"),
    [
        ("{id: b, kind: feedback}", "give max_rate or max_per_hour"),
        ("{id: b, kind: feedback, max_rate: {complained: 3}}", "max_rate.complained"),
        ("{id: b, kind: feedback, max_rate: {opened: 0.1}}", "max_rate.opened"),
        ("{id: b, kind: feedback, max_per_hour: {bounced: 0}}", "max_per_hour.bounced"),
    ],
)
def test_bad_thresholds_are_load_errors(tmp_path, rule, said):
    with pytest.raises(PolicyError) as raised:
        engine(tmp_path, f"  - {rule}\n")
    assert said in str(raised.value)
