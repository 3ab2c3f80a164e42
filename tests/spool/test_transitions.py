"""Every state change in the spool goes through the transition helper, and the tables hold."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

import gateway.spool
from gateway.errors import IllegalTransition
from gateway.spool import transitions
from gateway.states import (
    CAMPAIGN_TRANSITIONS,
    RECIPIENT_TRANSITIONS,
    CampaignState,
    RecipientState,
)

SPOOL = Path(gateway.spool.__file__).parent
HELPER = Path(transitions.__file__)
# Campaigns and recipients; segment versions have a lifecycle of their own (sql_segments).
_UPDATE = re.compile(
    r"\bUPDATE\s+(?:campaigns|recipients)\s+SET\b(?P<set>.*?)(?:\bWHERE\b|$)",
    re.IGNORECASE | re.DOTALL,
)
_ASSIGNS_STATE = re.compile(r"(?:^|[\s,])state\s*=", re.IGNORECASE)


def _sql_texts(path: Path) -> list[tuple[int, str]]:
    """Every string literal (f-strings with their holes as `{}`) and its line."""
    texts = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.JoinedStr):
            parts = [v.value if isinstance(v, ast.Constant) else "{}" for v in node.values]
            texts.append((node.lineno, "".join(str(p) for p in parts)))
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            texts.append((node.lineno, node.value))
    return texts


def state_assignments(path: Path) -> list[str]:
    """UPDATE statements in `path` whose SET clause assigns a `state` column."""
    return [
        f"{path.name}:{line}: {match[0].strip()[:80]}"
        for line, text in _sql_texts(path)
        for match in _UPDATE.finditer(text)
        if _ASSIGNS_STATE.search(match["set"])
    ]


def test_no_spool_code_changes_a_state_without_the_transition_helper():
    modules = [p for p in SPOOL.rglob("*.py") if p != HELPER]
    assert len(modules) >= 4  # the scan is looking at the spool's modules
    assert [hit for path in modules for hit in state_assignments(path)] == []


def test_the_bypass_scan_finds_a_state_change_written_by_hand(tmp_path):
    sneaky = tmp_path / "sneaky.py"
    sneaky.write_text(
        'SQL = ("UPDATE recipients SET updated_at = ?,"\n'
        "       \" state = 'queued' WHERE id = ?\")\n"
        "OK = \"UPDATE campaigns SET held = held + 1 WHERE state = 'held'\"\n"
        'F = f"UPDATE campaigns SET {col} = 1, state = ? WHERE id = ?"\n'
    )
    assert len(state_assignments(sneaky)) == 2
    assert state_assignments(HELPER)  # the helper is the one place that writes them


@pytest.mark.parametrize(
    ("table", "states"),
    [(CAMPAIGN_TRANSITIONS, CampaignState), (RECIPIENT_TRANSITIONS, RecipientState)],
)
def test_every_state_has_a_row_in_its_table(table, states):
    assert set(table) == set(states)


def test_a_move_the_table_forbids_is_refused_before_touching_the_database():
    with pytest.raises(IllegalTransition):
        transitions.move_recipients(
            None,  # type: ignore[arg-type]
            RecipientState.RELAYED,
            RecipientState.QUEUED,
            transitions.Rows("1"),
        )
    with pytest.raises(IllegalTransition):
        transitions.move_campaign(
            None,
            "c",
            (CampaignState.REJECTED,),
            CampaignState.OPEN,  # type: ignore[arg-type]
        )
    with pytest.raises(IllegalTransition):
        transitions.born(RecipientState.RELAYED)
