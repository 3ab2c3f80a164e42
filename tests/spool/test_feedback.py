"""The spool contract of provider feedback and the forward outbox, on every backend."""

from __future__ import annotations

import json

from gateway.model import Feedback, FeedbackEvent, ForwardState
from gateway.spool.sql_feedback import SAMPLES_PER_KIND
from tests.spool.records import NOW, WINDOW, accept, pass_all, submission


def event(
    n: int, kind: str | None, message_id: str, email: str, *, at: float = NOW
) -> FeedbackEvent:
    raw = json.dumps({"event": kind or "open", "email": email, "sg_event_id": f"e{n}"})
    return FeedbackEvent(
        event_id=f"e{n}",
        event=kind or "open",
        kind=kind,
        recipient=email,
        message_id=message_id,
        at=at,
        evidence={"email": email, "n": n},
        raw=raw.encode(),
    )


async def test_events_are_counted_per_campaign_once_each_and_queued_to_forward(spool):
    admission = await accept(spool, submission(["a@x.test", "b@x.test"]), pass_all, WINDOW)
    mid = admission.message_id
    batch = [
        event(1, "delivered", mid, "a@x.test"),
        event(2, "bounced", mid, "b@x.test"),
        event(3, None, mid, "a@x.test"),  # an open: forwarded, not counted
        event(4, "complained", "nope", "a@x.test"),  # no such message: unattributed
    ]
    first = await spool.record_feedback("sendgrid", batch, NOW, body=b"[raw batch]")
    assert (first.received, first.new, first.unattributed, first.uncounted) == (4, 4, 1, 1)
    assert first.counted == {"delivered": 1, "bounced": 1}
    again = await spool.record_feedback("sendgrid", batch, NOW + 5, body=b"[raw batch]")
    assert (again.new, again.counted, again.forward_id) == (0, {}, None)  # a provider's retry

    campaign = await spool.campaign(admission.campaign_id)
    assert campaign.feedback == Feedback(delivered=1, bounced=1)
    assert (await spool.campaigns())[0].feedback == campaign.feedback
    assert await spool.unattributed_feedback() == {"complained": 1}
    samples = await spool.feedback_samples(admission.campaign_id)
    assert [(x.kind, x.recipient, x.message_id) for x in samples] == [
        ("bounced", "b@x.test", mid),
        ("delivered", "a@x.test", mid),
    ]
    [queued] = await spool.forwards()
    assert (queued.id, queued.state, queued.events, queued.attempts) == (
        first.forward_id,
        ForwardState.PENDING,
        4,
        0,
    )


async def test_a_batch_partly_seen_forwards_only_its_new_events_in_order(spool):
    first = [event(1, "delivered", "m", "a@x.test")]
    await spool.record_feedback("sendgrid", first, NOW, body=b"[whole]")
    mixed = [event(2, "bounced", "m", "b@x.test"), first[0], event(3, None, "m", "c@x.test")]
    outcome = await spool.record_feedback("sendgrid", mixed, NOW, body=b"[whole again]")
    assert outcome.new == 2
    claimed = await spool.claim_forwards("w1", NOW, 10, 60)
    assert [f.body for f in claimed] == [
        b"[whole]",
        b"[" + mixed[0].raw + b"," + mixed[2].raw + b"]",
    ]
    assert json.loads(claimed[1].body)[1]["sg_event_id"] == "e3"


async def test_event_ids_are_per_source_and_a_report_is_not_forwarded(spool):
    await spool.record_feedback("sendgrid", [event(1, "bounced", "m", "a@x.test")], NOW, body=b"[]")
    outcome = await spool.record_feedback(
        "dsn", [event(1, "bounced", "m", "a@x.test")], NOW, body=None
    )
    assert (outcome.new, outcome.forward_id) == (1, None)
    assert len(await spool.forwards()) == 1


async def test_counts_read_by_window_of_the_events_own_time(spool):
    admission = await accept(spool, submission(["a@x.test"]), pass_all, WINDOW)
    mid = admission.message_id
    batch = [
        event(1, "delivered", mid, "a@x.test", at=NOW - 7200),
        event(2, "bounced", mid, "a@x.test", at=NOW - 30),
        event(3, "bounced", mid, "a@x.test", at=NOW + 999),  # in the future: counted now
    ]
    await spool.record_feedback("sendgrid", batch, NOW, body=None)
    cid = admission.campaign_id
    assert await spool.feedback(cid) == Feedback(delivered=1, bounced=2)
    assert await spool.feedback(cid, since=NOW - 3600) == Feedback(bounced=2)
    assert await spool.feedback(cid, since=NOW - 3600, until=NOW - 60) == Feedback()
    assert await spool.feedback(cid, until=NOW - 3600) == Feedback(delivered=1)
    assert await spool.feedback("no-such-campaign") == Feedback()


async def test_samples_are_bounded_per_campaign_and_kind(spool):
    admission = await accept(spool, submission(["a@x.test"]), pass_all, WINDOW)
    mid = admission.message_id
    batch = [event(n, "bounced", mid, "a@x.test") for n in range(SAMPLES_PER_KIND + 3)]
    await spool.record_feedback("sendgrid", batch, NOW, body=None)
    samples = await spool.feedback_samples(admission.campaign_id)
    assert [s.evidence["n"] for s in samples] == list(range(SAMPLES_PER_KIND))
    assert (await spool.feedback(admission.campaign_id)).bounced == SAMPLES_PER_KIND + 3


async def test_a_forward_is_leased_to_one_owner_and_settled_by_it_alone(spool):
    outcome = await spool.record_feedback(
        "sendgrid", [event(1, None, "m", "a@x.test")], NOW, body=b"[1]"
    )
    fid = outcome.forward_id
    [claimed] = await spool.claim_forwards("w1", NOW, 10, 60)
    assert (claimed.id, claimed.body) == (fid, b"[1]")
    assert await spool.claim_forwards("w2", NOW + 59, 10, 60) == []  # leased
    assert await spool.next_forward_due() == NOW + 60
    assert not await spool.settle_forward("w2", fid, ForwardState.DELIVERED, NOW)
    later = NOW + 30
    assert await spool.settle_forward(
        "w1", fid, ForwardState.PENDING, NOW, next_attempt_at=later, error="HTTP 500"
    )
    assert await spool.claim_forwards("w2", later - 1, 10, 60) == []  # not due yet
    [again] = await spool.claim_forwards("w2", later, 10, 60)
    assert (again.attempts, again.last_error) == (1, "HTTP 500")
    assert not await spool.settle_forward("w1", fid, ForwardState.DELIVERED, later)  # lease gone
    assert await spool.settle_forward("w2", fid, ForwardState.DELIVERED, later)
    assert await spool.claim_forwards("w3", later + 3600, 10, 60) == []
    assert (await spool.forward(fid)).state is ForwardState.DELIVERED
    assert await spool.next_forward_due() is None


async def test_a_lease_that_ran_out_is_taken_over(spool):
    await spool.record_feedback("sendgrid", [event(1, None, "m", "a@x.test")], NOW, body=b"[1]")
    assert len(await spool.claim_forwards("dead-replica", NOW, 10, 60)) == 1
    [taken] = await spool.claim_forwards("w2", NOW + 60, 10, 60)
    assert await spool.settle_forward("w2", taken.id, ForwardState.DELIVERED, NOW + 61)


async def test_a_dead_letter_is_listed_counted_and_retried_once(spool):
    outcome = await spool.record_feedback(
        "sendgrid", [event(1, None, "m", "a@x.test")], NOW, body=b"[1]"
    )
    await spool.record_feedback("sendgrid", [event(2, None, "m", "a@x.test")], NOW, body=b"[2]")
    fid = outcome.forward_id
    [first, _] = await spool.claim_forwards("w1", NOW, 10, 60)
    await spool.settle_forward("w1", fid, ForwardState.DEAD, NOW + 1, error="HTTP 503")
    snapshot = await spool.gauges()
    assert (snapshot.forwards_pending, snapshot.forwards_dead) == (1, 1)
    assert snapshot.oldest_forward_queued_at == NOW
    [dead] = await spool.forwards(state=ForwardState.DEAD)
    assert (dead.id, dead.last_error, dead.attempts) == (fid, "HTTP 503", 1)
    assert [f.id for f in await spool.forwards(limit=1, before=fid + 1)] == [fid]
    retried = await spool.retry_forward(fid, NOW + 100)
    assert (retried.state, retried.queued_at, retried.next_attempt_at) == (
        ForwardState.PENDING,
        NOW + 100,
        NOW + 100,
    )
    assert await spool.retry_forward(fid, NOW + 101) is None  # not dead any more
    assert await spool.retry_forward(999_999, NOW) is None
    assert first.id == fid


async def test_pruning_forgets_old_event_ids_and_delivered_batches(spool):
    outcome = await spool.record_feedback(
        "sendgrid", [event(1, None, "m", "a@x.test")], NOW, body=b"[1]"
    )
    [claimed] = await spool.claim_forwards("w1", NOW, 10, 60)
    await spool.settle_forward("w1", claimed.id, ForwardState.DELIVERED, NOW)
    assert await spool.prune_feedback(NOW + 1) == 2
    assert await spool.forward(outcome.forward_id) is None
    again = await spool.record_feedback(
        "sendgrid", [event(1, None, "m", "a@x.test")], NOW + 2, body=b"[1]"
    )
    assert again.new == 1  # long forgotten: taken as new
