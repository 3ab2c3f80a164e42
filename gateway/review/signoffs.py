"""Sign-offs: a protected identity approving a campaign that sends or signs as them.

A protected identity is a founder, an executive, or the sales reps (DESIGN.md §3).

The signature rule raises findings of kind `SIGNOFF_KIND` naming the identities whose
sign-off is missing, and counts each such identity in the campaign's tallies under
`signoff_tally(identity)`, so the spool knows every identity a campaign ever needed, not
only those of its latest message. Pure decisions, and `sign_off`, the step a sign-off
makes inside one spool transaction (written against the transaction port).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from gateway.errors import Conflict
from gateway.model import Campaign, Signoff
from gateway.spool.port import Tx
from gateway.states import CampaignState

SIGNOFF_KIND = "signoff_required"
_TALLY_PREFIX = "signoff:"


def signoff_tally(identity: str) -> str:
    """Name of the campaign tally that counts messages needing `identity`'s sign-off."""
    return _TALLY_PREFIX + identity


def identity_of_tally(name: str) -> str | None:
    """Return the identity a tally name counts, or None for other tallies."""
    return name.removeprefix(_TALLY_PREFIX) if name.startswith(_TALLY_PREFIX) else None


def cleared(campaign: Campaign, signed: Iterable[str], required: Iterable[str]) -> bool:
    """Tell whether sign-offs alone now clear a held campaign.

    True when every identity the campaign needed has signed off and nothing else holds
    it: every other enforced finding was acknowledged by an earlier release. A manual
    hold, a failed check or any other rule's finding keeps it held for an operator.
    """
    signed_set = frozenset(signed)
    needed = frozenset(required)
    if not needed or not needed <= signed_set:
        return False
    for finding in campaign.findings:
        if finding.mode != "enforce" or finding.signature in campaign.acknowledged:
            continue
        if finding.kind != SIGNOFF_KIND:
            return False
    return True


def required(tallies: Mapping[str, int]) -> frozenset[str]:
    """Identities whose missing sign-off the signature rule found in a campaign's mail."""
    return frozenset(
        identity
        for name, value in tallies.items()
        if value > 0 and (identity := identity_of_tally(name)) is not None
    )


def sign_off(tx: Tx, signoff: Signoff) -> Campaign | None:
    """Register a sign-off; release the campaign when it was the last thing holding it.

    Raises `Conflict` for a rejected campaign. The release is the spool's usual
    compare-and-set, in the same transaction, so it never queues a recipient twice.
    """
    campaign = tx.campaign(signoff.campaign_id)
    if campaign is None:
        return None
    if campaign.state is CampaignState.REJECTED:
        raise Conflict(f"campaign {campaign.id} is rejected; a sign-off cannot bring it back")
    tx.add_signoff(signoff)
    tx.event(
        campaign.id,
        signoff.at,
        "signed_off",
        signoff.actor,
        identity=signoff.identity,
        on_behalf=signoff.on_behalf,
        reason=signoff.reason,
    )
    if campaign.state is CampaignState.HELD and cleared(
        campaign, tx.signed(campaign.id), required(tx.tallies(campaign.id))
    ):
        return tx.release(campaign.id, f"signoff:{signoff.identity}", signoff.at)
    return tx.campaign(campaign.id)
