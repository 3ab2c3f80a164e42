"""Retry planning (pure) and connection reuse towards the upstream."""

from __future__ import annotations

import pytest

from gateway.model import Delivery, Outcome, RecipientResult
from gateway.relay.upstream import classify
from gateway.relay.worker import backoff_delay, plan_settlements
from gateway.settings import RelaySettings
from gateway.states import RecipientState
from tests.harness import run_gateway
from tests.helpers import eventually
from tests.mail import message

SETTINGS = RelaySettings(retry_base=60, retry_max_delay=3600, retry_jitter=0.2, max_age=86400)


@pytest.mark.parametrize(
    ("code", "outcome"),
    [
        (250, Outcome.DELIVERED),
        (251, Outcome.DELIVERED),
        (421, Outcome.TRANSIENT),
        (452, Outcome.TRANSIENT),
        (550, Outcome.PERMANENT),
        (554, Outcome.PERMANENT),
    ],
)
def test_reply_codes_are_classified(code, outcome):
    assert classify(code) is outcome


def test_backoff_doubles_per_attempt_up_to_the_cap_with_bounded_jitter():
    assert [backoff_delay(n, SETTINGS, 0.0) for n in (1, 2, 3, 4)] == [60, 120, 240, 480]
    assert backoff_delay(20, SETTINGS, 0.0) == 3600
    assert backoff_delay(1, SETTINGS, 0.999) == pytest.approx(60 * 1.2, rel=1e-3)


def delivery(attempts: int = 0, received_at: float = 1000.0) -> Delivery:
    return Delivery(
        message_id="m",
        campaign_id="c",
        mail_from="s@x.test",
        content=b"",
        recipients=((1, "a@x.test"), (2, "b@x.test"), (3, "c@x.test")),
        attempts=attempts,
        queued_at=received_at,
    )


def test_each_recipient_is_settled_by_its_own_outcome():
    results = [
        RecipientResult("a@x.test", Outcome.DELIVERED, "250 ok"),
        RecipientResult("b@x.test", Outcome.TRANSIENT, "451 later"),
        RecipientResult("c@x.test", Outcome.PERMANENT, "550 no"),
    ]
    plan = plan_settlements(delivery(attempts=1), results, 2000.0, SETTINGS, lambda: 0.0)
    assert [(s.recipient_id, s.state) for s in plan] == [
        (1, RecipientState.RELAYED),
        (2, RecipientState.DEFERRED),
        (3, RecipientState.FAILED),
    ]
    assert plan[1].next_attempt_at == 2000.0 + 120  # second attempt failed: wait 2 × base


def test_a_transient_failure_past_the_maximum_age_fails():
    results = [
        RecipientResult(a, Outcome.TRANSIENT, "451 later")
        for a in ("a@x.test", "b@x.test", "c@x.test")
    ]
    plan = plan_settlements(delivery(received_at=0.0), results, 86400.0, SETTINGS, lambda: 0.0)
    assert {s.state for s in plan} == {RecipientState.FAILED}
    assert "gave up" in plan[0].reply


async def test_consecutive_messages_reuse_one_upstream_connection(settings_for, upstream):
    settings = settings_for(upstream.port, relay={"concurrency": 1})
    async with run_gateway(settings) as gw:
        for i in range(5):
            await gw.send("news@shop.test", [f"u{i}@example.org"], message())
            await eventually(lambda n=i: len(upstream.transactions) == n + 1)
    assert upstream.connections == 1


def test_a_providers_retry_after_defers_at_least_that_long_at_most_max_age():
    def plan(retry_after: float | None) -> float:
        result = RecipientResult("a@x.test", Outcome.TRANSIENT, "429 throttled", retry_after)
        only_a = Delivery("m", "c", "s@x.test", b"", ((1, "a@x.test"),), 0, 1000.0)
        [settlement] = plan_settlements(only_a, [result], 2000.0, SETTINGS, lambda: 0.0)
        assert settlement.state is RecipientState.DEFERRED
        return settlement.next_attempt_at - 2000.0

    assert plan(None) == 60  # the backoff
    assert plan(5.0) == 60  # a shorter Retry-After does not hurry the backoff
    assert plan(600.0) == 600
    assert plan(10.0**9) == SETTINGS.max_age  # past it the recipient would fail anyway
