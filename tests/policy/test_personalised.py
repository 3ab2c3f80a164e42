"""Personalised campaigns: what is remembered per block never hides one recipient's leak.

The engine reads every copy of a personalised campaign (no two bodies are equal), and
remembers per block of text what depends only on that block (which pattern hints it
holds, a paragraph's language, a parsed MIME field). These tests send thousands of clean
copies through one engine, so every memo is warm with the template, and then one copy
whose greeting rendered empty, or that leaked a tag, in a block the others share or in
the one that differs: that copy must hold its campaign, with its recipient in evidence.
The memos stay within their bounds whatever the mail.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from gateway.mail import content as content_module
from gateway.mail.memo import Memo
from gateway.policy.engine import Engine
from gateway.policy.fixtures import CampaignSpec, campaign_for, facts_for, submission_for
from gateway.policy.loader import load_policies
from gateway.policy.registry import default_registry
from gateway.policy.rules import language, patterns
from gateway.policy.rules.patterns import Patterns
from tests.policy.personalised import HELP, NAMES, SECTION, copy

POLICIES = Path(__file__).resolve().parents[2] / "policies"
COPIES = 2_000


SPEC = CampaignSpec(key="december", category="newsletter", locale="en", size=COPIES + 1)


def verdict_of(engine: Engine, n: int, raw: bytes, rcpt: str):
    spec = SPEC.model_copy(update={"recipients": [rcpt], "received": n})
    sub = submission_for(raw, spec)
    full = replace(sub, report=engine.analyse(sub))
    campaign = campaign_for(full, spec)
    return engine.decide(campaign, full, facts_for(engine, campaign, full, spec))


@pytest.fixture(scope="module")
def warm() -> Engine:
    """One engine that has read COPIES clean copies of the campaign, none of them held."""
    registry = default_registry()
    engine = Engine(load_policies(POLICIES, registry), registry=registry)
    held = []
    for n in range(1, COPIES + 1):
        rcpt, raw = copy(n)
        verdict = verdict_of(engine, n, raw, rcpt)
        if verdict.hold:
            held.append((n, [f.message for f in verdict.findings]))
    assert held == []
    return engine


@pytest.mark.parametrize(
    ("greeting", "section", "kind", "shown"),
    [
        ("Hi ,", SECTION, "empty_personalisation", "Hi ,"),
        ("Dear {{FirstName}},", SECTION, "merge_tag", "{{FirstName}}"),
        # In a block every other copy shares word for word but one character: the block
        # differs, so it is read again.
        (None, SECTION.replace("Charts load", "Charts *|LOAD|*"), "merge_tag", "*|LOAD|*"),
    ],
    ids=["empty-name", "leaked-tag-in-greeting", "leaked-tag-in-template-block"],
)
def test_one_recipients_leak_among_thousands_of_clean_copies_holds(
    warm, greeting, section, kind, shown
):
    n = COPIES + 1
    rcpt, raw = copy(n, greeting=greeting, section=section)
    verdict = verdict_of(warm, n, raw, rcpt)
    assert verdict.hold
    [finding] = [f for f in verdict.findings if f.kind == kind]
    assert finding.rule == "merge-tags"
    assert finding.evidence["recipients"] == [rcpt]
    assert shown in str(finding.evidence["found"])
    # The next clean copy passes again: the leak was that copy's, not remembered as clean.
    rcpt, raw = copy(n + 1)
    assert not verdict_of(warm, n + 1, raw, rcpt).hold


def test_a_clean_copy_after_the_leaks_is_read_the_same_as_before(warm):
    rcpt, raw = copy(7)
    before = warm.analyse(submission_for(raw, SPEC.model_copy(update={"recipients": [rcpt]})))
    registry = default_registry()
    fresh = Engine(load_policies(POLICIES, registry), registry=registry)
    language._paragraphs.clear()
    content_module._FIELDS.clear()
    cold = fresh.analyse(submission_for(raw, SPEC.model_copy(update={"recipients": [rcpt]})))
    assert before.scans.keys() == cold.scans.keys()
    for rule, scan in before.scans.items():
        assert scan.hits == cold.scans[rule].hits, rule


def test_a_memo_keeps_at_most_its_size():
    memo: Memo[int] = Memo(8)
    computed = []
    for i in range(100):
        assert memo.get(f"block {i}", lambda text: computed.append(text) or len(text)) == len(
            f"block {i}"
        )
    assert len(memo) == 8
    assert memo.get("block 99", lambda _: -1) == len("block 99")  # kept: the newest
    assert memo.get("block 0", lambda _: -1) == -1  # forgotten: the oldest
    with pytest.raises(ValueError, match="at least one"):
        Memo(0)


def test_the_engines_memos_are_bounded(warm, monkeypatch):
    assert language._paragraphs.size == language.PARAGRAPH_MEMORY
    assert len(language._paragraphs) <= language.PARAGRAPH_MEMORY
    assert len(language._texts) <= language.TEXT_MEMORY
    assert len(content_module._FIELDS) <= content_module.HEADER_MEMORY
    # Pattern hints per block: at most BLOCK_MEMORY blocks, none longer than BLOCK_CHARS.
    monkeypatch.setattr(patterns, "BLOCK_MEMORY", 50)
    found = Patterns([("tag", r"\{\{[^}]*\}\}", True, ("{{",))])
    text = "\n\n".join(f"paragraph {i} with a {{{{tag}}}}" for i in range(500))
    assert len(list(found.finditer(text))) == 500
    assert 0 < len(found._blocks) <= 50
    long_block = "x" * (patterns.BLOCK_CHARS + 1) + " {{tag}}"
    found._blocks.clear()
    assert [m.group() for _, m in found.finditer(long_block)] == ["{{tag}}"]
    assert found._blocks == {}  # searched, never kept


def test_a_hint_that_spans_blocks_is_looked_for_in_the_whole_text():
    spanning = Patterns([("two", r"end\.\n\nstart", True, ("end.\n\nstart",))])
    assert [m.group() for _, m in spanning.finditer("the end.\n\nstart again")] == ["end.\n\nstart"]
    assert list(spanning.finditer("the end.\n\nno start")) == []


def test_copies_that_differ_in_their_greeting_share_one_language_reading(monkeypatch):
    read: list[str] = []
    detect = language._text
    monkeypatch.setattr(language, "_text", lambda words: read.append(words) or detect(words))
    language._texts.clear()
    language._paragraphs.clear()
    body = f"{SECTION}\n\nRead more below.\n\n{HELP}"

    def reading(text: str) -> tuple:
        found = language.detect(text)
        return found.language, found.probability, found.reliable, found.shares

    first = reading(f"Dear Ada Novak 1,\n\n{body}")
    whole_readings = len(read)
    for n in range(2, 50):
        assert reading(f"Dear {NAMES[n % 5]} {n},\n\n{body}") == first
    assert len(read) == whole_readings  # neither the whole nor a paragraph read again
    assert first[:1] + first[2:] == ("en", True, {"en": 1.0})
    # A name inside a paragraph of prose makes that copy's reading its own.
    language.detect(f"Dear Ada,\n\nThank you Esther Rossi for the years. {SECTION}\n\n{HELP}")
    assert len(read) > whole_readings


def test_a_body_mostly_of_short_lines_is_read_whole():
    lines = "\n\n".join(["Hola Ana,", "Rebajas de invierno", "Hasta el 50 %", "Compra ya"] * 3)
    found = language.detect(lines)
    compact = " ".join(language.clean(lines).split())
    assert (found.language, found.probability) == language._text(compact)[:2]
    assert found.shares == {}  # no paragraph of prose to share


def test_a_spanish_template_is_held_in_every_copy_of_an_english_campaign(monkeypatch):
    spanish = (
        "Este mes hemos renovado por completo las pantallas de informes. Los graficos cargan\n"
        "mas rapido, los filtros recuerdan lo que elegiste la ultima vez y cada tabla se\n"
        "puede exportar a una hoja de calculo con un solo clic."
    )
    registry = default_registry()
    engine = Engine(load_policies(POLICIES, registry), registry=registry)
    for n in (1, 2, 3):
        rcpt, raw = copy(n, section=spanish)
        raw = raw.replace(
            HELP.replace("\n", "\r\n").encode(), spanish.replace("\n", "\r\n").encode()
        )
        verdict = verdict_of(engine, n, raw, rcpt)
        assert [f.kind for f in verdict.findings if f.rule == "language"] == ["language_mismatch"]
        assert verdict.hold
