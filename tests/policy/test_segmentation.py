"""Segmentation checks as pure functions: facts in, findings and suppressions out."""

from __future__ import annotations

from gateway.model import Campaign, Facts, Submission
from tests.policy import factories
from tests.policy.factories import engine, submission

RCPTS = ("a@shop.test", "b@example.org", "c@example.org", "d@partner.test")


def sub() -> Submission:
    return submission(RCPTS)


def campaign(received: int = 4, category: str | None = "win-back") -> Campaign:
    return factories.campaign(received, category=category)


def test_exclude_holds_on_overlap_with_count_and_sample(tmp_path):
    e = engine(
        tmp_path,
        "  - {id: wb, kind: segment_exclude, when: {category: win-back}, segment: active}\n",
    )
    assert e.needs(campaign()).segments == {"active"}
    facts = Facts(
        members={"active": frozenset({1, 2})},
        segment_sizes={"active": 100},
        tallies={"segment:active": 28},
    )
    verdict = e.decide(campaign(), sub(), facts)
    assert verdict.hold
    [finding] = verdict.findings
    assert finding.kind == "segment_overlap"
    assert finding.evidence["overlap"] == 30
    assert finding.evidence["sample"] == ["b@example.org", "c@example.org"]
    assert verdict.tallies == {"segment:active": 2}
    assert not e.decide(campaign(category="newsletter"), sub(), facts).hold


def test_exclude_with_suppress_drops_only_the_members(tmp_path):
    e = engine(tmp_path, "  - {id: wb, kind: segment_exclude, segment: active, action: suppress}\n")
    facts = Facts(members={"active": frozenset({1, 2})}, segment_sizes={"active": 100})
    verdict = e.decide(campaign(), sub(), facts)
    assert not verdict.hold
    assert verdict.suppress == {1: "wb", 2: "wb"}


def test_exclude_allows_an_overlap_given_as_a_percentage(tmp_path):
    e = engine(
        tmp_path, "  - {id: wb, kind: segment_exclude, segment: active, max_overlap: '50%'}\n"
    )
    two_of_four = Facts(members={"active": frozenset({1, 2})}, segment_sizes={"active": 9})
    assert not e.decide(campaign(received=4), sub(), two_of_four).hold
    assert e.decide(campaign(received=3), sub(), two_of_four).hold


def test_a_segment_never_loaded_holds_fail_closed(tmp_path):
    e = engine(tmp_path, "  - {id: wb, kind: segment_exclude, segment: active, action: suppress}\n")
    verdict = e.decide(campaign(), sub(), Facts(segment_sizes={"active": None}))
    assert verdict.hold
    assert verdict.findings[0].kind == "segment_missing"
    assert verdict.findings[0].evidence == {"segments": ["active"]}


def test_only_allows_segment_members_and_internal_domains(tmp_path):
    e = engine(
        tmp_path,
        "  - {id: t, kind: segment_only, segment: testers, internal: true}\n",
        extra="internal_domains: [shop.test]\n",
    )
    testers = Facts(members={"testers": frozenset({1, 2})}, segment_sizes={"testers": 5})
    verdict = e.decide(campaign(), sub(), testers)
    assert verdict.hold
    assert verdict.findings[0].evidence["outside"] == 1
    assert verdict.findings[0].evidence["sample"] == ["d@partner.test"]
    everyone = Facts(members={"testers": frozenset({1, 2, 3})}, segment_sizes={"testers": 5})
    assert not e.decide(campaign(), sub(), everyone).hold


def test_only_with_internal_but_no_internal_domains_says_so(tmp_path):
    e = engine(tmp_path, "  - {id: t, kind: segment_only, internal: true}\n")
    verdict = e.decide(campaign(), sub(), Facts())
    assert verdict.hold
    assert "none are configured" in verdict.findings[0].message


def test_mix_holds_once_both_segments_are_reached(tmp_path):
    e = engine(tmp_path, "  - {id: m, kind: segment_mix, segments: [customers, leads]}\n")
    sizes = {"customers": 10, "leads": 10}
    only_customers = Facts(
        members={"customers": frozenset({1}), "leads": frozenset()}, segment_sizes=sizes
    )
    assert not e.decide(campaign(), sub(), only_customers).hold
    leads_now = Facts(
        members={"customers": frozenset(), "leads": frozenset({2})},
        segment_sizes=sizes,
        tallies={"segment:customers": 1},
    )
    verdict = e.decide(campaign(), sub(), leads_now)
    assert verdict.hold
    assert verdict.findings[0].evidence == {"reached": {"customers": 1, "leads": 1}}


def test_coverage_holds_strictly_above_the_share_unless_the_category_is_allowed(tmp_path):
    e = engine(
        tmp_path,
        "  - {id: db, kind: segment_coverage, segment: all, max_percent: 50,"
        " allow: {category: [all-hands]}}\n",
    )
    half = Facts(
        members={"all": frozenset({0})}, segment_sizes={"all": 10}, tallies={"segment:all": 4}
    )
    assert not e.decide(campaign(), sub(), half).hold  # 5 of 10 is not above 50 %
    more = Facts(
        members={"all": frozenset({0, 1})}, segment_sizes={"all": 10}, tallies={"segment:all": 4}
    )
    verdict = e.decide(campaign(), sub(), more)
    assert verdict.hold
    assert verdict.findings[0].evidence["percent"] == 60
    assert not e.decide(campaign(category="all-hands"), sub(), more).hold


def test_frequency_cap_suppresses_recipients_at_their_limit_and_asks_to_count(tmp_path):
    e = engine(
        tmp_path,
        "  - {id: cap, kind: frequency_cap, max_per_recipient: 3, window: 7d, action: suppress}\n",
    )
    assert e.needs(campaign()).frequency == (("cap", 604800.0),)
    verdict = e.decide(campaign(), sub(), Facts(frequency={"cap": (0, 3, 2, 5)}))
    assert verdict.suppress == {1: "cap", 3: "cap"}
    assert verdict.frequency == ("cap",)
