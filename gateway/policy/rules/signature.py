"""Signature rule: bulk mail that sends or signs as a protected identity needs its sign-off.

Owns the `signature` kind: its parameters, its scanner and its check. `scan` runs off the
event loop on the decoded message and finds the identities (the policy set's `identities`
section) it sends as (From, Sender, Reply-To addresses, the From display name) or signs as
(closing lines: "— Jack", "Thanks, Biz, Ev & Jack", "Jane Doe, your account manager"). A
first name signs only as a signer of the sender's own closing (`closings` says which that
is); a full name signs in any closing or alone on a line.
`signature` runs inside the spool transaction with the campaign's counters and registered
sign-offs, and holds once the campaign is above its bulk threshold and an identity it
names has not signed off; a release does not clear that, only a sign-off does. Identities
backed by a segment of personal addresses (every sales rep) match when the sender of a
message is a member, so mail where each message is signed by the recipient's own rep is
recognised message by message.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Literal

from pydantic import Field

from gateway.mail.addresses import normalise_address
from gateway.mail.content import Document
from gateway.model import ContentHit, Needs
from gateway.policy.rules.base import (
    SAMPLE,
    Context,
    Identity,
    Observation,
    Rule,
    Shared,
)
from gateway.policy.rules.closings import NAME_LINE, Closing, closings, signers
from gateway.review.signoffs import SIGNOFF_KIND, signoff_tally


class Signature(Rule):
    """Bulk mail that sends or signs as a protected identity waits for its sign-off."""

    kind: Literal["signature"]
    bulk_threshold: int = Field(100, ge=0, description="Recipients a campaign may reach unsigned.")
    identities: list[str] | None = Field(None, description="Identity ids; default: every one.")

    def named(self, shared: Shared) -> list[Identity]:
        """Return the declared identities this rule protects."""
        return [i for i in shared.identities if self.identities is None or i.id in self.identities]

    def needs(self, shared: Shared) -> Needs:  # noqa: D102
        segments = {identity.segment for identity in self.named(shared) if identity.segment}
        return Needs(signoffs=True, sender_segments=frozenset(segments))

    def problems(self, shared: Shared) -> list[tuple[str, str]]:
        """Name identities that are not declared, and a rule with none to protect."""
        declared = {identity.id for identity in shared.identities}
        found = []
        if self.identities is None and not declared:
            found.append(("identities", "no identities are declared; add an identities list"))
        for name in self.identities or ():
            if name not in declared:
                known = ", ".join(sorted(declared)) or "none"
                found.append(("identities", f"unknown identity {name!r} (declared: {known})"))
        return found


def _word(text: str) -> re.Pattern[str]:
    escaped = r"\s+".join(re.escape(part) for part in text.split())
    return re.compile(rf"(?<![\w@]){escaped}(?!\w)", re.IGNORECASE)


def _senders(identity: Identity, doc: Document) -> Iterator[ContentHit]:
    """Hits of From, Sender and Reply-To: the identity's addresses, its segment's members."""
    addresses = {a.strip().lower() for a in identity.addresses}
    for header, address in doc.senders:
        detail = {"identity": identity.id, "via": header}
        if address in addresses:
            yield ContentHit("identity", header, address, detail)
        if identity.segment:
            box = normalise_address(address) or address
            segment = {**detail, "segment": identity.segment, "mailbox": box}
            yield ContentHit("segment_sender", header, address, segment)
    names = [n for n in (identity.name, *identity.aliases) if n]
    if doc.from_name and any(_word(name).search(doc.from_name) for name in names):
        detail = {"identity": identity.id, "via": "from_name"}
        yield ContentHit("identity", "from_name", doc.from_name, detail)


def _signs(identity: Identity, found: list[Closing], lines: list[str]) -> Iterator[ContentHit]:
    """Hits of the closing lines: the identity's sign-off names and patterns.

    A full name ("Jane Doe": the identity's name, an alias, a sign-off of several words)
    counts in any closing, or alone on a line, wherever it is. A first name ("Jane")
    counts only as a signer of the sender's own closing: "Jane Miller", "The Shop Biz
    team" or a testimonial's "— Jane, Acme Corp" under a quoted passage are someone else.
    """
    detail = {"identity": identity.id, "via": "signoff"}
    names = identity.signoffs or ([identity.name] if identity.name else [])
    whole = [n for n in (*names, identity.name, *identity.aliases) if n and len(n.split()) > 1]
    first = {n.casefold() for n in names if len(n.split()) == 1}
    for closing in found:
        if any(_word(name).search(closing.names) for name in whole) or (
            closing.own and first & set(_signed_by(closing))
        ):
            yield ContentHit("identity", "signoff", " ".join(closing.text.split()), detail)
            break
    else:
        wanted = {" ".join(name.casefold().split()) for name in whole}
        line = next((line for line in lines if wanted and _alone(line, wanted)), None)
        if line is not None:
            yield ContentHit("identity", "signoff", line[:120], detail)
    for pattern in identity.signoff_patterns:
        compiled = re.compile(pattern, re.IGNORECASE)
        line = next((line for line in lines if compiled.search(line)), None)
        if line is not None:
            detail = {"identity": identity.id, "via": "signoff_pattern"}
            yield ContentHit("identity", "signoff", line[:120], detail)
            break


def _alone(line: str, wanted: set[str]) -> bool:
    """Tell whether a line is one of the wanted names and nothing else ("— Jane Doe")."""
    if len(line) > NAME_LINE or not any(name in line.casefold() for name in wanted):
        return False  # most lines: no need to split them
    named = signers(line)
    return len(named) == 1 and named[0] in wanted


def _signed_by(closing: Closing) -> Iterator[str]:
    """Yield who signs a closing: the people of its first name line, and names alone.

    A name alone on a line under the first counts ("Biz / Ev / Jack"); a title or a
    company line ("Customer Success Manager, Shop") names nobody.
    """
    signer, *under = closing.names.split("\n")
    yield from signers(signer)
    for line in under:
        if len(named := signers(line)) == 1:
            yield named[0]


def scan(rule: Signature, doc: Document, shared: Shared) -> list[ContentHit]:
    """Find every protected identity the message sends or signs as."""
    found = list(closings(doc.body))
    lines = [line.strip() for line in doc.body.split("\n") if line.strip()]
    hits: list[ContentHit] = []
    for identity in rule.named(shared):
        hits += _senders(identity, doc)
        hits += _signs(identity, found, lines)
    return hits


def signature(rule: Signature, ctx: Context) -> list[Observation]:
    """Hold bulk mail naming an identity that has not signed off the campaign."""
    received = ctx.campaign.counters.received
    hits = ctx.scan(rule.id).hits
    if received <= rule.bulk_threshold or not hits:
        return []
    segments = sorted({str(h.detail["segment"]) for h in hits if h.what == "segment_sender"})
    if missing := ctx.missing_segments(rule.id, segments):
        return missing
    senders = ctx.submission.report.senders
    matches = []
    for hit in hits:
        if hit.what == "segment_sender":
            members = ctx.facts.sender_members.get(str(hit.detail["segment"]), frozenset())
            box = str(hit.detail["mailbox"])
            if box not in senders or senders.index(box) not in members:
                continue
        matches.append(hit)
    unsigned = sorted({str(h.detail["identity"]) for h in matches} - ctx.facts.signoffs)
    if not unsigned:
        return []
    shown = [
        {"identity": h.detail["identity"], "via": h.detail["via"], "fragment": h.fragment}
        for h in matches
        if h.detail["identity"] in unsigned
    ][:SAMPLE]
    first = shown[0]
    return [
        Observation(
            kind=SIGNOFF_KIND,
            message=(
                f"campaign of {received} recipients (bulk threshold {rule.bulk_threshold}) "
                f"sends or signs as {', '.join(unsigned)} without their sign-off "
                f"({first['via']}: {first['fragment']!r}); register it with "
                "POST /api/v1/campaigns/{id}/signoffs"
            ),
            evidence={
                "identities": unsigned,
                "matches": shown,
                "received": received,
                "bulk_threshold": rule.bulk_threshold,
                "signed": sorted(ctx.facts.signoffs),
            },
            acknowledgeable=False,
            tallies={signoff_tally(identity): 1 for identity in unsigned},
        )
    ]
