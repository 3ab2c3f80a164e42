"""Records the spool tests build: submissions, deciders made of one function, the clock.

`accept` admits a submission the way the admission stage does: its steps, in one spool
transaction.
"""

from __future__ import annotations

from gateway.admission import steps
from gateway.admission.resolve import comparable
from gateway.mail.addresses import address_hash
from gateway.model import (
    Admission,
    Campaign,
    CampaignRef,
    ContentReport,
    Decider,
    Declaration,
    Facts,
    Needs,
    Signoff,
    Submission,
    Verdict,
    new_id,
)
from gateway.review.signoffs import required, sign_off

NOW = 1_800_000_000.0


class Decide:
    """A decider made of one function, needing no lookups."""

    def __init__(self, fn, needs: Needs | None = None) -> None:
        self.fn = fn
        self._needs = needs or Needs()

    def needs(self, campaign):
        return self._needs

    def decide(self, campaign, sub, facts):
        return self.fn(campaign, sub, facts)


WINDOW = 3600.0


class PassAll:
    """Decide without rules: every message may be relayed."""

    def analyse(self, submission: Submission) -> ContentReport:
        """Look at nothing."""
        return ContentReport()

    def recall(self, submission: Submission) -> ContentReport:
        """Look at nothing, at once."""
        return ContentReport()

    def needs(self, campaign: Campaign) -> Needs:
        """Need nothing."""
        return Needs()

    def decide(self, campaign: Campaign, submission: Submission, facts: Facts) -> Verdict:
        """Pass every message."""
        return Verdict()


pass_all = PassAll()


def submission(
    rcpts: list[str],
    *,
    key: str = "spring",
    client: str = "127.0.0.0/8",
    implicit: bool = False,
    at: float = NOW,
    size: int | None = None,
) -> Submission:
    ref = CampaignRef(
        client=client,
        key=key,
        implicit=implicit,
        sender="news@shop.test",
        subject="Spring",
        declaration=Declaration(size=size),
    )
    boxes = tuple(comparable(r) for r in rcpts)
    return Submission(
        message_id=new_id(at),
        client=client,
        mail_from="news@shop.test",
        rcpt_tos=tuple(rcpts),
        content=b"Subject: Spring\r\n\r\nHi\r\n",
        campaign=ref,
        received_at=at,
        mailboxes=boxes,
        hashes=tuple(address_hash(b) for b in boxes),
    )


async def accept(spool, sub: Submission, decider: Decider, window: float = WINDOW) -> Admission:
    """Admit one submission in one spool transaction, as the admission stage does."""
    return await spool.transact(lambda tx: steps.admit(tx, sub, decider, window))


async def sign(spool, signoff: Signoff) -> Campaign | None:
    """Register a sign-off in one spool transaction, as the API does."""
    return await spool.transact(lambda tx: sign_off(tx, signoff))


async def signoff_status(spool, campaign_id: str) -> tuple[list[Signoff], frozenset[str]]:
    """Return a campaign's sign-offs and the identities its mail needed them from."""
    return await spool.read(
        lambda tx: (tx.signoffs(campaign_id), required(tx.tallies(campaign_id)))
    )
