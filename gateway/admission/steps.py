"""One message's admission inside the spool transaction, as named steps.

join the campaign → find duplicates → gather the facts the rules need → decide → write.
Written against the transaction port (`gateway.spool.port.Tx`), so every backend runs the
same campaign semantics: the spool stores and looks up, this module decides what is
stored. Everything expensive (parsing, content analysis) happened before, off the event
loop; what runs here is counter and index look-ups, and the decider's quick checks.
"""

from __future__ import annotations

from typing import Any

from gateway.errors import CampaignRejected
from gateway.model import (
    Admission,
    Campaign,
    Decider,
    Declaration,
    Facts,
    Needs,
    Submission,
    Verdict,
)
from gateway.spool.port import Hold, Tx
from gateway.states import CampaignState, RecipientState

Conflicts = tuple[tuple[str, Any, Any], ...]  # (field, campaign's value, this message's value)
DECLARED = ("size", "category", "locale")


def admit(tx: Tx, sub: Submission, decider: Decider, window: float) -> Admission:
    """Admit one submission: campaign, counters, facts, decision, message and recipients.

    Raises `CampaignRejected` for mail of a rejected campaign (the transaction stores
    nothing of it). A retry of a transaction stored before (a platform that lost the 250
    to a crash) is answered with the stored message, and nothing is stored or counted.
    """
    earlier = None if sub.resend_key is None else tx.resent(sub.resend_key, sub.resend_since)
    if earlier is not None:
        return resent(tx, *earlier)
    campaign_id, conflicts = join(tx, sub, window)
    duplicates = find_duplicates(tx, campaign_id, sub.mailboxes)
    if duplicates:
        tx.add_duplicates(campaign_id, len(duplicates))
    campaign = tx.campaign(campaign_id)
    if campaign is None:  # written above, in this same transaction
        raise LookupError(f"campaign {campaign_id} vanished inside its own transaction")
    facts = gather(
        tx, campaign, sub, decider.needs(campaign), duplicates=duplicates, conflicts=conflicts
    )
    verdict = decider.decide(campaign, sub, facts)
    return write(tx, campaign, sub, verdict)


def resent(tx: Tx, message_id: str, campaign_id: str) -> Admission:
    """Answer a retry with the message stored before, as it stands now."""
    campaign = tx.campaign(campaign_id)
    held = campaign is not None and campaign.state is CampaignState.HELD
    return Admission(message_id, campaign_id, held, resent=True)


def join(tx: Tx, sub: Submission, window: float) -> tuple[str, Conflicts]:
    """Find or create the submission's campaign and count its recipients in; return its ID."""
    ref, now, count = sub.campaign, sub.received_at, len(sub.rcpt_tos)
    current = tx.current_campaign(ref.client, ref.key, now - window if ref.implicit else None)
    manifest = tx.manifest(ref.client, ref.key)
    declared = overlay(manifest, ref.declaration)
    if current is None:
        campaign_id = tx.create_campaign(
            ref, declared, received=count, now=now, sample=sub.message_id
        )
        tx.event(campaign_id, now, "created", ref.client, message=sub.message_id)
        return campaign_id, ()
    if current.state is CampaignState.REJECTED:
        raise CampaignRejected(current.id, ref.key)
    # The first declaration seen is kept; a manifest overrides it (DESIGN.md §2).
    tx.count_in(current.id, count, declared, now)
    return current.id, conflicts(current.declared, ref.declaration, manifest)


def overlay(manifest: Declaration | None, headers: Declaration) -> Declaration:
    """Let the manifest's fields win over the headers' where it sets them."""
    if manifest is None:
        return headers
    return Declaration(
        size=manifest.size if manifest.size is not None else headers.size,
        category=manifest.category or headers.category,
        locale=manifest.locale or headers.locale,
    )


def conflicts(kept: Declaration, sent: Declaration, manifest: Declaration | None) -> Conflicts:
    """Return (field, kept, sent) where this message declares otherwise than its campaign."""
    found = []
    for field in DECLARED:
        if manifest is not None and getattr(manifest, field) is not None:
            continue  # the manifest decides this field; what the headers say does not matter
        old, new = getattr(kept, field), getattr(sent, field)
        if old is not None and new is not None and str(old).casefold() != str(new).casefold():
            found.append((field, old, new))
    return tuple(found)


def find_duplicates(tx: Tx, campaign_id: str, mailboxes: tuple[str, ...]) -> tuple[int, ...]:
    """Indexes of recipients already in the campaign or repeated earlier in this message."""
    seen = tx.seen(campaign_id, mailboxes)
    found = []
    for index, box in enumerate(mailboxes):
        if box in seen:
            found.append(index)
        seen.add(box)
    return tuple(found)


def gather(
    tx: Tx,
    campaign: Campaign,
    sub: Submission,
    needs: Needs,
    *,
    duplicates: tuple[int, ...],
    conflicts: Conflicts,
) -> Facts:
    """Look up what the rules asked for, inside the admitting transaction."""
    members: dict[str, frozenset[int]] = {}
    sender_members: dict[str, frozenset[int]] = {}
    sizes: dict[str, int | None] = {}
    for names, hashes, into in (
        (needs.segments, sub.hashes, members),
        (needs.sender_segments, sub.report.sender_hashes, sender_members),
    ):
        for name in names:
            live = tx.segment_members(name, hashes)
            sizes[name] = None if live is None else live[0]
            if live is not None:
                into[name] = frozenset(i for i, h in enumerate(hashes) if h in live[1])
    tallies = dict.fromkeys(needs.tallies, 0)
    if needs.tallies:
        tallies.update(tx.tallies(campaign.id, needs.tallies))
    frequency = {}
    for rule, window in needs.frequency:
        seen = tx.sends_since(rule, sub.received_at - window, sub.hashes)
        frequency[rule] = tuple(seen.get(h, 0) for h in sub.hashes)
    content_sends = {}
    for rule, window in needs.content_sends if sub.report.fingerprint else ():
        key = sends_key(rule, sub.report.fingerprint)
        seen = tx.sends_since(key, sub.received_at - window, sub.hashes)
        content_sends[rule] = tuple(seen.get(h, 0) for h in sub.hashes)
    return Facts(
        duplicates=duplicates,
        conflicts=conflicts,
        members=members,
        segment_sizes=sizes,
        tallies=tallies,
        frequency=frequency,
        content_sends=content_sends,
        signoffs=tx.signed(campaign.id) if needs.signoffs else frozenset(),
        sender_members=sender_members,
    )


def sends_key(rule: str, fingerprint: str) -> str:
    """Return the frequency table's key of one content's sends that `rule` counts."""
    return f"{rule}@{fingerprint}"


def write(tx: Tx, campaign: Campaign, sub: Submission, verdict: Verdict) -> Admission:
    """Store what the verdict says: findings, tallies, a hold, the message and its rows."""
    if verdict.findings:
        tx.merge_findings(campaign, verdict.findings)
    tx.add_tallies(campaign.id, verdict.tallies)
    # A frequency cap counts accepted recipients, not the ones it (or another rule) dropped.
    kept = [h for i, h in enumerate(sub.hashes) if i not in verdict.suppress]
    for rule in verdict.frequency:
        tx.count_sends(rule, kept, sub.received_at)
    for rule in verdict.content_sends if sub.report.fingerprint else ():
        tx.count_sends(sends_key(rule, sub.report.fingerprint), kept, sub.received_at)
    quarantined = None
    if verdict.hold and campaign.state is not CampaignState.HELD:
        why = Hold(
            now=sub.received_at,
            actor="policy",
            rules=tuple(f.rule for f in verdict.findings),
            sample_message_id=sub.message_id,
            incoming=len(sub.rcpt_tos) - len(verdict.suppress),
        )
        quarantined = tx.hold(campaign, why)
    held = verdict.hold or campaign.state is CampaignState.HELD
    waiting = RecipientState.HELD if held else RecipientState.QUEUED
    tx.store(sub, campaign.id, waiting, verdict.suppress)
    tripped = quarantined is not None
    return Admission(sub.message_id, campaign.id, held, tripped, verdict.findings, quarantined or 0)
