"""`sendbrake policies replay`: what a candidate policy set would have done with past mail.

Before tightening a rule, an operator wants to know which of last week's campaigns it
would have held. The replay reads the messages whose bodies the spool still retains
(`spool.retention`), oldest first, and admits each again into a scratch spool (a
temporary SQLite file) with the candidate policies and the real admission code: the
same campaign resolution and implicit windows, the campaigns' recorded declarations, the
live segments (copied), the counters and look-ups, at the moment each message arrived.
Nothing is sent and the real spool is only read. It then compares, per rule of either
policy set, the campaigns with a finding now and with the candidate, and the campaigns
held.

What it cannot replay: sign-offs and releases that came later (a finding a release
acknowledged still counts), and findings no rule file asks for (conflicting
declarations, whose headers the spool strips).
"""

from __future__ import annotations

import tempfile
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

from prometheus_client import CollectorRegistry

from gateway.admission.admitter import Admitter
from gateway.metrics import Metrics
from gateway.model import Campaign, Inbound, Manifest, StoredMessage
from gateway.policy.engine import Engine
from gateway.policy.loader import PolicySet
from gateway.policy.registry import Registry
from gateway.settings import Settings
from gateway.spool import SqliteSpool
from gateway.spool.base import Spool

Progress = Callable[[int], None]  # messages replayed since the last call


@dataclass
class Replay:
    """What the candidate found, next to what the spool recorded, by campaign ID."""

    messages: int = 0
    campaigns: set[str] = field(default_factory=set)
    now: dict[str, set[str]] = field(default_factory=lambda: defaultdict(set))  # rule -> ids
    candidate: dict[str, set[str]] = field(default_factory=lambda: defaultdict(set))
    held_now: set[str] = field(default_factory=set)
    held_candidate: set[str] = field(default_factory=set)
    modes: dict[str, str] = field(default_factory=dict)  # rule -> the candidate's mode


async def replay(
    spool: Spool,
    policies: PolicySet,
    registry: Registry,
    settings: Settings,
    *,
    since: float,
    progress: Progress = lambda _: None,
) -> Replay:
    """Admit the retained mail received since `since` again with `policies`; compare."""
    with tempfile.TemporaryDirectory(prefix="sendbrake-replay-") as folder:
        scratch = SqliteSpool(Path(folder) / "replay.db", durable=False)
        await scratch.open()
        try:
            await _copy_segments(spool, scratch)
            replayer = _Replayer(spool, scratch, policies, registry, settings, since)
            try:
                after = ""
                while page := await spool.retained(since, after):
                    for message, rcpts in page:
                        await replayer.admit(message, rcpts)
                    after = page[-1][0].id
                    progress(len(page))
            finally:
                await replayer.close()
            return replayer.compared()
        finally:
            await scratch.close()


async def _copy_segments(spool: Spool, scratch: Spool) -> None:
    """Load every live segment of the spool into the scratch spool, as it is now."""
    for segment in await spool.segments():
        version = await scratch.segment_begin(segment.name, time.time())
        after = None
        while page := await spool.segment_page(segment.version, after):
            await scratch.segment_add(version, page)
            after = page[-1]
        await scratch.segment_publish(replace(segment, version=version))


class _Replayer:
    """Admits past messages again into the scratch spool, on a clock set to their arrival."""

    def __init__(  # noqa: PLR0917 - the replay's parts
        self,
        spool: Spool,
        scratch: Spool,
        policies: PolicySet,
        registry: Registry,
        settings: Settings,
        since: float,
    ) -> None:
        self._spool = spool
        self._scratch = scratch
        self._arrived = since
        self._campaigns: dict[str, Campaign | None] = {}
        self._declared: set[tuple[str, str]] = set()
        self.result = Replay(modes={r.id: r.mode for r in policies.rules})
        engine = Engine(policies, registry=registry, clock=self._clock)
        self._admitter = Admitter(
            scratch,
            settings.campaigns,
            decider=engine,
            metrics=Metrics.create(CollectorRegistry()),
            hostname="replay",
            casefold_local=settings.segments.casefold_local_part,
            clock=self._clock,
        )

    def _clock(self) -> float:
        return self._arrived

    async def admit(self, message: StoredMessage, rcpts: tuple[str, ...]) -> None:
        """Admit one past message again, as of the moment it arrived."""
        campaign = await self._campaign(message.campaign_id)
        if campaign is None or not rcpts:
            return
        if (campaign.client, campaign.key) not in self._declared:
            self._declared.add((campaign.client, campaign.key))
            # The declaration headers were stripped on the way in; the campaign kept them.
            manifest = Manifest(campaign.client, campaign.key, campaign.declared, "replay", 0.0)
            await self._scratch.put_manifest(manifest)
        self._arrived = message.received_at
        inbound = Inbound(
            message.ingress, message.client, message.mail_from, rcpts, message.content
        )
        admission = await self._admitter.admit(inbound)
        result = self.result
        result.messages += 1
        result.campaigns.add(campaign.id)
        for rule in {f.rule for f in admission.findings}:
            result.candidate[rule].add(campaign.id)
        if admission.held:
            result.held_candidate.add(campaign.id)

    async def _campaign(self, campaign_id: str) -> Campaign | None:
        if campaign_id not in self._campaigns:
            self._campaigns[campaign_id] = await self._spool.campaign(campaign_id)
        return self._campaigns[campaign_id]

    def compared(self) -> Replay:
        """Add what the spool recorded for the replayed campaigns, and return the result."""
        result = self.result
        for campaign in filter(None, self._campaigns.values()):
            if campaign.id not in result.campaigns:
                continue
            for finding in campaign.findings:
                result.now[finding.rule].add(campaign.id)
            if campaign.held_at is not None:
                result.held_now.add(campaign.id)
        return result

    async def close(self) -> None:
        """Stop the content analysis threads."""
        await self._admitter.close()
