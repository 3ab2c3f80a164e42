"""Campaign resolution, declarations and the header edits made before relay."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest
from prometheus_client import CollectorRegistry

from gateway.admission.admitter import Admitter
from gateway.admission.resolve import normalise_subject, resolve
from gateway.errors import MessageRefused
from gateway.mail.content import content_key
from gateway.mail.headers import HeaderBlock
from gateway.metrics import Metrics
from gateway.model import ContentReport, Inbound, Needs, Verdict
from gateway.settings import CampaignSettings
from gateway.spool import SqliteSpool
from tests.spool.records import pass_all

SETTINGS = CampaignSettings()


def admitter_for(spool, decider, **options) -> Admitter:
    """An admitter on the test settings with its own metrics registry."""
    metrics = Metrics.create(CollectorRegistry())
    return Admitter(
        spool, SETTINGS, decider=decider, metrics=metrics, hostname="gw.test", **options
    )


def inbound(content: bytes, client: str = "127.0.0.0/8") -> Inbound:
    return Inbound(
        ingress="smtp",
        client=client,
        mail_from="News@Shop.test",
        rcpt_tos=("a@x.test",),
        content=content,
    )


def test_first_present_key_header_names_the_campaign():
    content = b"X-Mailgun-Campaign-Id: mg-7\r\nX-Campaign-ID: spring-24\r\nSubject: Hi\r\n\r\nbody"
    ref = resolve(HeaderBlock.parse(content), inbound(content), SETTINGS)
    assert (ref.key, ref.implicit) == ("spring-24", False)
    second = CampaignSettings(key_headers=("X-Mailgun-Campaign-Id", "X-Campaign-ID"))
    assert resolve(HeaderBlock.parse(content), inbound(content), second).key == "mg-7"


def test_without_key_header_the_campaign_is_implicit_by_sender_and_subject():
    a = b"Subject: Spring   SALE\r\n\r\nbody"
    b = b"Subject: spring sale\r\n\r\nother body"
    ref_a = resolve(HeaderBlock.parse(a), inbound(a), SETTINGS)
    ref_b = resolve(HeaderBlock.parse(b), inbound(b), SETTINGS)
    assert ref_a.implicit
    assert ref_a.key == ref_b.key == "implicit:news@shop.test:spring sale"


def test_rfc2047_subjects_are_decoded_before_normalising():
    content = b"Subject: =?utf-8?q?Gr=C3=BC=C3=9Fe?=\r\n\r\nbody"
    ref = resolve(HeaderBlock.parse(content), inbound(content), SETTINGS)
    assert ref.subject == "Grüße"
    assert normalise_subject(ref.subject) == "grüsse"


def test_declaration_headers_are_read():
    content = b"X-Declared-Size: 200\r\nX-Campaign-Category: Win-Back\r\nX-Campaign-Locale: en-US\r\n\r\nb"
    ref = resolve(HeaderBlock.parse(content), inbound(content), SETTINGS)
    assert (ref.declaration.size, ref.declaration.category, ref.declaration.locale) == (
        200,
        "win-back",
        "en-US",
    )


def test_a_declared_size_that_is_not_a_number_is_left_undeclared():
    content = b"X-Declared-Size: about 200\r\n\r\nb"
    assert resolve(HeaderBlock.parse(content), inbound(content), SETTINGS).declaration.size is None


async def test_admitter_strips_declarations_keeps_the_key_and_adds_missing_headers(tmp_path):
    spool = SqliteSpool(tmp_path / "spool.db")
    await spool.open()
    try:
        admitter = admitter_for(spool, pass_all, clock=lambda: 1_800_000_000.0)
        content = (
            b"X-Campaign-ID: spring\r\nX-Declared-Size: 200\r\nX-Campaign-Category: news\r\n"
            b"X-Campaign-Locale: en\r\nSubject: Hi\r\n\r\nX-Declared-Size: in the body stays\r\n"
        )
        admission = await admitter.admit(inbound(content))
        [delivery] = await spool.claim("w", 1_800_000_000.0, 1, 60)
        campaign = await spool.campaign(admission.campaign_id)
    finally:
        await spool.close()
    relayed = delivery.content
    assert relayed.startswith(
        b"Date: Fri, 15 Jan 2027 08:00:00 +0000\r\n"
        b"Message-ID: <" + admission.message_id.encode() + b"@gw.test>\r\n"
        b"X-Campaign-ID: spring\r\nSubject: Hi\r\n\r\n"
    )
    assert relayed.endswith(b"\r\n\r\nX-Declared-Size: in the body stays\r\n")
    assert campaign.declared.size == 200
    assert campaign.key == "spring"


def test_header_block_keeps_folding_and_bare_lf_messages():
    content = b"Subject: a long\r\n  folded subject\r\nX-A: 1\r\n\r\nbody\r\n"
    block = HeaderBlock.parse(content)
    assert block.get("subject") == "a long  folded subject"  # RFC 5322: unfolding drops only CRLF
    assert block.to_bytes() == content
    assert (
        block.without(frozenset({"x-a"})).to_bytes()
        == b"Subject: a long\r\n  folded subject\r\n\r\nbody\r\n"
    )
    lf = b"Subject: lf\nX-B: 2\n\nbody\n"
    assert HeaderBlock.parse(lf).to_bytes() == lf
    assert HeaderBlock.parse(lf).get("x-b") == "2"


def test_message_without_headers_or_without_body():
    assert HeaderBlock.parse(b"\r\njust a body").fields == ()
    headers_only = HeaderBlock.parse(b"Subject: only\r\n")
    assert headers_only.get("Subject") == "only"
    assert headers_only.rest == b""


class _Stuck:
    """A decider whose content analysis blocks until released (or raises), then passes."""

    def __init__(self, *, fail: bool = False) -> None:
        self.release = threading.Event()
        self.fail = fail
        self.reports: list[ContentReport] = []

    def analyse(self, submission):
        if self.fail:
            raise RuntimeError("decoder crashed")
        self.release.wait(10)
        return ContentReport(analysed=True)

    def recall(self, submission):
        return None  # nothing read before: every message goes to an analysis thread

    def needs(self, campaign):
        return Needs()

    def decide(self, campaign, submission, facts):
        self.reports.append(submission.report)
        return Verdict(hold=bool(submission.report.error))


async def admit_with(tmp_path, decider: _Stuck, timeout: float):
    spool = SqliteSpool(tmp_path / "spool.db")
    await spool.open()
    admitter = admitter_for(spool, decider, content_timeout=timeout)
    try:
        return await admitter.admit(inbound(b"Subject: Hi\r\n\r\nbody\r\n"))
    finally:
        decider.release.set()
        await admitter.close()
        await spool.close()


async def test_content_analysis_past_its_time_budget_holds_instead_of_passing(tmp_path):
    decider = _Stuck()
    admission = await admit_with(tmp_path, decider, timeout=0.05)
    assert admission.held
    [report] = decider.reports
    assert report.error == "content analysis took longer than 0.05 s"


async def test_content_analysis_that_crashes_holds_instead_of_passing(tmp_path):
    decider = _Stuck(fail=True)
    admission = await admit_with(tmp_path, decider, timeout=5)
    assert admission.held
    assert decider.reports[0].error == "content analysis failed: RuntimeError: decoder crashed"


async def test_content_analysis_runs_off_the_event_loop(tmp_path):
    seen: list[str] = []

    class Recording(_Stuck):
        def analyse(self, submission):
            seen.append(threading.current_thread().name)
            return ContentReport(analysed=True)

    decider = Recording()
    admission = await admit_with(tmp_path, decider, timeout=5)
    assert not admission.held
    assert seen[0].startswith("content")
    assert seen[0] != threading.main_thread().name


async def test_time_queued_behind_other_messages_does_not_count_against_the_budget(tmp_path):
    # One analysis thread, three messages at once, each analysis inside its 0.5 s budget:
    # the third waits 0.6 s for the two before it, and must still pass.
    class Slow(_Stuck):
        def analyse(self, submission):
            time.sleep(0.3)  # a slow analysis, within budget
            return ContentReport(analysed=True)

    decider = Slow()
    spool = SqliteSpool(tmp_path / "spool.db")
    await spool.open()
    admitter = admitter_for(spool, decider, content_timeout=0.5, content_workers=1)
    try:
        results = await asyncio.gather(
            *(admitter.admit(inbound(b"Subject: Hi\r\n\r\nbody\r\n")) for _ in range(3))
        )
    finally:
        await admitter.close()
        await spool.close()
    assert [a.held for a in results] == [False, False, False]
    assert all(not r.error for r in decider.reports)


async def test_content_read_before_is_recalled_on_the_event_loop(tmp_path):
    recalled = ContentReport(analysed=True, elapsed=0.001)

    class Remembering(_Stuck):
        def recall(self, submission):
            return recalled

        def analyse(self, submission):
            raise AssertionError("recalled content must not be read again")

    decider = Remembering()
    admission = await admit_with(tmp_path, decider, timeout=5)
    assert not admission.held
    assert decider.reports == [recalled]


async def test_the_decider_gets_the_header_block_parsed_once_and_the_content_key(tmp_path):
    seen = []

    class Looking(_Stuck):
        def recall(self, submission):
            seen.append(submission)
            return ContentReport()

    await admit_with(tmp_path, Looking(), timeout=5)
    [submission] = seen
    assert submission.header_fields == HeaderBlock.parse(submission.content).fields
    assert submission.content_key == content_key(submission.content)
    assert submission.header_fields[0][0] == "date"  # the edited block, not the one sent


async def test_admit_all_stores_every_message_in_one_transaction_or_none(tmp_path):
    spool = SqliteSpool(tmp_path / "spool.db")
    await spool.open()
    try:
        admitter = admitter_for(spool, pass_all)
        good = b"X-Campaign-ID: one\r\nSubject: Hi\r\n\r\nbody"
        bad = b"X-Campaign-ID: one\r\nX-Declared-Size: lots\r\nSubject: Hi\r\n\r\nbody"
        with pytest.raises(MessageRefused) as refused:
            await admitter.admit_all([inbound(good), inbound(bad)])
        assert (refused.value.index, refused.value.header) == (1, "X-Declared-Size")
        assert await spool.campaigns() == []

        admissions = await admitter.admit_all([inbound(good), inbound(good), inbound(good)])
        assert len({a.message_id for a in admissions}) == 3
        assert len({a.campaign_id for a in admissions}) == 1
        [campaign] = await spool.campaigns()
        assert campaign.counters.received == 3
    finally:
        await admitter.close()
        await spool.close()


def test_an_ingress_may_name_the_subject_an_implicit_campaign_is_keyed_by():
    content = b"Subject: Hi Ada\r\n\r\nbody"
    given = Inbound("http", "platform", "news@shop.test", ("a@x.test",), content, subject="Hi -n-")
    ref = resolve(HeaderBlock.parse(content), given, SETTINGS)
    assert ref.key == "implicit:news@shop.test:hi -n-"
    assert ref.subject == "Hi Ada"  # what the campaign shows: its first message's
