"""Console sessions and what the pages show of records: pure, clocked, no server."""

from __future__ import annotations

from gateway.model import CampaignEvent
from gateway.ops.console.sessions import SessionStore
from gateway.ops.console.views import age, pending_approvals, segment_breakdown
from gateway.settings import ConsoleSettings
from tests.clock import ManualClock


def store(clock: ManualClock, **settings: object) -> SessionStore:
    return SessionStore(ConsoleSettings.model_validate(settings), clock)


def test_a_session_is_found_by_its_cookie_only_and_ends_on_sign_out():
    sessions = store(ManualClock())
    cookie, session = sessions.start("a" * 64, "alice")
    assert sessions.get(cookie) is session
    assert sessions.get(cookie + "x") is None
    assert sessions.get("é") is None
    assert session.csrf != cookie
    sessions.end(cookie)
    assert sessions.get(cookie) is None


def test_sessions_are_bounded_and_the_oldest_ends_first():
    sessions = store(ManualClock(), max_sessions=2)
    first, _ = sessions.start("a", "alice")
    second, _ = sessions.start("b", "bob")
    third, _ = sessions.start("c", "carol")
    assert len(sessions) == 2
    assert sessions.get(first) is None
    assert sessions.get(second) is not None
    assert sessions.get(third) is not None


def test_expired_sessions_are_forgotten_when_a_new_one_starts():
    clock = ManualClock()
    sessions = store(clock, idle_timeout="10s")
    sessions.start("a", "alice")
    clock.advance(11)
    sessions.start("b", "bob")
    assert len(sessions) == 1


def test_a_notice_is_shown_once():
    _, session = store(ManualClock()).start("a", "alice")
    session.notice = ("done", "Released 60")
    assert session.pop_notice() == ("done", "Released 60")
    assert session.pop_notice() is None


def test_ages_read_at_a_glance():
    assert [age(s) for s in (0, 59, 61, 3600 + 120, 3 * 86400 + 4 * 3600 + 5)] == [
        "0 s",
        "59 s",
        "1 min 1 s",
        "1 h 2 min",
        "3 d 4 h",
    ]


def test_pending_approvals_are_those_since_the_last_release_or_rejection():
    def step(event: str, actor: str, **details: object) -> CampaignEvent:
        return CampaignEvent(0.0, event, actor, details)

    events = [
        step("held", "policy"),
        step("release_approved", "alice", reason="old", recipients=5),
        step("released", "bob"),
        step("held", "policy"),
        step("release_approved", "carol", reason="list checked", recipients=90),
        step("partially_released", "carol", recipients=10),  # approvals stay (sql_review)
    ]
    [approval] = pending_approvals(events)
    assert (approval.actor, approval.reason, approval.recipients) == ("carol", "list checked", 90)
    assert pending_approvals([*events, step("rejected", "dave")]) == []


def test_the_segment_breakdown_lists_only_segment_tallies():
    tallies = {"segment:staff": 3, "signoff:ceo": 1, "segment:customers": 40}
    assert segment_breakdown(tallies) == [("customers", 40), ("staff", 3)]
