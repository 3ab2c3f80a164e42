"""The one door every campaign and recipient state change goes through.

Each change is a compare-and-set: the UPDATE names the states it moves from, so a row
another transaction (another worker, another replica) moved first is simply not matched.
The model's tables say which moves exist; asking for any other is `IllegalTransition`.
`tests/spool/test_transitions.py` fails when spool code changes a state without this
module. Statements are built here and run on the connection the caller's transaction
holds; nothing here commits.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from gateway.errors import IllegalTransition
from gateway.spool.dialect import Conn
from gateway.states import (
    CAMPAIGN_TRANSITIONS,
    INITIAL_RECIPIENT_STATES,
    RECIPIENT_TRANSITIONS,
    CampaignState,
    RecipientState,
)


@dataclass(frozen=True, slots=True)
class CampaignMove:
    """The result of one campaign compare-and-set."""

    moved: bool
    state: CampaignState | None  # the state now: the new one, or what won the race (None: gone)


def _check(table: Any, sources: Iterable[Any], target: Any) -> tuple[str, ...]:
    names = []
    for source in sources:
        if target not in table[source]:
            raise IllegalTransition(f"{source} -> {target} is not in the transition table")
        names.append(str(source))
    if not names:
        raise IllegalTransition(f"a move to {target} names no source state")
    return tuple(names)


def move_campaign(
    conn: Conn,
    campaign_id: str,
    sources: Iterable[CampaignState],
    target: CampaignState,
    *,
    assign: str = "",
    params: Sequence[Any] = (),
) -> CampaignMove:
    """Move one campaign from any of `sources` to `target`, setting `assign` alongside."""
    names = _check(CAMPAIGN_TRANSITIONS, sources, target)
    extra = f", {assign}" if assign else ""
    marks = ",".join("?" * len(names))
    row = conn.execute(
        f"UPDATE campaigns SET state = ?{extra} WHERE id = ? AND state IN ({marks})"
        " RETURNING state",
        (str(target), *params, campaign_id, *names),
    ).fetchone()
    if row is not None:
        return CampaignMove(moved=True, state=target)
    now = conn.execute("SELECT state FROM campaigns WHERE id = ?", (campaign_id,)).fetchone()
    return CampaignMove(moved=False, state=None if now is None else CampaignState(now[0]))


def born(state: RecipientState) -> str:
    """Return `state` for a new recipient row, when rows may be born in it."""
    if state not in INITIAL_RECIPIENT_STATES:
        raise IllegalTransition(f"a recipient cannot start out {state}")
    return str(state)


@dataclass(frozen=True, slots=True)
class Rows:
    """Which recipient rows a move takes (`where`), and what else it sets on them."""

    where: str
    params: Sequence[Any] = ()
    assign: str = ""
    assign_params: Sequence[Any] = ()


def _recipient_update(
    source: RecipientState, target: RecipientState, rows: Rows
) -> tuple[str, tuple[Any, ...]]:
    _check(RECIPIENT_TRANSITIONS, (source,), target)
    extra = f", {rows.assign}" if rows.assign else ""
    sql = f"UPDATE recipients SET state = ?{extra} WHERE state = ? AND ({rows.where})"
    return sql, (str(target), *rows.assign_params, str(source), *rows.params)


def move_recipients(conn: Conn, source: RecipientState, target: RecipientState, rows: Rows) -> int:
    """Move the recipient rows in `source` that `rows` selects to `target`; return how many."""
    sql, values = _recipient_update(source, target, rows)
    return conn.execute(sql, values).rowcount


def move_recipients_returning(
    conn: Conn,
    source: RecipientState,
    target: RecipientState,
    rows: Rows,
    returning: str,
) -> list[Any]:
    """Like `move_recipients`, returning the columns `returning` names of each moved row."""
    sql, values = _recipient_update(source, target, rows)
    return conn.execute(f"{sql} RETURNING {returning}", values).fetchall()
