"""SQLite statements of the message queue: admit, claim, settle, give leases back.

Plain functions on a connection, run by the spool's writer thread inside its group
transaction. Campaign counters change in the same statement batch as the recipient rows,
so they can never disagree with them.
"""

from __future__ import annotations

import json
import sqlite3
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict
from typing import Any

from gateway.errors import CampaignRejected
from gateway.model import (
    CLAIMABLE,
    Admission,
    Campaign,
    CampaignState,
    Counters,
    Decider,
    Declaration,
    Delivery,
    Facts,
    Finding,
    Needs,
    RecipientRecord,
    RecipientState,
    Settlement,
    Submission,
    Verdict,
    new_id,
)
from gateway.spool import sqlite_segments
from gateway.spool import transitions as t

CAMPAIGN_COLUMNS = (
    "id, key, client, implicit, state, sender, subject, declared_size, declared_category,"
    " declared_locale, received, queued, held, relayed, deferred, failed, discarded,"
    " suppressed, escaped, findings, created_at, updated_at, acknowledged, duplicates,"
    " sample_message_id, held_at"
)
RECIPIENT_COLUMNS = (
    "id, message_id, campaign_id, address, state, attempts, next_attempt_at, last_reply, updated_at"
)
# What admission needs of the campaign new mail joins.
_JOIN_COLUMNS = (
    "id, key, client, implicit, state, declared_size, declared_category, declared_locale"
)
CLAIMABLE_STATES = tuple(str(state) for state in CLAIMABLE)


def campaign_by_id(conn: sqlite3.Connection, campaign_id: str) -> Campaign | None:
    """Read one campaign."""
    row = conn.execute(
        f"SELECT {CAMPAIGN_COLUMNS} FROM campaigns WHERE id = ?", (campaign_id,)
    ).fetchone()
    return None if row is None else campaign_from_row(row)


def add_event(
    conn: sqlite3.Connection, campaign_id: str, now: float, event: str, actor: str, **details: Any
) -> None:
    """Append a step to a campaign's timeline."""
    conn.execute(
        "INSERT INTO campaign_events (campaign_id, at, event, actor, details) VALUES (?, ?, ?, ?, ?)",
        (campaign_id, now, event, actor, json.dumps(details)),
    )


def accept(conn: sqlite3.Connection, sub: Submission, decider: Decider, window: float) -> Admission:
    """Admit one submission: campaign, counters, facts, decision, message and recipients."""
    now = sub.received_at
    campaign_id, conflicts = _join(conn, sub, window)
    duplicates = _duplicates(conn, campaign_id, sub.mailboxes)
    if duplicates:
        conn.execute(
            "UPDATE campaigns SET duplicates = duplicates + ? WHERE id = ?",
            (len(duplicates), campaign_id),
        )
    campaign = campaign_by_id(conn, campaign_id)
    assert campaign is not None  # noqa: S101 - written above in this transaction
    needs = decider.needs(campaign)
    facts = _facts(conn, campaign, sub, needs=needs, duplicates=duplicates, conflicts=conflicts)
    verdict = decider.decide(campaign, sub, facts)
    if verdict.findings:
        add_findings(conn, campaign, verdict.findings)
    _remember(conn, campaign_id, sub, verdict)
    count = len(sub.rcpt_tos)
    quarantined = None
    if verdict.hold and campaign.state is not CampaignState.HELD:
        quarantined = hold(
            conn,
            campaign,
            now=now,
            actor="policy",
            rules=[f.rule for f in verdict.findings],
            sample_message_id=sub.message_id,
            incoming=count - len(verdict.suppress),
        )
    tripped = quarantined is not None
    held = verdict.hold or campaign.state is CampaignState.HELD
    _store(conn, campaign_id, sub, RecipientState.HELD if held else RecipientState.QUEUED, verdict)
    return Admission(
        message_id=sub.message_id,
        campaign_id=campaign_id,
        held=held,
        tripped=tripped,
        findings=verdict.findings,
        held_recipients=quarantined or 0,
    )


def _join(conn: sqlite3.Connection, sub: Submission, window: float) -> tuple[str, tuple[Any, ...]]:
    """Find or create the submission's campaign and count it in; return its ID and conflicts."""
    ref = sub.campaign
    now = sub.received_at
    count = len(sub.rcpt_tos)
    row = _current_campaign(conn, ref.client, ref.key, now - window if ref.implicit else None)
    manifest = _manifest(conn, ref.client, ref.key)
    declared = _overlay(manifest, ref.declaration)
    if row is None:
        campaign_id = new_id(now)
        conn.execute(
            "INSERT INTO campaigns (id, client, key, implicit, state, sender, subject, declared_size,"
            " declared_category, declared_locale, received, created_at, updated_at,"
            " sample_message_id) VALUES (?, ?, ?, ?, 'open', ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                campaign_id,
                ref.client,
                ref.key,
                int(ref.implicit),
                ref.sender,
                ref.subject,
                declared.size,
                declared.category,
                declared.locale,
                count,
                now,
                now,
                sub.message_id,
            ),
        )
        add_event(conn, campaign_id, now, "created", ref.client, message=sub.message_id)
        return campaign_id, ()
    campaign_id = row[0]
    if row[4] == CampaignState.REJECTED:
        raise CampaignRejected(campaign_id, ref.key)
    # The first declaration seen is kept; a manifest overrides it (DESIGN.md §2).
    conn.execute(
        "UPDATE campaigns SET received = received + ?, updated_at = ?,"
        " declared_size = COALESCE(declared_size, ?),"
        " declared_category = COALESCE(declared_category, ?),"
        " declared_locale = COALESCE(declared_locale, ?) WHERE id = ?",
        (count, now, declared.size, declared.category, declared.locale, campaign_id),
    )
    return campaign_id, _conflicts(Declaration(*row[5:8]), ref.declaration, manifest)


def _facts(
    conn: sqlite3.Connection,
    campaign: Campaign,
    sub: Submission,
    *,
    needs: Needs,
    duplicates: tuple[int, ...],
    conflicts: tuple[Any, ...],
) -> Facts:
    """Look up what the rules asked for, inside the admitting transaction."""
    members: dict[str, frozenset[int]] = {}
    sizes: dict[str, int | None] = {}
    for name in needs.segments:
        live = sqlite_segments.version_of(conn, name)
        sizes[name] = None if live is None else live[1]
        if live is not None:
            found = sqlite_segments.members(conn, live[0], sub.hashes)
            members[name] = frozenset(i for i, h in enumerate(sub.hashes) if h in found)
    tallies = dict.fromkeys(needs.tallies, 0)
    if needs.tallies:
        marks = ",".join("?" * len(needs.tallies))
        tallies.update(
            conn.execute(
                f"SELECT name, value FROM campaign_tallies WHERE campaign_id = ? AND name IN ({marks})",
                (campaign.id, *needs.tallies),
            ).fetchall()
        )
    frequency = {}
    for rule, window in needs.frequency:
        marks = ",".join("?" * len(sub.hashes))
        seen = dict(
            conn.execute(
                "SELECT hash, COUNT(*) FROM frequency WHERE rule = ? AND at >= ?"
                f" AND hash IN ({marks}) GROUP BY hash",
                (rule, sub.received_at - window, *sub.hashes),
            ).fetchall()
        )
        frequency[rule] = tuple(seen.get(h, 0) for h in sub.hashes)
    sender_members: dict[str, frozenset[int]] = {}
    senders = sub.report.sender_hashes
    for name in needs.sender_segments:
        live = sqlite_segments.version_of(conn, name)
        sizes[name] = None if live is None else live[1]
        if live is not None:
            found = sqlite_segments.members(conn, live[0], senders) if senders else set()
            sender_members[name] = frozenset(i for i, h in enumerate(senders) if h in found)
    signed: frozenset[str] = frozenset()
    if needs.signoffs:
        rows = conn.execute("SELECT identity FROM signoffs WHERE campaign_id = ?", (campaign.id,))
        signed = frozenset(identity for (identity,) in rows)
    return Facts(
        duplicates=duplicates,
        conflicts=conflicts,
        members=members,
        segment_sizes=sizes,
        tallies=tallies,
        frequency=frequency,
        signoffs=signed,
        sender_members=sender_members,
    )


def _remember(
    conn: sqlite3.Connection, campaign_id: str, sub: Submission, verdict: Verdict
) -> None:
    """Store the tallies and frequency counts the verdict asks for."""
    conn.executemany(
        "INSERT INTO campaign_tallies (campaign_id, name, value) VALUES (?, ?, ?)"
        " ON CONFLICT (campaign_id, name) DO UPDATE SET value = value + excluded.value",
        [(campaign_id, name, delta) for name, delta in verdict.tallies.items() if delta],
    )
    # A frequency cap counts accepted recipients, not the ones it (or another rule) dropped.
    kept = [h for i, h in enumerate(sub.hashes) if i not in verdict.suppress]
    for rule in verdict.frequency:
        conn.executemany(
            "INSERT INTO frequency (rule, hash, at) VALUES (?, ?, ?)",
            [(rule, h, sub.received_at) for h in kept],
        )


def _store(
    conn: sqlite3.Connection,
    campaign_id: str,
    sub: Submission,
    waiting: RecipientState,
    verdict: Verdict,
) -> None:
    """Store the message once and a row per recipient, and count them in."""
    now = sub.received_at
    conn.execute(
        "INSERT INTO messages (id, campaign_id, client, mail_from, content, size, ingress, received_at)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        (
            sub.message_id,
            campaign_id,
            sub.client,
            sub.mail_from,
            sub.content,
            len(sub.content),
            sub.ingress,
            now,
        ),
    )
    born = t.born(waiting)
    rows = []
    for index, (address, box, key) in enumerate(
        zip(sub.rcpt_tos, sub.mailboxes, sub.hashes, strict=True)
    ):
        rule = verdict.suppress.get(index)
        state, reply = (
            (t.born(RecipientState.SUPPRESSED), f"suppressed by rule {rule}")
            if rule
            else (born, "")
        )
        rows.append((sub.message_id, campaign_id, address, box, key, state, reply, now, now, now))
    conn.executemany(
        "INSERT INTO recipients (message_id, campaign_id, address, mailbox, mailbox_hash, state,"
        " last_reply, next_attempt_at, updated_at, queued_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        rows,
    )
    suppressed = len(verdict.suppress)
    column = "held" if waiting is RecipientState.HELD else "queued"
    conn.execute(
        f"UPDATE campaigns SET {column} = {column} + ?, suppressed = suppressed + ? WHERE id = ?",
        (len(rows) - suppressed, suppressed, campaign_id),
    )


def _current_campaign(
    conn: sqlite3.Connection, client: str, key: str, not_before: float | None
) -> Sequence[Any] | None:
    """Find the campaign new mail joins: the newest with this key (within the implicit window)."""
    if not_before is None:
        return conn.execute(  # type: ignore[no-any-return]
            f"SELECT {_JOIN_COLUMNS} FROM campaigns WHERE client = ? AND key = ?"
            " ORDER BY created_at DESC LIMIT 1",
            (client, key),
        ).fetchone()
    return conn.execute(  # type: ignore[no-any-return]
        f"SELECT {_JOIN_COLUMNS} FROM campaigns WHERE client = ? AND key = ?"
        " AND created_at >= ? ORDER BY created_at DESC LIMIT 1",
        (client, key, not_before),
    ).fetchone()


def _manifest(conn: sqlite3.Connection, client: str, key: str) -> Declaration | None:
    """Return the registered manifest for this key (client-specific first, then '*')."""
    row = conn.execute(
        "SELECT size, category, locale FROM manifests WHERE key = ? AND client IN (?, '*')"
        " ORDER BY client = '*' LIMIT 1",
        (key, client),
    ).fetchone()
    return None if row is None else Declaration(*row)


def _overlay(manifest: Declaration | None, headers: Declaration) -> Declaration:
    """Let the manifest's fields win over the headers' where it sets them."""
    if manifest is None:
        return headers
    return Declaration(
        size=manifest.size if manifest.size is not None else headers.size,
        category=manifest.category or headers.category,
        locale=manifest.locale or headers.locale,
    )


def _conflicts(
    kept: Declaration, sent: Declaration, manifest: Declaration | None
) -> tuple[tuple[str, Any, Any], ...]:
    """Return (field, kept, sent) where this message declares otherwise than its campaign."""
    found = []
    for field in ("size", "category", "locale"):
        if manifest is not None and getattr(manifest, field) is not None:
            continue  # the manifest decides this field; what the headers say does not matter
        old, new = getattr(kept, field), getattr(sent, field)
        if old is not None and new is not None and str(old).casefold() != str(new).casefold():
            found.append((field, old, new))
    return tuple(found)


def _duplicates(
    conn: sqlite3.Connection, campaign_id: str, mailboxes: Sequence[str]
) -> tuple[int, ...]:
    """Indexes of recipients already in the campaign or repeated earlier in this message."""
    distinct = list(dict.fromkeys(mailboxes))
    rows = ",".join("(?)" for _ in distinct)
    # One index probe per mailbox, however often the campaign already reached it.
    seen = {
        found
        for (found,) in conn.execute(
            f"WITH wanted(box) AS (VALUES {rows}) SELECT box FROM wanted WHERE EXISTS ("
            " SELECT 1 FROM recipients WHERE campaign_id = ? AND mailbox = wanted.box)",
            (*distinct, campaign_id),
        )
    }
    found = []
    for index, box in enumerate(mailboxes):
        if box in seen:
            found.append(index)
        seen.add(box)
    return tuple(found)


def hold(
    conn: sqlite3.Connection,
    campaign: Campaign,
    *,
    now: float,
    actor: str,
    rules: Sequence[str],
    sample_message_id: str | None = None,
    incoming: int = 0,
) -> int | None:
    """Quarantine a campaign: nothing of it that is still waiting may be relayed.

    A compare-and-set from the state `campaign` was read in. Return how many recipients
    the hold quarantined (`incoming` included), or None when the campaign had moved on.
    """
    # What went out before the first review escaped it; after a release it was approved.
    escaped = "relayed" if campaign.state is CampaignState.OPEN else "escaped"
    move = t.move_campaign(
        conn,
        campaign.id,
        (campaign.state,),
        CampaignState.HELD,
        assign=f"escaped = {escaped}, held_at = ?, updated_at = ?,"
        " sample_message_id = COALESCE(?, sample_message_id)",
        params=(now, now, sample_message_id),
    )
    if not move.moved:
        return None
    moved = {
        source: t.move_recipients(
            conn,
            source,
            RecipientState.HELD,
            where="campaign_id = ?",
            params=(campaign.id,),
            assign="updated_at = ?",
            assign_params=(now,),
        )
        for source in CLAIMABLE
    }
    queued, deferred = moved[RecipientState.QUEUED], moved[RecipientState.DEFERRED]
    conn.execute(
        "UPDATE campaigns SET held = held + ?, queued = queued - ?, deferred = deferred - ?"
        " WHERE id = ?",
        (queued + deferred, queued, deferred, campaign.id),
    )
    held = queued + deferred + incoming  # incoming: the tripping message, stored right after
    add_event(conn, campaign.id, now, "held", actor, rules=list(rules), recipients=held)
    return held


def add_findings(conn: sqlite3.Connection, campaign: Campaign, findings: Sequence[Finding]) -> None:
    """Merge findings by (rule, kind): a repeat raises its count and refreshes its evidence."""
    merged = {f.signature: asdict(f) for f in campaign.findings}
    for finding in findings:
        earlier = merged.get(finding.signature)
        count = finding.count + (earlier["count"] if earlier else 0)
        merged[finding.signature] = {**asdict(finding), "count": count}
    conn.execute(
        "UPDATE campaigns SET findings = ? WHERE id = ?",
        (json.dumps(list(merged.values())), campaign.id),
    )


def claim(
    conn: sqlite3.Connection, owner: str, now: float, limit: int, lease: float
) -> list[Delivery]:
    """Lease due recipients of up to `limit` messages, unless the relay is paused.

    Leases that ran out first go back to waiting (a worker died without its process
    restarting), so any worker, this one included, can take them over.
    """
    give_back(conn, now=now, expired_at=now)
    if relay_paused(conn):
        return []
    message_ids = _due_messages(conn, now, limit)
    if not message_ids:
        return []
    marks = ",".join("?" * len(message_ids))
    by_message: dict[str, list[tuple[int, str, int, float]]] = {}
    moved_from_deferred: Counter[str] = Counter()
    for source in CLAIMABLE:
        for (
            rid,
            message_id,
            campaign_id,
            address,
            attempts,
            queued_at,
        ) in t.move_recipients_returning(
            conn,
            source,
            RecipientState.SENDING,
            where=f"message_id IN ({marks}) AND next_attempt_at <= ?",
            params=(*message_ids, now),
            assign="lease_owner = ?, lease_until = ?, updated_at = ?",
            assign_params=(owner, now + lease, now),
            returning="id, message_id, campaign_id, address, attempts, queued_at",
        ):
            by_message.setdefault(message_id, []).append((rid, address, attempts, queued_at))
            if source == RecipientState.DEFERRED:
                moved_from_deferred[campaign_id] += 1
    # Campaign counters treat a leased recipient as queued: it is not delivered yet.
    for campaign_id, moved in moved_from_deferred.items():
        conn.execute(
            "UPDATE campaigns SET deferred = deferred - ?, queued = queued + ? WHERE id = ?",
            (moved, moved, campaign_id),
        )
    deliveries = []
    for mid, campaign_id, mail_from, content in conn.execute(
        f"SELECT id, campaign_id, mail_from, content FROM messages WHERE id IN ({marks})",
        message_ids,
    ):
        rows = sorted(by_message.get(mid, []))
        if rows:
            deliveries.append(
                Delivery(
                    message_id=mid,
                    campaign_id=campaign_id,
                    mail_from=mail_from,
                    content=bytes(content),
                    recipients=tuple((rid, address) for rid, address, _, _ in rows),
                    attempts=max(row[2] for row in rows),
                    queued_at=min(row[3] for row in rows),
                )
            )
    return deliveries


def renew(conn: sqlite3.Connection, owner: str, recipient_ids: Sequence[int], until: float) -> int:
    """Extend `owner`'s leases on these recipients; return how many it still held."""
    if not recipient_ids:
        return 0
    marks = ",".join("?" * len(recipient_ids))
    return conn.execute(
        f"UPDATE recipients SET lease_until = ? WHERE id IN ({marks})"
        " AND state = 'sending' AND lease_owner = ?",
        (until, *recipient_ids, owner),
    ).rowcount


def _due_messages(conn: sqlite3.Connection, now: float, limit: int) -> list[str]:
    """Return up to `limit` messages with due recipients, the longest waiting first."""
    # Walk the (state, next_attempt_at) index per state and stop after `limit` rows, so a
    # claim costs the same however long the backlog is.
    due: dict[str, float] = {}
    for source in CLAIMABLE_STATES:
        for message_id, at in conn.execute(
            "SELECT message_id, next_attempt_at FROM recipients WHERE state = ?"
            " AND next_attempt_at <= ? ORDER BY next_attempt_at LIMIT ?",
            (source, now, limit),
        ):
            due[message_id] = min(at, due.get(message_id, at))
    return sorted(due, key=due.__getitem__)[:limit]


def relay_paused(conn: sqlite3.Connection) -> bool:
    """Tell whether an operator paused the relay (a durable, gateway-wide switch)."""
    row = conn.execute("SELECT value FROM flags WHERE name = 'relay_paused'").fetchone()
    return row is not None and bool(json.loads(row[0]).get("paused"))


_SETTLED_COUNTER = {
    RecipientState.RELAYED: "relayed",
    RecipientState.DEFERRED: "deferred",
    RecipientState.FAILED: "failed",
    RecipientState.HELD: "held",
    RecipientState.DISCARDED: "discarded",
}
DEFERRED = RecipientState.DEFERRED


def settle(
    conn: sqlite3.Connection, owner: str, settlements: Sequence[Settlement], now: float
) -> int:
    """Record outcomes; a row whose lease was lost is left to its new owner."""
    changes: Counter[tuple[str, str]] = Counter()
    retries = _retry_states(conn, [s.recipient_id for s in settlements if s.state is DEFERRED])
    for item in settlements:
        target = retries.get(item.recipient_id, item.state)
        for (campaign_id,) in t.move_recipients_returning(
            conn,
            RecipientState.SENDING,
            target,
            where="id = ? AND lease_owner = ?",
            params=(item.recipient_id, owner),
            assign="attempts = attempts + 1, last_reply = ?, next_attempt_at = ?,"
            " lease_owner = NULL, lease_until = NULL, updated_at = ?",
            assign_params=(item.reply, item.next_attempt_at or now, now),
            returning="campaign_id",
        ):
            changes[(campaign_id, _SETTLED_COUNTER[target])] += 1
            changes[(campaign_id, "queued")] -= 1
    for (campaign_id, column), delta in changes.items():
        if delta:
            conn.execute(
                f"UPDATE campaigns SET {column} = {column} + ?, updated_at = ? WHERE id = ?",
                (delta, now, campaign_id),
            )
        if column == "relayed":
            # Mail that was in flight when its campaign was held escaped the hold too.
            conn.execute(
                "UPDATE campaigns SET escaped = escaped + ? WHERE id = ? AND state = 'held'",
                (delta, campaign_id),
            )
    return sum(delta for (_, column), delta in changes.items() if column != "queued")


# Where a recipient whose lease is given back waits, by its campaign's state now.
_RETURN_TO = (
    (RecipientState.QUEUED, (CampaignState.OPEN, CampaignState.RELEASED), None),
    (RecipientState.HELD, (CampaignState.HELD,), "held"),
    (RecipientState.DISCARDED, (CampaignState.REJECTED,), "discarded"),
)
# Where a recipient the upstream deferred waits, by its campaign's state now: a campaign
# held or rejected while the delivery was in flight must not send it on the next try.
_RETRY_AS = {
    CampaignState.HELD: RecipientState.HELD,
    CampaignState.REJECTED: RecipientState.DISCARDED,
}


def _retry_states(
    conn: sqlite3.Connection, recipient_ids: Sequence[int]
) -> dict[int, RecipientState]:
    """Return, for deferred recipients whose campaign stopped, where they wait instead."""
    if not recipient_ids:
        return {}
    marks = ",".join("?" * len(recipient_ids))
    rows = conn.execute(
        f"SELECT r.id, c.state FROM recipients r JOIN campaigns c ON c.id = r.campaign_id"
        f" WHERE r.id IN ({marks})",
        recipient_ids,
    )
    return {rid: _RETRY_AS[state] for rid, state in rows if state in _RETRY_AS}


def give_back(
    conn: sqlite3.Connection,
    *,
    now: float,
    owner: str | None = None,
    expired_at: float | None = None,
) -> int:
    """Return leased recipients (of one owner, expired ones, or all) to where they wait.

    A recipient leased before its campaign was held or rejected waits held, or is
    discarded, instead of going out when it is claimed again.
    """
    where, params = "1", list[Any]()
    if owner is not None:
        where, params = "lease_owner = ?", [owner]
    if expired_at is not None:
        where, params = f"{where} AND lease_until <= ?", [*params, expired_at]
    total = 0
    for target, states, column in _RETURN_TO:
        marks = ",".join("?" * len(states))
        rows = t.move_recipients_returning(
            conn,
            RecipientState.SENDING,
            target,
            where=f"{where} AND campaign_id IN (SELECT id FROM campaigns WHERE state IN ({marks}))",
            params=(*params, *map(str, states)),
            assign="lease_owner = NULL, lease_until = NULL, updated_at = ?",
            assign_params=(now,),
            returning="campaign_id",
        )
        total += len(rows)
        if column is None:  # a leased recipient is counted as queued already
            continue
        for campaign_id, moved in Counter(campaign_id for (campaign_id,) in rows).items():
            conn.execute(
                f"UPDATE campaigns SET queued = queued - ?, {column} = {column} + ? WHERE id = ?",
                (moved, moved, campaign_id),
            )
    return total


def campaign_from_row(row: Sequence[Any]) -> Campaign:
    """Build a Campaign from a row of CAMPAIGN_COLUMNS."""
    (cid, key, client, implicit, state, sender, subject, size, category, locale, *rest) = row
    counts, rest = rest[:9], rest[9:]
    findings, created_at, updated_at, acknowledged, duplicates, sample, held_at = rest
    return Campaign(
        id=cid,
        key=key,
        client=client,
        implicit=bool(implicit),
        state=CampaignState(state),
        sender=sender,
        subject=subject,
        declared=Declaration(size=size, category=category, locale=locale),
        counters=Counters(*counts),
        created_at=created_at,
        updated_at=updated_at,
        findings=tuple(Finding(**f) for f in json.loads(findings)),
        acknowledged=frozenset(tuple(pair) for pair in json.loads(acknowledged)),
        duplicates=duplicates,
        sample_message_id=sample,
        held_at=held_at,
    )


def recipient_from_row(row: Sequence[Any]) -> RecipientRecord:
    """Build a RecipientRecord from a row of RECIPIENT_COLUMNS."""
    rid, message_id, campaign_id, address, state, attempts, next_at, reply, updated_at = row
    return RecipientRecord(
        id=rid,
        message_id=message_id,
        campaign_id=campaign_id,
        address=address,
        state=RecipientState(state),
        attempts=attempts,
        next_attempt_at=next_at,
        last_reply=reply,
        updated_at=updated_at,
    )
