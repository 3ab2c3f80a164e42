"""Random interleavings of every spool operation against the queue's invariants.

Hypothesis drives accept / hold / release / reject / claim / settle / give-back and the
clock (lease expiry) in any order. After every step: each acknowledged recipient is in
exactly one row, each campaign's counters equal its rows, every state change seen is in
the model's tables, and a recipient is never leased to two workers at once (so never
relayed twice: the only duplicates a crash can cause come from a lease that ran out).
"""

from __future__ import annotations

import asyncio
import shutil
import tempfile
from collections import Counter
from pathlib import Path

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from gateway.errors import CampaignRejected, Conflict
from gateway.model import Finding, ReleaseScope, Settlement, Verdict
from gateway.spool import SqliteSpool
from gateway.states import (
    CAMPAIGN_TRANSITIONS,
    RECIPIENT_TRANSITIONS,
    CampaignState,
    RecipientState,
)
from tests.spool.records import NOW, WINDOW, Decide, accept, submission

LEASE = 60.0
OWNERS = ("w1", "w2")
KEYS = ("spring", "autumn")
MANUAL = Finding("manual", "manual_hold", "enforce", "held by hand")
_TRIP = Finding("r", "k", "enforce", "tripped")
holding = Decide(lambda campaign, sub, facts: Verdict(hold=True, findings=(_TRIP,)))
passing = Decide(lambda campaign, sub, facts: Verdict())

# Counter -> the recipient states it counts (a leased recipient counts as queued).
COUNTED = {
    "queued": {RecipientState.QUEUED, RecipientState.SENDING},
    "held": {RecipientState.HELD},
    "deferred": {RecipientState.DEFERRED},
    "relayed": {RecipientState.RELAYED},
    "failed": {RecipientState.FAILED},
    "discarded": {RecipientState.DISCARDED},
    "suppressed": {RecipientState.SUPPRESSED},
}


class SpoolInterleavings(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.loop = asyncio.new_event_loop()
        self.folder = Path(tempfile.mkdtemp())
        self.spool = SqliteSpool(self.folder / "spool.db")
        self.run(self.spool.open())
        self.now = NOW
        self.acknowledged = 0
        self.campaigns: dict[str, str] = {}  # key -> campaign id
        self.states: dict[str, object] = {}  # campaign id -> last state seen
        self.rows: dict[int, RecipientState] = {}  # recipient id -> last state seen
        self.leases: dict[int, tuple[str, float]] = {}  # recipient -> (owner, lease ends)
        self.inflight: dict[str, list[int]] = {owner: [] for owner in OWNERS}
        self.relayed: Counter[int] = Counter()
        self.partly_released: set[str] = set()

    def run(self, coro):
        return self.loop.run_until_complete(coro)

    def teardown(self) -> None:
        self.run(self.spool.close())
        self.loop.close()
        shutil.rmtree(self.folder, ignore_errors=True)

    @rule(key=st.sampled_from(KEYS), count=st.integers(1, 3), trip=st.booleans())
    def accept(self, key, count, trip):
        rcpts = [f"u{self.acknowledged + i}@x.test" for i in range(count)]
        try:
            admission = self.run(
                accept(
                    self.spool,
                    submission(rcpts, key=key, at=self.now),
                    holding if trip else passing,
                    WINDOW,
                )
            )
        except CampaignRejected:
            assert self.states.get(self.campaigns.get(key, "")) == "rejected"
            return
        self.campaigns[key] = admission.campaign_id
        self.acknowledged += count

    @precondition(lambda self: self.campaigns)
    @rule(key=st.sampled_from(KEYS))
    def hold(self, key):
        if key in self.campaigns:
            try:
                self.run(self.spool.hold(self.campaigns[key], MANUAL, self.now))
            except Conflict:
                assert self.states[self.campaigns[key]] == "rejected"

    @precondition(lambda self: self.campaigns)
    @rule(key=st.sampled_from(KEYS), some=st.one_of(st.none(), st.integers(1, 3)))
    def release(self, key, some):
        if key in self.campaigns:
            campaign_id = self.campaigns[key]
            self.run(self.spool.release(campaign_id, "alice", self.now, ReleaseScope(some)))
            if some is not None:  # what it queued goes out while the campaign stays held
                self.partly_released.add(campaign_id)

    @precondition(lambda self: self.campaigns)
    @rule(key=st.sampled_from(KEYS))
    def reject(self, key):
        if key in self.campaigns:
            self.run(self.spool.reject(self.campaigns[key], "alice", self.now))

    @rule(owner=st.sampled_from(OWNERS))
    def claim(self, owner):
        for delivery in self.run(self.spool.claim(owner, self.now, 10, LEASE)):
            for rid, _ in delivery.recipients:
                holder = self.leases.get(rid)
                assert holder is None or holder[1] <= self.now, f"{rid} leased twice at once"
                self.leases[rid] = (owner, self.now + LEASE)
                self.inflight[owner].append(rid)

    @rule(
        owner=st.sampled_from(OWNERS),
        outcome=st.sampled_from(
            [RecipientState.RELAYED, RecipientState.DEFERRED, RecipientState.FAILED]
        ),
    )
    def settle(self, owner, outcome):
        if not self.inflight[owner]:
            return
        rid = self.inflight[owner].pop(0)
        retry = self.now + 10 if outcome is RecipientState.DEFERRED else 0.0
        changed = self.run(
            self.spool.settle(owner, [Settlement(rid, outcome, "reply", retry)], self.now)
        )
        if changed:
            self.leases.pop(rid, None)
            self.relayed[rid] += outcome is RecipientState.RELAYED

    @rule(owner=st.sampled_from(OWNERS))
    def give_back(self, owner):
        self.run(self.spool.release_leases(owner, self.now))
        for rid in self.inflight[owner]:
            if self.leases.get(rid, ("",))[0] == owner:
                del self.leases[rid]
        self.inflight[owner] = []

    @rule(seconds=st.sampled_from([1.0, 11.0, LEASE]))
    def time_passes(self, seconds):
        self.now += seconds

    @invariant()
    def rows_and_counters_agree(self):
        rows = self.run(self.spool.recipients(limit=10_000))
        assert len(rows) == self.acknowledged  # every acknowledged recipient, once
        for row in rows:
            before = self.rows.get(row.id)
            assert before in (None, row.state) or row.state in RECIPIENT_TRANSITIONS[before]
            self.rows[row.id] = row.state
        for campaign_id in self.campaigns.values():
            campaign = self.run(self.spool.campaign(campaign_id))
            mine = [r.state for r in rows if r.campaign_id == campaign_id]
            assert campaign.counters.received == len(mine)
            for counter, states in COUNTED.items():
                assert getattr(campaign.counters, counter) == sum(s in states for s in mine), (
                    counter
                )
            waiting = {s for s in mine if s in {RecipientState.QUEUED, RecipientState.DEFERRED}}
            if campaign.state is CampaignState.HELD and campaign_id not in self.partly_released:
                assert not waiting
            if campaign.state is CampaignState.REJECTED:
                assert not waiting
                assert RecipientState.HELD not in mine
            before = self.states.get(campaign_id)
            assert (
                before in (None, campaign.state) or campaign.state in CAMPAIGN_TRANSITIONS[before]
            )
            self.states[campaign_id] = campaign.state
        assert all(n <= 1 for n in self.relayed.values())  # never relayed twice


TestSpoolInterleavings = SpoolInterleavings.TestCase
TestSpoolInterleavings.settings = settings(max_examples=120, stateful_step_count=30, deadline=None)
