"""The canary watcher: advances every canary release under way, one step at a time.

Every gateway runs one; each step is a spool transaction that locks the canary's row
(`gateway.review.canary.advance`), so where replicas share a database each step is taken
once. The feedback judge comes from the policies in force when the step runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
from collections.abc import Callable

import structlog

from gateway.errors import SpoolError
from gateway.model import AuditEntry, Canary
from gateway.review import canary
from gateway.spool.base import Spool
from gateway.states import CanaryState

log = structlog.get_logger(__name__)

# How each step is logged: (event, level).
_LOGGED = {
    CanaryState.OBSERVING: ("canary_sent", "info"),
    CanaryState.COMPLETED: ("canary_completed", "info"),
    CanaryState.FAILED: ("canary_failed", "warning"),
    CanaryState.ENDED: ("canary_ended", "info"),
}


class CanaryWatcher:
    """Polls the canaries under way and takes each one's next step when it is due."""

    def __init__(
        self,
        spool: Spool,
        judge: Callable[[], canary.Judge],
        *,
        poll_interval: float,
        clock: Callable[[], float],
        on_release: Callable[[], None],
    ) -> None:
        self._spool = spool
        self._judge = judge
        self._poll = poll_interval
        self._clock = clock
        self._on_release = on_release

    async def run(self, stop: asyncio.Event) -> None:
        """Watch until `stop` is set; a spool outage is waited out, not fatal."""
        while not stop.is_set():
            try:
                await self.tick()
            except SpoolError as exc:
                log.warning("canary_watch_failed", error=str(exc))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self._poll)

    async def tick(self) -> list[Canary]:
        """Take every due step once; return the canaries that changed."""
        changed = []
        judge = self._judge()  # the policies in force now
        for campaign_id in await self._spool.active_canaries():
            after = await self._spool.transact(
                functools.partial(
                    canary.advance,
                    campaign_id=campaign_id,
                    now=self._clock(),
                    judge=judge,
                    audit=audit,
                )
            )
            if after is None:  # not due yet
                continue
            changed.append(after)
            event, level = _LOGGED[after.state]
            getattr(log, level)(
                event,
                campaign=campaign_id,
                recipients=after.recipients,
                observe=after.observe,
                started_by=after.actor,
            )
            if after.state is CanaryState.COMPLETED:
                self._on_release()
        return changed


def audit(done: Canary) -> AuditEntry:
    """Describe the rest's automatic release for the audit log (stored with it)."""
    return AuditEntry(
        at=done.decided_at or 0.0,
        actor=canary.ACTOR,
        action="release campaign",  # as an operator's release (gateway.ops.api)
        target=done.campaign_id,
        reason=f"canary of {done.recipients} stayed quiet for {done.observe:g} s",
        outcome="ok",
        details={"canary": done.recipients, "started_by": done.actor, "changed": True},
    )
