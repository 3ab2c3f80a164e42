"""Duplicate-content rule: the same mail sent again to the same people under another key.

Owns the `duplicate_content` kind: the re-run job that got a new campaign ID sends
yesterday's campaign a second time, and no rule about one campaign sees it. Each message's
content fingerprint (`Document.fingerprint`: subject and body, normalised, links left out)
is counted per recipient for `window`; a recipient who got this very content before, and
not as a repeat within this campaign (that is `duplicate_recipients`' finding), overlaps.
The check holds a campaign once its overlap passes `max_overlap`; the same content to
other people (tomorrow's send to the next list) passes.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Literal

from pydantic import Field

from gateway.mail.content import Document
from gateway.model import ContentHit, Needs
from gateway.policy.rules.base import Context, Observation, Rule, Shared
from gateway.policy.rules.segmentation import CountOrPercent, exceeds
from gateway.settings import Duration

TALLY = "content-overlap:"  # + rule id: recipients who got this content before


class DuplicateContent(Rule):
    """The same content reached the same recipients under another campaign within a window."""

    kind: Literal["duplicate_content"]
    window: Duration = Field(24 * 3600.0, description="How far back a send counts.")
    max_overlap: CountOrPercent = 10  # recipients who may get it again (or a share, '1%')

    def needs(self, shared: Shared) -> Needs:  # noqa: D102, ARG002
        return Needs(content_sends=((self.id, self.window),), tallies=frozenset({tally(self)}))


def scan(rule: DuplicateContent, doc: Document, shared: Shared) -> list[ContentHit]:  # noqa: ARG001
    """Find nothing: having a scanner makes the engine decode each message.

    The content report then carries the fingerprint this rule counts, and a message that
    could not be read holds as unchecked, as for every content rule.
    """
    return []


def tally(rule: DuplicateContent) -> str:
    """Return the name of the campaign tally of recipients the rule found overlapping."""
    return TALLY + rule.id


def overlapping(rule: DuplicateContent, ctx: Context) -> frozenset[int]:
    """Indexes of this message's recipients who got the same content before, elsewhere."""
    sends = ctx.facts.content_sends.get(rule.id, ())
    repeats = set(ctx.facts.duplicates)
    return frozenset(i for i, count in enumerate(sends) if count and i not in repeats)


def count(rule: DuplicateContent, ctx: Context) -> Mapping[str, int]:
    """Keep the campaign's running overlap, whether or not it passes the threshold."""
    found = len(overlapping(rule, ctx))
    return {tally(rule): found} if found else {}


def duplicate_content(rule: DuplicateContent, ctx: Context) -> list[Observation]:
    """Hold once the campaign's overlap with earlier sends of its content passes the limit."""
    found = overlapping(rule, ctx)
    if not found:
        return []
    overlap = ctx.facts.tallies.get(tally(rule), 0) + len(found)
    received = ctx.campaign.counters.received
    allowed = rule.max_overlap
    if not exceeds(overlap, received, allowed):
        return []
    hours = rule.window / 3600
    return [
        Observation(
            kind="duplicate_content",
            message=(
                f"{overlap} of this campaign's {received} recipients got the same content"
                f" (subject and body) in the last {hours:g} h under another campaign"
                f" (allowed: {allowed})"
            ),
            evidence={
                "overlap": overlap,
                "received": received,
                "allowed": allowed,
                "window_hours": hours,
                "fingerprint": ctx.submission.report.fingerprint,
                "sample": ctx.sample(found),
            },
            recipients=found,
        )
    ]
