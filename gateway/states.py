"""States of campaigns and recipients, and the tables of the changes between them.

Like Postfix, the queues are the states. Every state change the spool makes goes through
`gateway.spool.transitions`, which refuses any change these tables do not list; a test
fails when spool code changes a state without it. Pure data.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping


class CampaignState(enum.StrEnum):
    """Where a campaign stands in review (DESIGN.md §2)."""

    OPEN = "open"
    HELD = "held"
    RELEASED = "released"
    REJECTED = "rejected"


# Every campaign state change the product makes; anything else is a bug (or a lost race).
CAMPAIGN_TRANSITIONS: Mapping[CampaignState, frozenset[CampaignState]] = {
    CampaignState.OPEN: frozenset({CampaignState.HELD, CampaignState.REJECTED}),
    CampaignState.HELD: frozenset({CampaignState.RELEASED, CampaignState.REJECTED}),
    CampaignState.RELEASED: frozenset({CampaignState.HELD, CampaignState.REJECTED}),
    CampaignState.REJECTED: frozenset(),
}


class CanaryState(enum.StrEnum):
    """Where a canary release stands (docs/feedback.md)."""

    SENDING = "sending"  # the slice is being relayed
    OBSERVING = "observing"  # the slice is out; feedback is awaited for `observe`
    COMPLETED = "completed"  # the feedback stayed quiet: the rest was released
    FAILED = "failed"  # the breaker found the slice's feedback bad: the rest stays held
    ENDED = "ended"  # an operator released or rejected the campaign meanwhile


CANARY_ACTIVE = (CanaryState.SENDING, CanaryState.OBSERVING)


class RecipientState(enum.StrEnum):
    """The queue a recipient sits in; like Postfix, the queues are the states."""

    QUEUED = "queued"
    SENDING = "sending"  # claimed by a relay worker under a lease
    DEFERRED = "deferred"
    HELD = "held"
    RELAYED = "relayed"
    FAILED = "failed"
    DISCARDED = "discarded"
    SUPPRESSED = "suppressed"


# Every recipient state change the product makes. Rows are born QUEUED, HELD or SUPPRESSED.
RECIPIENT_TRANSITIONS: Mapping[RecipientState, frozenset[RecipientState]] = {
    RecipientState.QUEUED: frozenset(
        {RecipientState.SENDING, RecipientState.HELD, RecipientState.DISCARDED}
    ),
    RecipientState.DEFERRED: frozenset(
        {RecipientState.SENDING, RecipientState.HELD, RecipientState.DISCARDED}
    ),
    RecipientState.SENDING: frozenset(
        {
            RecipientState.RELAYED,
            RecipientState.DEFERRED,
            RecipientState.FAILED,
            # The lease is given back (shutdown, crash recovery, or it expired): the row
            # waits again as its campaign now says, queued, held or discarded.
            RecipientState.QUEUED,
            RecipientState.HELD,
            RecipientState.DISCARDED,
        }
    ),
    RecipientState.HELD: frozenset({RecipientState.QUEUED, RecipientState.DISCARDED}),
    RecipientState.RELAYED: frozenset(),
    RecipientState.FAILED: frozenset(),
    RecipientState.DISCARDED: frozenset(),
    RecipientState.SUPPRESSED: frozenset(),
}
INITIAL_RECIPIENT_STATES = frozenset(
    {RecipientState.QUEUED, RecipientState.HELD, RecipientState.SUPPRESSED}
)

# States a relay worker may claim from.
CLAIMABLE = (RecipientState.QUEUED, RecipientState.DEFERRED)
# States of a recipient whose message is still needed: it may yet go out.
WAITING = (*CLAIMABLE, RecipientState.SENDING, RecipientState.HELD)
