"""Sign-offs: a protected identity approving a campaign that sends or signs as them.

A protected identity is a founder, an executive, or the sales reps (DESIGN.md §3).

The signature rule raises findings of kind `SIGNOFF_KIND` naming the identities whose
sign-off is missing, and counts each such identity in the campaign's tallies under
`signoff_tally(identity)`, so the spool knows every identity a campaign ever needed, not
only those of its latest message. Pure data and one pure decision.
"""

from __future__ import annotations

from collections.abc import Iterable

from gateway.model import Campaign

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
