"""The transaction port (`gateway.spool.port.Tx`) on one SQL connection.

Run by a writer thread inside a unit of its group commit. On SQLite the single writer is
the campaign's lock; where several processes write (PostgreSQL), `current_campaign` takes
a lock on the campaign's key that the transaction holds until it commits. Either way the
counter update and the decision made between these calls are one atomic step.
Statements only; what they mean is the caller's.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from gateway.model import (
    AuditEntry,
    Campaign,
    CampaignRef,
    Canary,
    Declaration,
    Feedback,
    FeedbackStats,
    Finding,
    ReleaseScope,
    Signoff,
    Submission,
    new_id,
)
from gateway.spool import sql_access, sql_canary, sql_feedback, sql_review, sql_segments
from gateway.spool import sql_queue as q
from gateway.spool import transitions as t
from gateway.spool.dialect import Conn
from gateway.spool.port import Hold, Joined
from gateway.states import CampaignState, RecipientState

HOUR = 3600.0  # the window of a feedback rule's `max_per_hour`


class SqlTx:
    """Storage primitives of one admitting or reviewing transaction."""

    def __init__(self, conn: Conn) -> None:
        self._conn = conn
        self._key_lock = conn.dialect.key_lock

    # -- campaigns ------------------------------------------------------------------------

    def current_campaign(self, client: str, key: str, not_before: float | None) -> Joined | None:
        since, params = ("", ()) if not_before is None else (" AND created_at >= ?", (not_before,))
        # Where several processes write, the campaign's row is locked until this
        # transaction commits: every other admission of it, and every counter update,
        # waits. The same lock other writers take on it, so no lock-order cycle.
        select = (
            "SELECT id, state, declared_size, declared_category, declared_locale FROM campaigns"
            f" WHERE client = ? AND key = ?{since} ORDER BY created_at DESC LIMIT 1"
            + (" FOR UPDATE" if self._key_lock else "")
        )
        row = self._conn.execute(select, (client, key, *params)).fetchone()
        if row is None and self._key_lock:
            # No row to lock yet: the key's lock makes the creator the only one; whoever
            # waited for it looks again and joins what the creator made.
            self._conn.execute(self._key_lock, (client, key))
            row = self._conn.execute(select, (client, key, *params)).fetchone()
        if row is None:
            return None
        return Joined(row[0], CampaignState(row[1]), Declaration(*row[2:]))

    def campaign(self, campaign_id: str) -> Campaign | None:
        return q.campaign_by_id(self._conn, campaign_id)

    def manifest(self, client: str, key: str) -> Declaration | None:
        row = self._conn.execute(
            "SELECT size, category, locale FROM manifests WHERE key = ? AND client IN (?, '*')"
            " ORDER BY client = '*' LIMIT 1",
            (key, client),
        ).fetchone()
        return None if row is None else Declaration(*row)

    def create_campaign(
        self, ref: CampaignRef, declared: Declaration, *, received: int, now: float, sample: str
    ) -> str:
        campaign_id = new_id(now)
        self._conn.execute(
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
                received,
                now,
                now,
                sample,
            ),
        )
        return campaign_id

    def count_in(self, campaign_id: str, received: int, declared: Declaration, now: float) -> None:
        self._conn.execute(
            "UPDATE campaigns SET received = received + ?, updated_at = ?,"
            " declared_size = COALESCE(declared_size, ?),"
            " declared_category = COALESCE(declared_category, ?),"
            " declared_locale = COALESCE(declared_locale, ?) WHERE id = ?",
            (received, now, declared.size, declared.category, declared.locale, campaign_id),
        )

    def add_duplicates(self, campaign_id: str, count: int) -> None:
        self._conn.execute(
            "UPDATE campaigns SET duplicates = duplicates + ? WHERE id = ?", (count, campaign_id)
        )

    def merge_findings(self, campaign: Campaign, findings: Sequence[Finding]) -> None:
        q.add_findings(self._conn, campaign, findings)

    def hold(self, campaign: Campaign, hold: Hold) -> int | None:
        return q.hold(self._conn, campaign, hold)

    def release(
        self, campaign_id: str, actor: str, now: float, scope: ReleaseScope | None = None
    ) -> Campaign | None:
        return sql_review.release(self._conn, campaign_id, actor, now, scope)

    def canary(self, campaign_id: str) -> Canary | None:
        return sql_canary.canary(self._conn, campaign_id)

    def lock_canary(self, campaign_id: str) -> Canary | None:
        return sql_canary.canary(self._conn, campaign_id, lock=True)

    def put_canary(self, canary: Canary) -> None:
        sql_canary.put(self._conn, canary)

    def update_canary(self, canary: Canary) -> None:
        sql_canary.update(self._conn, canary)

    def audit(self, entry: AuditEntry) -> None:
        sql_access.append_audit(self._conn, entry)

    def feedback(self, campaign: Campaign, now: float) -> FeedbackStats:
        totals = sql_feedback.totals(self._conn, [campaign.id]).get(campaign.id, Feedback())
        # The minute `now` falls in is counted: the window ends after it.
        last_hour = sql_feedback.window(self._conn, campaign.id, now - HOUR, now + 1.0)
        samples: dict[str, list[dict[str, Any]]] = {}
        for sample in sql_feedback.samples(self._conn, campaign.id):
            shown = {"recipient": sample.recipient, **sample.evidence}
            samples.setdefault(sample.kind, []).append(shown)
        return FeedbackStats(
            sent=campaign.counters.relayed,
            totals=totals,
            last_hour=last_hour,
            samples={kind: tuple(found) for kind, found in samples.items()},
        )

    def event(self, campaign_id: str, now: float, event: str, actor: str, **details: Any) -> None:
        q.add_event(self._conn, campaign_id, now, event, actor, **details)

    # -- look-ups for the rules -----------------------------------------------------------

    def seen(self, campaign_id: str, mailboxes: Iterable[str]) -> set[str]:
        distinct = list(dict.fromkeys(mailboxes))
        rows = ",".join("(?)" for _ in distinct)
        # One index probe per mailbox, however often the campaign already reached it.
        return {
            found
            for (found,) in self._conn.execute(
                f"WITH wanted(box) AS (VALUES {rows}) SELECT box FROM wanted WHERE EXISTS ("
                " SELECT 1 FROM recipients WHERE campaign_id = ? AND mailbox = wanted.box)",
                (*distinct, campaign_id),
            )
        }

    def segment_members(self, name: str, hashes: Sequence[int]) -> tuple[int, set[int]] | None:
        live = sql_segments.version_of(self._conn, name)
        if live is None:
            return None
        version, size = live
        return size, sql_segments.members(self._conn, version, hashes) if hashes else set()

    def tallies(self, campaign_id: str, names: Iterable[str] | None = None) -> dict[str, int]:
        if names is None:
            rows = self._conn.execute(
                "SELECT name, value FROM campaign_tallies WHERE campaign_id = ?", (campaign_id,)
            )
            return dict(rows.fetchall())
        wanted = list(names)
        if not wanted:
            return {}
        marks = ",".join("?" * len(wanted))
        return dict(
            self._conn.execute(
                f"SELECT name, value FROM campaign_tallies WHERE campaign_id = ? AND name IN ({marks})",
                (campaign_id, *wanted),
            ).fetchall()
        )

    def resent(self, resend_key: bytes, since: float | None = None) -> tuple[str, str] | None:
        row = self._conn.execute(
            "SELECT id, campaign_id FROM messages WHERE resend_key = ? AND received_at >= ?"
            " LIMIT 1",
            (resend_key, since if since is not None else float("-inf")),
        ).fetchone()
        return None if row is None else (str(row[0]), str(row[1]))

    def sends_since(self, rule: str, since: float, hashes: Sequence[int]) -> dict[int, int]:
        marks = ",".join("?" * len(hashes))
        return dict(
            self._conn.execute(
                "SELECT hash, COUNT(*) FROM frequency WHERE rule = ? AND at >= ?"
                f" AND hash IN ({marks}) GROUP BY hash",
                (rule, since, *hashes),
            ).fetchall()
        )

    def signed(self, campaign_id: str) -> frozenset[str]:
        rows = self._conn.execute(
            "SELECT identity FROM signoffs WHERE campaign_id = ?", (campaign_id,)
        )
        return frozenset(identity for (identity,) in rows)

    def signoffs(self, campaign_id: str) -> list[Signoff]:
        return [
            Signoff(campaign_id, identity, actor, reason, at, bool(on_behalf))
            for identity, actor, reason, on_behalf, at in self._conn.execute(
                "SELECT identity, actor, reason, on_behalf, at FROM signoffs"
                " WHERE campaign_id = ? ORDER BY at, identity",
                (campaign_id,),
            )
        ]

    # -- writes of an admission -----------------------------------------------------------

    def add_tallies(self, campaign_id: str, deltas: Mapping[str, int]) -> None:
        self._conn.executemany(
            "INSERT INTO campaign_tallies (campaign_id, name, value) VALUES (?, ?, ?)"
            " ON CONFLICT (campaign_id, name)"
            " DO UPDATE SET value = campaign_tallies.value + excluded.value",
            [(campaign_id, name, delta) for name, delta in deltas.items() if delta],
        )

    def count_sends(self, rule: str, hashes: Sequence[int], at: float) -> None:
        self._conn.executemany(
            "INSERT INTO frequency (rule, hash, at) VALUES (?, ?, ?)",
            [(rule, h, at) for h in hashes],
        )

    def store(
        self,
        sub: Submission,
        campaign_id: str,
        waiting: RecipientState,
        suppress: Mapping[int, str],
    ) -> None:
        now = sub.received_at
        self._conn.execute(
            "INSERT INTO messages (id, campaign_id, client, mail_from, content, size, ingress,"
            " received_at, resend_key) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                sub.message_id,
                campaign_id,
                sub.client,
                sub.mail_from,
                sub.content,
                len(sub.content),
                sub.ingress,
                now,
                sub.resend_key,
            ),
        )
        born, suppressed = t.born(waiting), t.born(RecipientState.SUPPRESSED)
        rows = []
        for index, (address, box, key) in enumerate(
            zip(sub.rcpt_tos, sub.mailboxes, sub.hashes, strict=True)
        ):
            rule = suppress.get(index)
            state, reply = (suppressed, f"suppressed by rule {rule}") if rule else (born, "")
            rows.append(
                (sub.message_id, campaign_id, address, box, key, state, reply, now, now, now)
            )
        self._conn.executemany(
            "INSERT INTO recipients (message_id, campaign_id, address, mailbox, mailbox_hash, state,"
            " last_reply, next_attempt_at, updated_at, queued_at)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            rows,
        )
        column = "held" if waiting is RecipientState.HELD else "queued"
        self._conn.execute(
            f"UPDATE campaigns SET {column} = {column} + ?, suppressed = suppressed + ? WHERE id = ?",
            (len(rows) - len(suppress), len(suppress), campaign_id),
        )

    def add_signoff(self, signoff: Signoff) -> None:
        self._conn.execute(
            "INSERT INTO signoffs (campaign_id, identity, actor, reason, on_behalf, at)"
            " VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (campaign_id, identity) DO UPDATE SET"
            " actor = excluded.actor, reason = excluded.reason, on_behalf = excluded.on_behalf,"
            " at = excluded.at",
            (
                signoff.campaign_id,
                signoff.identity,
                signoff.actor,
                signoff.reason,
                int(signoff.on_behalf),
                signoff.at,
            ),
        )
