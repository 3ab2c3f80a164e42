"""The spool contract, written once and run against every backend."""

from __future__ import annotations

import asyncio
import sqlite3
from dataclasses import replace

import pytest

from gateway.admission import steps
from gateway.errors import Conflict, SpoolError, SpoolLocked
from gateway.mail.addresses import address_hash
from gateway.model import (
    AuditEntry,
    ContentReport,
    Finding,
    Needs,
    Role,
    Segment,
    Settlement,
    Signoff,
    Token,
    Verdict,
)
from gateway.review.signoffs import SIGNOFF_KIND, signoff_tally
from gateway.spool import SqliteSpool
from gateway.spool.base import migrations
from gateway.states import CampaignState, RecipientState
from tests.spool.records import (
    NOW,
    WINDOW,
    Decide,
    accept,
    pass_all,
    sign,
    signoff_status,
    submission,
)


async def test_accepted_message_is_claimed_once_with_all_its_recipients(spool):
    admission = await accept(spool, submission(["a@x.test", "b@x.test"]), pass_all, WINDOW)
    [delivery] = await spool.claim("w1", NOW, 10, 60)
    assert delivery.message_id == admission.message_id
    assert [address for _, address in delivery.recipients] == ["a@x.test", "b@x.test"]
    assert delivery.content == b"Subject: Spring\r\n\r\nHi\r\n"
    assert await spool.claim("w2", NOW, 10, 60) == []  # leased: nobody else gets it


async def test_settle_is_a_compare_and_set_on_the_lease(spool):
    await accept(spool, submission(["a@x.test"]), pass_all, WINDOW)
    [delivery] = await spool.claim("w1", NOW, 10, 60)
    rid = delivery.recipients[0][0]
    done = [Settlement(rid, RecipientState.RELAYED, "250 ok")]
    assert await spool.settle("intruder", done, NOW) == 0
    assert await spool.settle("w1", done, NOW) == 1
    assert await spool.settle("w1", done, NOW) == 0  # settling twice changes nothing
    campaign = await spool.campaign(delivery.campaign_id)
    assert (campaign.counters.relayed, campaign.counters.queued) == (1, 0)


async def test_an_expired_lease_is_taken_over_and_the_old_owner_cannot_settle(spool):
    await accept(spool, submission(["a@x.test"]), pass_all, WINDOW)
    [first] = await spool.claim("w1", NOW, 10, 60)
    assert await spool.claim("w2", NOW + 59, 10, 60) == []  # still leased to w1
    [again] = await spool.claim("w2", NOW + 60, 10, 60)
    assert again.recipients == first.recipients
    rid = first.recipients[0][0]
    late = [Settlement(rid, RecipientState.RELAYED, "250 ok")]
    assert await spool.settle("w1", late, NOW + 61) == 0  # w1 lost its lease to w2
    assert await spool.settle("w2", late, NOW + 61) == 1
    campaign = await spool.campaign(first.campaign_id)
    assert (campaign.counters.relayed, campaign.counters.queued) == (1, 0)


async def test_a_renewed_lease_is_not_taken_over(spool):
    await accept(spool, submission(["a@x.test"]), pass_all, WINDOW)
    [first] = await spool.claim("w1", NOW, 10, 60)
    ids = [rid for rid, _ in first.recipients]
    assert await spool.renew_leases("w1", ids, NOW + 120) == 1
    assert await spool.claim("w2", NOW + 100, 10, 60) == []
    assert await spool.renew_leases("w2", ids, NOW + 500) == 0  # not w2's lease to renew
    [taken] = await spool.claim("w2", NOW + 120, 10, 60)
    assert taken.recipients == first.recipients


async def test_a_lease_given_back_after_a_hold_waits_held_not_queued(spool):
    admission = await accept(spool, submission(["a@x.test", "b@x.test"]), pass_all, WINDOW)
    [delivery] = await spool.claim("w1", NOW, 10, 60)
    await spool.hold(admission.campaign_id, Finding("manual", "manual_hold", "enforce", "x"), NOW)
    assert await spool.claim("w2", NOW + 60, 10, 60) == []  # expired, but the campaign is held
    campaign = await spool.campaign(admission.campaign_id)
    assert (campaign.counters.held, campaign.counters.queued) == (2, 0)
    assert {r.state for r in await spool.recipients(campaign_id=campaign.id)} == {
        RecipientState.HELD
    }
    assert len(delivery.recipients) == 2


async def test_a_lease_given_back_after_a_reject_is_discarded(spool):
    admission = await accept(spool, submission(["a@x.test"]), pass_all, WINDOW)
    await spool.claim("w1", NOW, 10, 60)
    await spool.reject(admission.campaign_id, "alice", NOW)
    assert await spool.release_leases("w1", NOW + 1) == 1
    campaign = await spool.campaign(admission.campaign_id)
    assert (campaign.counters.discarded, campaign.counters.queued) == (1, 0)


async def test_deferred_recipient_waits_for_its_next_attempt(spool):
    await accept(spool, submission(["a@x.test"]), pass_all, WINDOW)
    [delivery] = await spool.claim("w1", NOW, 10, 60)
    rid = delivery.recipients[0][0]
    await spool.settle("w1", [Settlement(rid, RecipientState.DEFERRED, "451 later", NOW + 30)], NOW)
    assert await spool.next_due() == NOW + 30
    assert await spool.claim("w1", NOW + 29, 10, 60) == []
    [retry] = await spool.claim("w1", NOW + 30, 10, 60)
    assert retry.attempts == 1
    campaign = await spool.campaign(delivery.campaign_id)
    assert (campaign.counters.deferred, campaign.counters.queued) == (0, 1)


async def test_concurrent_accepts_are_counted_exactly_and_grouped_into_fewer_commits(spool):
    before = spool._writer.commits
    await asyncio.gather(
        *(accept(spool, submission([f"u{i}@x.test"]), pass_all, WINDOW) for i in range(300))
    )
    campaign = await spool.find_campaign("127.0.0.0/8", "spring")
    assert campaign.counters.received == 300
    assert campaign.counters.queued == 300
    commits = spool._writer.commits - before
    assert commits < 300, "group commit should gather concurrent units"


async def test_data_survives_close_and_reopen(spools):
    first = spools()
    await first.open()
    admission = await accept(first, submission(["a@x.test"]), pass_all, WINDOW)
    await first.close()
    second = spools()
    await second.open()
    try:
        rows = await second.recipients(message_id=admission.message_id)
        assert [(r.address, r.state) for r in rows] == [("a@x.test", RecipientState.QUEUED)]
    finally:
        await second.close()


async def test_leases_of_a_dead_process_are_given_back_on_open(tmp_path):
    first = SqliteSpool(tmp_path / "spool.db")
    await first.open()
    await accept(first, submission(["a@x.test"]), pass_all, WINDOW)
    assert len(await first.claim("dead-worker", NOW, 10, 3600)) == 1
    await first.close()  # the worker never settled: as after a crash
    second = SqliteSpool(tmp_path / "spool.db")
    await second.open()
    try:
        [delivery] = await second.claim("new-worker", NOW, 10, 60)
        assert delivery.recipients[0][1] == "a@x.test"
    finally:
        await second.close()


async def test_a_second_process_cannot_open_the_same_sqlite_spool(tmp_path):
    first = SqliteSpool(tmp_path / "spool.db")
    await first.open()
    try:
        with pytest.raises(SpoolLocked):
            await SqliteSpool(first.path).open()
    finally:
        await first.close()


async def test_same_key_from_different_clients_makes_different_campaigns(spool):
    a = await accept(spool, submission(["a@x.test"], client="tenant-a"), pass_all, WINDOW)
    b = await accept(spool, submission(["b@x.test"], client="tenant-b"), pass_all, WINDOW)
    a2 = await accept(spool, submission(["c@x.test"], client="tenant-a"), pass_all, WINDOW)
    assert a.campaign_id != b.campaign_id
    assert a.campaign_id == a2.campaign_id


async def test_implicit_campaign_spans_its_window_and_a_new_one_starts_after(spool):
    key = "implicit:news@shop.test:spring"
    first = await accept(spool, submission(["a@x.test"], key=key, implicit=True), pass_all, WINDOW)
    inside = await accept(
        spool,
        submission(["b@x.test"], key=key, implicit=True, at=NOW + WINDOW - 1),
        pass_all,
        WINDOW,
    )
    after = await accept(
        spool,
        submission(["c@x.test"], key=key, implicit=True, at=NOW + WINDOW + 1),
        pass_all,
        WINDOW,
    )
    assert first.campaign_id == inside.campaign_id != after.campaign_id
    campaign = await spool.campaign(first.campaign_id)
    assert campaign.implicit
    assert campaign.counters.received == 2


async def test_first_declaration_is_kept_and_later_mail_fills_gaps(spool):
    await accept(spool, submission(["a@x.test"]), pass_all, WINDOW)
    await accept(spool, submission(["b@x.test"], size=200), pass_all, WINDOW)
    campaign = await spool.find_campaign("127.0.0.0/8", "spring")
    assert campaign.declared.size == 200


async def test_decide_sees_counters_including_the_message_and_a_hold_quarantines(spool):
    seen = []

    def hold_past_two(campaign, sub, facts):
        seen.append(campaign.counters.received)
        if campaign.counters.received > 2:
            finding = Finding(
                rule="blast", kind="declared_size", mode="enforce", message="too many"
            )
            return Verdict(hold=True, findings=(finding,))
        return Verdict()

    await accept(spool, submission(["a@x.test", "b@x.test"]), Decide(hold_past_two), WINDOW)
    held = await accept(spool, submission(["c@x.test"]), Decide(hold_past_two), WINDOW)
    assert seen == [2, 3]
    assert held.held
    campaign = await spool.campaign(held.campaign_id)
    assert campaign.state is CampaignState.HELD
    assert (campaign.counters.held, campaign.counters.queued) == (3, 0)
    assert [f.rule for f in campaign.findings] == ["blast"]
    assert await spool.claim("w1", NOW, 10, 60) == []


async def test_count_by_state_reports_every_state(spool):
    await accept(spool, submission(["a@x.test", "b@x.test"]), pass_all, WINDOW)
    counts = await spool.count_by_state()
    assert counts[RecipientState.QUEUED] == 2
    assert counts[RecipientState.RELAYED] == 0
    assert set(counts) == set(RecipientState)


async def test_time_on_hold_does_not_count_towards_the_retry_age(spool):
    def hold_all(campaign, sub, facts):
        return Verdict(
            hold=True, findings=(Finding(rule="r", kind="k", mode="enforce", message="m"),)
        )

    admission = await accept(spool, submission(["a@x.test"]), Decide(hold_all), WINDOW)
    ten_days_later = NOW + 10 * 86400
    await spool.release(admission.campaign_id, "alice", ten_days_later)
    [delivery] = await spool.claim("w1", ten_days_later, 10, 60)
    assert delivery.queued_at == ten_days_later


async def test_a_message_declaring_otherwise_than_its_campaign_is_reported(spool):
    seen = []

    def record(campaign, sub, facts):
        seen.append(facts.conflicts)
        return Verdict()

    await accept(spool, submission(["a@x.test"], size=200), Decide(record), WINDOW)
    await accept(spool, submission(["b@x.test"], size=250), Decide(record), WINDOW)
    await accept(
        spool, submission(["c@x.test"]), Decide(record), WINDOW
    )  # no declaration: no conflict
    assert seen == [(), (("size", 200, 250),), ()]
    campaign = await spool.find_campaign("127.0.0.0/8", "spring")
    assert campaign.declared.size == 200


# -- sign-offs --------------------------------------------------------------------------


def needs_signoff(identity: str):
    """A decider holding every message until `identity` signed off, as the signature rule does."""

    def fn(campaign, sub, facts):
        if identity in facts.signoffs:
            return Verdict()
        finding = Finding("sig", SIGNOFF_KIND, "enforce", f"{identity} must sign off")
        return Verdict(hold=True, findings=(finding,), tallies={signoff_tally(identity): 1})

    return Decide(fn, Needs(signoffs=True))


async def test_a_signoff_is_seen_by_later_decisions_and_releases_what_only_it_held(spool):
    decider = needs_signoff("ceo")
    held = await accept(spool, submission(["a@x.test"]), decider, WINDOW)
    assert held.held
    signed, required = await signoff_status(spool, held.campaign_id)
    assert (signed, required) == ([], frozenset({"ceo"}))
    campaign = await sign(spool, Signoff(held.campaign_id, "ceo", "jane", "mine", NOW))
    assert campaign.state is CampaignState.RELEASED
    assert campaign.counters.queued == 1
    later = await accept(spool, submission(["b@x.test"]), decider, WINDOW)
    assert not later.held
    [signoff], _ = await signoff_status(spool, held.campaign_id)
    assert (signoff.identity, signoff.actor, signoff.on_behalf) == ("ceo", "jane", False)
    events = [e.event for e in await spool.events(held.campaign_id)]
    assert events[-2:] == ["signed_off", "released"]


async def test_a_signoff_does_not_release_a_campaign_another_rule_holds(spool):
    def fn(campaign, sub, facts):
        findings = (Finding("tags", "merge_tag", "enforce", "leak"),)
        if "ceo" not in facts.signoffs:
            findings += (Finding("sig", SIGNOFF_KIND, "enforce", "ceo must sign"),)
        return Verdict(hold=True, findings=findings, tallies={signoff_tally("ceo"): 1})

    held = await accept(spool, submission(["a@x.test"]), Decide(fn, Needs(signoffs=True)), WINDOW)
    campaign = await sign(spool, Signoff(held.campaign_id, "ceo", "jane", "mine", NOW))
    assert campaign.state is CampaignState.HELD


async def test_a_rejected_campaign_cannot_be_signed_off(spool):
    held = await accept(spool, submission(["a@x.test"]), needs_signoff("ceo"), WINDOW)
    await spool.reject(held.campaign_id, "alice", NOW)
    with pytest.raises(Conflict):
        await sign(spool, Signoff(held.campaign_id, "ceo", "jane", "late", NOW))


async def test_sender_segment_membership_is_looked_up_for_the_message_senders(spool):
    seen = []

    def fn(campaign, sub, facts):
        seen.append((dict(facts.sender_members), dict(facts.segment_sizes)))
        return Verdict()

    version = await spool.segment_begin("reps", NOW)
    await spool.segment_add(version, [address_hash("rep@shop.test")])
    await spool.segment_publish(Segment("reps", version, 1, 1, 0, "upload", None, "test", NOW))
    report = ContentReport(
        analysed=True,
        senders=("news@shop.test", "rep@shop.test"),
        sender_hashes=(address_hash("news@shop.test"), address_hash("rep@shop.test")),
    )
    sub = replace(submission(["a@x.test"]), report=report)
    decider = Decide(fn, Needs(sender_segments=frozenset({"reps", "nope"})))
    await accept(spool, sub, decider, WINDOW)
    [(members, sizes)] = seen
    assert members == {"reps": frozenset({1})}
    assert sizes == {"reps": 1, "nope": None}


async def test_a_recipient_deferred_after_its_campaign_stopped_is_not_retried(spool):
    held = await accept(spool, submission(["a@x.test"], key="held"), pass_all, WINDOW)
    rejected = await accept(spool, submission(["b@x.test"], key="gone"), pass_all, WINDOW)
    deliveries = await spool.claim("w1", NOW, 10, 60)
    await spool.hold(held.campaign_id, Finding("manual", "manual_hold", "enforce", "x"), NOW)
    await spool.reject(rejected.campaign_id, "alice", NOW)
    later = [
        Settlement(rid, RecipientState.DEFERRED, "451 later", NOW + 30)
        for d in deliveries
        for rid, _ in d.recipients
    ]
    assert await spool.settle("w1", later, NOW + 1) == 2
    assert await spool.claim("w1", NOW + 30, 10, 60) == []
    on_hold = await spool.campaign(held.campaign_id)
    gone = await spool.campaign(rejected.campaign_id)
    assert (on_hold.counters.held, on_hold.counters.deferred, on_hold.counters.queued) == (1, 0, 0)
    assert (gone.counters.discarded, gone.counters.deferred, gone.counters.queued) == (1, 0, 0)


async def test_attach_beside_a_running_spool_writes_through_its_locking(tmp_path):
    running = SqliteSpool(tmp_path / "spool.db")
    await running.open()
    beside = SqliteSpool(tmp_path / "spool.db")
    try:
        await beside.attach()
        token = Token("ops", "ab" * 32, frozenset({Role.OPERATOR}), created_at=NOW)
        await beside.add_token(token)
        assert await running.token_by_hash("ab" * 32) == token  # seen at once
        with pytest.raises(Conflict):
            await beside.add_token(token)
        assert await beside.revoke_token("ops", NOW + 1)
        assert await running.token_by_hash("ab" * 32) is None
    finally:
        await beside.close()
        await running.close()


async def test_attach_never_migrates_a_schema_behind_a_running_gateway(tmp_path):
    path = tmp_path / "spool.db"
    running = SqliteSpool(path)
    await running.open()
    conn = sqlite3.connect(path)
    with conn:
        conn.execute(
            "DELETE FROM schema_version WHERE version = (SELECT MAX(version) FROM schema_version)"
        )
    try:
        with pytest.raises(SpoolError, match="schema version"):
            await SqliteSpool(path).attach()
        assert (
            conn.execute("SELECT MAX(version) FROM schema_version").fetchone()[0]
            == len(migrations("sqlite")) - 1
        )
    finally:
        conn.close()
        await running.close()


async def test_leases_of_a_large_delivery_are_renewed_in_one_call(spool):
    rcpts = [f"u{i}@x.test" for i in range(1_200)]  # more ids than one statement takes
    await accept(spool, submission(rcpts), pass_all, WINDOW)
    [delivery] = await spool.claim("w1", NOW, 10, 60)
    ids = [rid for rid, _ in delivery.recipients]
    assert await spool.renew_leases("w1", ids, NOW + 120) == 1_200
    assert await spool.claim("w2", NOW + 100, 10, 60) == []


async def test_the_sqlite_spool_files_are_readable_by_their_owner_only(tmp_path):
    spool = SqliteSpool(tmp_path / "spool.db")
    await spool.open()
    try:
        await accept(spool, submission(["a@x.test"]), pass_all, WINDOW)
        files = sorted(tmp_path.glob("spool.db*"))
        assert {f.name for f in files} >= {"spool.db", "spool.db-wal", "spool.db.lock"}
        assert {f.name: oct(f.stat().st_mode & 0o777) for f in files} == {
            f.name: "0o600" for f in files
        }
    finally:
        await spool.close()


def held_by(campaign, sub, facts):
    return Verdict(hold=True, findings=(Finding(rule="r", kind="k", mode="enforce", message="m"),))


async def test_a_decision_and_its_audit_entry_commit_together(spool):
    admission = await accept(spool, submission(["a@x.test"]), Decide(held_by), WINDOW)
    entry = AuditEntry(NOW, "alice", "release campaign", admission.campaign_id, "ok now", "ok")
    released = await spool.release(admission.campaign_id, "alice", NOW, audit=entry)
    assert released.state is CampaignState.RELEASED
    [logged] = await spool.audit_log()
    assert (logged.actor, logged.action, logged.reason) == ("alice", "release campaign", "ok now")


async def test_a_decision_whose_audit_entry_cannot_be_written_is_not_made(spool):
    admission = await accept(spool, submission(["a@x.test"]), Decide(held_by), WINDOW)
    unwritable = AuditEntry(NOW, "alice", "release campaign", "c", "r", "ok", {"x": object()})
    with pytest.raises(TypeError):
        await spool.release(admission.campaign_id, "alice", NOW, audit=unwritable)
    campaign = await spool.campaign(admission.campaign_id)
    assert (campaign.state, campaign.counters.held) == (CampaignState.HELD, 1)
    assert await spool.claim("w1", NOW, 10, 60) == []  # nothing was queued to go out
    with pytest.raises(TypeError):
        await spool.set_relay_paused(
            paused=True, actor="alice", reason="r", now=NOW, audit=unwritable
        )
    assert not await spool.relay_paused()
    assert await spool.audit_log() == []


async def test_an_approval_is_audited_with_the_approvers_it_leaves(spool):
    admission = await accept(spool, submission(["a@x.test"]), Decide(held_by), WINDOW)

    def pending(approvers):
        return AuditEntry(NOW, approvers[-1], "release campaign", "c", "r", "pending", {"n": 1})

    assert await spool.approve_release(admission.campaign_id, "alice", NOW, audit=pending) == [
        "alice"
    ]
    await spool.approve_release(admission.campaign_id, "bob", NOW, audit=lambda _: None)
    assert [e.actor for e in await spool.audit_log()] == ["alice"]


async def test_an_approval_carries_its_reason_on_the_timeline(spool):
    admission = await accept(spool, submission(["a@x.test"]), Decide(held_by), WINDOW)
    note = {"reason": "checked the list", "recipients": 1}
    await spool.approve_release(admission.campaign_id, "alice", NOW, details=note)
    approval = (await spool.events(admission.campaign_id))[-1]
    assert (approval.event, approval.actor, approval.details) == ("release_approved", "alice", note)


async def test_campaigns_are_searched_by_a_part_of_their_key_ignoring_case(spool):
    for key in ("Spring-Sale", "spring_news", "autumn", "100%_off"):
        await accept(spool, submission(["a@x.test"], key=key), pass_all, WINDOW)
    found = await spool.campaigns(key="SPRING")
    assert sorted(c.key for c in found) == ["Spring-Sale", "spring_news"]
    # LIKE's wildcards in the text match only themselves.
    assert [c.key for c in await spool.campaigns(key="g_")] == ["spring_news"]
    assert [c.key for c in await spool.campaigns(key="%_")] == ["100%_off"]
    assert await spool.campaigns(key="winter") == []


async def test_a_rehearsal_answers_as_the_admission_would_and_keeps_nothing(spool):
    await accept(spool, submission(["a@x.test"]), pass_all, WINDOW)
    again = submission(["a@x.test", "b@x.test"])
    rehearsed = await spool.rehearse(lambda tx: steps.admit(tx, again, pass_all, WINDOW))
    [campaign] = await spool.campaigns()
    assert campaign.counters.received == 1  # the rehearsal's two were rolled back
    assert [r.address for r in await spool.recipients()] == ["a@x.test"]
    admitted = await accept(spool, again, pass_all, WINDOW)
    assert (rehearsed.campaign_id, rehearsed.held) == (admitted.campaign_id, admitted.held)
    assert (await spool.campaign(campaign.id)).counters.received == 3


async def test_a_retry_of_a_stored_transaction_is_answered_with_it_and_stores_nothing(spool):
    first = replace(submission(["a@x.test", "b@x.test"]), resend_key=b"k" * 16)
    stored = await accept(spool, first, pass_all, WINDOW)
    retry = replace(first, message_id="other", resend_key=b"k" * 16)
    again = await accept(spool, retry, pass_all, WINDOW)
    assert (again.message_id, again.campaign_id, again.resent) == (
        stored.message_id,
        stored.campaign_id,
        True,
    )
    [campaign] = await spool.campaigns()
    assert campaign.counters.received == 2
    assert campaign.duplicates == 0
    other = replace(first, message_id="rerun", resend_key=b"r" * 16)  # a new Message-ID
    assert not (await accept(spool, other, pass_all, WINDOW)).resent
    assert (await spool.campaign(campaign.id)).duplicates == 2


async def test_only_bodies_of_done_messages_past_the_retention_are_retired(spool):
    done = await accept(spool, submission(["a@x.test"]), pass_all, WINDOW)
    [delivery] = await spool.claim("w1", NOW, 10, 60)
    settled = [Settlement(delivery.recipients[0][0], RecipientState.RELAYED, "250 ok")]
    assert await spool.settle("w1", settled, NOW) == 1
    waiting = await accept(spool, submission(["b@x.test"]), pass_all)
    held = await accept(spool, submission(["c@x.test"], key="other"), Decide(held_by))
    assert await spool.retire_bodies(NOW - 1, NOW + 10) == 0  # not past the retention yet
    assert await spool.retire_bodies(NOW + 1, NOW + 10) == 1
    assert await spool.retire_bodies(NOW + 1, NOW + 10) == 0  # each body once
    retired = await spool.message(done.message_id)
    assert (retired.content, retired.retired_at) == (b"", NOW + 10)
    for kept in (waiting, held):
        message = await spool.message(kept.message_id)
        assert (message.content != b"", message.retired_at) == (True, None)
