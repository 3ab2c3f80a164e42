"""Content analysis in child processes: the same reports, and a hang or a crash still holds.

Real `python -m gateway.policy.analysis_process` children, fed by `ProcessAnalysers`.
Misbehaviour comes from `tests.policy.misbehaving`, a registry the child imports by name.
"""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path

import pytest

from gateway.errors import Unanalysed
from gateway.mail.content import content_key
from gateway.mail.headers import HeaderBlock
from gateway.policy.analysis_process import ProcessAnalysers
from gateway.policy.engine import Engine
from gateway.policy.fixtures import CampaignSpec, submission_for
from gateway.policy.loader import load_policies
from gateway.policy.registry import default_registry
from gateway.settings import LogSettings
from tests.helpers import eventually
from tests.policy.misbehaving import misbehaving
from tests.policy.personalised import copy

POLICIES = Path(__file__).resolve().parents[2] / "policies"
SPEC = CampaignSpec(key="december", category="newsletter", locale="en", size=100)


def engine() -> Engine:
    registry = default_registry()
    return Engine(load_policies(POLICIES, registry), registry=registry)


def submission(raw: bytes, rcpt: str = "reader@example.org"):
    """A submission as the admitter makes it: header block parsed once, content key set."""
    sub = submission_for(raw, SPEC.model_copy(update={"recipients": [rcpt]}))
    headers = HeaderBlock.parse(sub.content)
    return type(sub)(
        **{
            **{f: getattr(sub, f) for f in sub.__slots__},
            "header_fields": headers.fields,
            "content_key": content_key(headers),
        }
    )


def subject(text: str) -> bytes:
    return (
        f"From: news@shop.test\r\nSubject: {text}\r\nMessage-ID: <{text}@shop.test>\r\n\r\n"
        "Hello reader, the December letter is here.\r\n"
    ).encode()


async def analysers(processes: int = 1, timeout: float = 5.0, **options) -> ProcessAnalysers:
    pool = ProcessAnalysers(processes, timeout, log_settings=LogSettings(format="json"), **options)
    await pool.open()
    return pool


async def test_children_read_personalised_copies_as_the_gateway_would():
    local, remote = engine(), engine()
    pool = await analysers(processes=2)
    try:
        copies = [copy(n) for n in range(1, 41)]
        copies.append(copy(41, greeting="Dear {{FirstName}},"))
        subs = [submission(raw, rcpt) for rcpt, raw in copies]
        reports = await asyncio.gather(*(pool.analyse(remote, sub) for sub in subs))
    finally:
        await pool.close()
    for sub, report in zip(subs, reports, strict=True):
        expected = local.analyse(sub)
        assert report.analysed
        assert report.fingerprint == expected.fingerprint
        assert {r: s.hits for r, s in report.scans.items()} == {
            r: s.hits for r, s in expected.scans.items()
        }
    assert any(hit for hit in reports[-1].scans["merge-tags"].hits)
    assert not any(reports[0].scans["merge-tags"].hits)
    # The gateway's engine remembered the clean readings: the same content is recalled
    # on the loop, with no trip to a child.
    assert remote.recall(subs[0]) is not None
    assert remote.recall(subs[-1]) is not None  # a finding is a clean reading too


async def test_a_hanging_analysis_is_cut_off_and_its_child_replaced():
    replaced: list[str] = []
    pool = await analysers(timeout=0.5, registry=misbehaving, on_replaced=replaced.append)
    try:
        [before] = pool.pids
        with pytest.raises(Unanalysed, match=r"took longer than 0\.5 s"):
            await pool.analyse(engine(), submission(subject("HANG")))
        report = await pool.analyse(engine(), submission(subject("after the hang")))
        [after] = pool.pids
    finally:
        await pool.close()
    assert report.analysed
    assert not report.error
    assert after != before
    assert replaced == ["timeout"]


async def test_a_child_that_dies_mid_reading_holds_that_message_only():
    replaced: list[str] = []
    pool = await analysers(registry=misbehaving, on_replaced=replaced.append)
    try:
        with pytest.raises(Unanalysed, match=r"analysis process exited \(3\)"):
            await pool.analyse(engine(), submission(subject("DIE")))
        report = await pool.analyse(engine(), submission(subject("after the crash")))
    finally:
        await pool.close()
    assert report.analysed
    assert replaced == ["exited"]


async def test_a_child_that_died_idle_is_replaced_before_it_is_handed_a_message():
    replaced: list[str] = []
    pool = await analysers(on_replaced=replaced.append)
    try:
        [before] = pool.pids
        os.kill(before, signal.SIGKILL)  # the OOM killer, say, between two messages
        await eventually(lambda: pool._children[0].exited)
        report = await pool.analyse(engine(), submission(subject("after the kill")))
        [after] = pool.pids
    finally:
        await pool.close()
    assert report.analysed  # not held: the child was dead before the message reached it
    assert not report.error
    assert after != before
    assert replaced == ["exited"]


async def test_time_waiting_for_a_free_child_does_not_count_against_the_budget():
    # One child, eight slow readings (0.3 s each, budget 1.5 s): the
    # last waits 2.1 s for the seven before it, and must still be read.
    pool = await analysers(timeout=1.5, registry=misbehaving)
    try:
        subs = [submission(subject(f"SLOW {n}")) for n in range(8)]
        reports = await asyncio.gather(*(pool.analyse(engine(), sub) for sub in subs))
    finally:
        await pool.close()
    assert all(r.analysed and not r.error for r in reports)


async def test_no_free_child_within_the_queue_wait_is_unanalysed():
    pool = await analysers(timeout=5.0, registry=misbehaving, queue_wait=0.2)
    try:
        slow = asyncio.create_task(pool.analyse(engine(), submission(subject("SLOW"))))
        await eventually(lambda: pool.busy == 1)
        with pytest.raises(Unanalysed, match=r"no analysis process was free for 0\.2 s"):
            await pool.analyse(engine(), submission(subject("waiting")))
        assert (await slow).analysed
    finally:
        await pool.close()


async def test_a_reloaded_policy_set_reaches_the_children(tmp_path):
    (tmp_path / "p.yaml").write_text(
        "version: 1\nrules:\n  - id: only-markers\n    kind: test_markers\n"
    )
    registry = default_registry()
    reloaded = Engine(load_policies(tmp_path, registry), registry=registry)
    pool = await analysers()
    try:
        first = await pool.analyse(engine(), submission(subject("one")))
        second = await pool.analyse(reloaded, submission(subject("two")))
    finally:
        await pool.close()
    assert "merge-tags" in first.scans
    assert set(second.scans) == {"only-markers"}


async def test_submissions_without_a_content_key_are_told_apart():
    # Built without the admitter (no header block, no key): each is keyed by its content.
    plain = [submission_for(subject(text), SPEC) for text in ("Hello {{FirstName}}", "Hello")]
    gateway_engine = engine()
    pool = await analysers()
    try:
        tagged, clean = [await pool.analyse(gateway_engine, sub) for sub in plain]
    finally:
        await pool.close()
    assert tagged.scans["merge-tags"].hits
    assert not clean.scans["merge-tags"].hits
    assert not gateway_engine.recall(plain[1]).scans["merge-tags"].hits


async def test_closing_with_a_reading_in_hand_ends_it_and_leaves_no_process():
    pool = await analysers(registry=misbehaving)
    [pid] = pool.pids
    reading = asyncio.create_task(pool.analyse(engine(), submission(subject("HANG"))))
    await eventually(lambda: pool.busy == 1)
    await pool.close()
    with pytest.raises(Unanalysed, match="exited"):
        await reading
    assert pool.pids == []
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
