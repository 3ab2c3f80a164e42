"""The admission stage: from an inbound message to a durable submission.

Reads as steps: parse the header block once, refuse key or declaration headers that can
never be valid (`check_headers`), resolve the campaign (`resolve`), make the header edits
an MTA makes on the way (declaration headers stripped, missing Date and Message-ID
added), analyse the content off the event loop, then admit it in one spool transaction
(`steps.admit`). It never talks SMTP.

Content analysis (MIME decoding and the content rules' scanners) is CPU work, so it runs
off the event loop (`analysers`: threads, or processes of their own) before the spool
transaction, within a time budget. A crash or a timeout does not pass the message: the
report then carries the error, and the decider holds the campaign (fail closed).
"""

from __future__ import annotations

import asyncio
import hashlib
import socket
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from datetime import UTC, datetime
from email.utils import format_datetime

import structlog

from gateway.admission import steps
from gateway.admission.analysers import ThreadAnalysers
from gateway.admission.resolve import DECLARATION_HEADERS, check_headers, comparable, resolve
from gateway.errors import MessageRefused, Unanalysed
from gateway.mail.addresses import address_hash
from gateway.mail.content import content_key
from gateway.mail.headers import HeaderBlock
from gateway.metrics import Metrics
from gateway.model import (
    Admission,
    Analysers,
    CampaignRef,
    ContentReport,
    Decider,
    Inbound,
    Submission,
    new_id,
)
from gateway.settings import CampaignSettings
from gateway.spool.base import Storage

log = structlog.get_logger(__name__)


def resend_key(inbound: Inbound) -> bytes:
    """Digest a transaction as received, for `Submission.resend_key`.

    A retry of it (the same client, envelope and bytes, Message-ID included) has the same
    key; a re-run of the campaign, with new Message-IDs, does not.
    """
    digest = hashlib.blake2b(digest_size=16)
    for part in (inbound.client, inbound.mail_from, *inbound.rcpt_tos):
        digest.update(part.encode("utf-8", "surrogateescape") + b"\0")
    digest.update(inbound.content)
    return digest.digest()


class Admitter:
    """Turns inbound messages into durable submissions, one spool commit each."""

    def __init__(
        self,
        spool: Storage,
        settings: CampaignSettings,
        *,
        decider: Decider,
        metrics: Metrics,
        hostname: str = "",
        casefold_local: bool = True,
        clock: Callable[[], float] = time.time,
        on_admitted: Callable[[Admission], None] | None = None,
        content_timeout: float = 5.0,
        content_workers: int = 2,
        analysers: Analysers | None = None,
    ) -> None:
        """`analysers` run the content analysis; by default `content_workers` threads."""
        self._spool = spool
        self._metrics = metrics
        self._settings = settings
        self._hostname = hostname or socket.getfqdn()
        self._decider = decider
        self._casefold = casefold_local
        self._clock = clock
        self._on_admitted = on_admitted
        self._strip = frozenset(
            name.lower() for name in DECLARATION_HEADERS if settings.strip_declaration_headers
        )
        self._analysers = analysers or ThreadAnalysers(content_workers, content_timeout)

    async def admit(self, inbound: Inbound) -> Admission:
        """Resolve, edit and spool one message; return once the commit is durable."""
        submission, decider = await self._prepare(inbound)
        window = self._settings.implicit_window
        admission = await self._spool.transact(
            lambda tx: steps.admit(tx, submission, decider, window)
        )
        self._report(admission, submission.campaign.key, len(inbound.rcpt_tos))
        if self._on_admitted is not None:
            self._on_admitted(admission)
        return admission

    async def admit_all(self, inbounds: Sequence[Inbound]) -> list[Admission]:
        """Admit several messages in one spool transaction: all of them are durable, or none.

        The HTTP send API's request is one unit for its client: each personalization is a
        message, and a refusal or a failed commit of any leaves nothing stored. A
        `MessageRefused` says which message (`index`); a `CampaignRejected` or
        `SpoolError` undoes the whole transaction.
        """
        decider = self._decider  # one policy set judges the whole request
        submissions = []
        for index, inbound in enumerate(inbounds):
            try:
                submissions.append(self._submission(inbound))
            except MessageRefused as exc:
                raise MessageRefused(exc.header, exc.reason, index=index) from None
        reports = await asyncio.gather(*(self._analyse(decider, sub) for sub in submissions))
        analysed = [
            replace(sub, report=report) for sub, report in zip(submissions, reports, strict=True)
        ]
        window = self._settings.implicit_window
        admissions = await self._spool.transact(
            lambda tx: [steps.admit(tx, sub, decider, window) for sub in analysed]
        )
        for admission, sub in zip(admissions, analysed, strict=True):
            self._report(admission, sub.campaign.key, len(sub.rcpt_tos))
        if self._on_admitted is not None and admissions:
            self._on_admitted(admissions[-1])
        return admissions

    async def preflight(
        self, inbound: Inbound, hashes: Sequence[int] | None = None
    ) -> tuple[CampaignRef, Admission]:
        """Admit one message as `admit` would, and undo it: the same findings, nothing kept.

        The rehearsal joins the campaign its key names (with that campaign's real
        counters), looks up segments and sign-offs and decides, in a transaction that is
        rolled back; nothing is stored, counted or relayed. `hashes`, when given, are the
        recipients' address hashes (a segment's members, whose addresses are not kept).
        """
        submission, decider = await self._prepare(inbound)
        if hashes is not None:
            submission = replace(submission, hashes=tuple(hashes))
        window = self._settings.implicit_window
        admission = await self._spool.rehearse(
            lambda tx: steps.admit(tx, submission, decider, window)
        )
        return submission.campaign, admission

    async def _prepare(self, inbound: Inbound) -> tuple[Submission, Decider]:
        """Parse, check, resolve, edit and analyse one message: what precedes the spool."""
        submission = self._submission(inbound)
        decider = self._decider  # read once: a policy reload swaps it between messages
        report = await self._analyse(decider, submission)
        return replace(submission, report=report), decider

    def _submission(self, inbound: Inbound) -> Submission:
        """Parse, check, resolve and edit one message (`MessageRefused` before any write)."""
        now = self._clock()
        message_id = new_id(now)
        headers = HeaderBlock.parse(inbound.content)
        check_headers(headers, self._settings)  # raises MessageRefused, before any write
        ref = resolve(headers, inbound, self._settings)
        edited = self._edit(headers, message_id, now, inbound.trace)
        content = edited.to_bytes()
        mailboxes = tuple(comparable(rcpt, self._casefold) for rcpt in inbound.rcpt_tos)
        return Submission(
            message_id=message_id,
            client=inbound.client,
            mail_from=inbound.mail_from,
            rcpt_tos=inbound.rcpt_tos,
            content=content,
            campaign=ref,
            received_at=now,
            ingress=inbound.ingress,
            mailboxes=mailboxes,
            hashes=tuple(address_hash(box) for box in mailboxes),
            header_fields=edited.fields,
            content_key=content_key(edited),
            resend_key=inbound.resend_key
            or (resend_key(inbound) if headers.has("Message-ID") else None),
            resend_since=now - inbound.resend_window if inbound.resend_window else None,
        )

    def use_decider(self, decider: Decider) -> None:
        """Switch to another decider (a reloaded policy set) for later messages."""
        self._decider = decider

    @property
    def analysers(self) -> Analysers:
        """What runs the content analysis (threads or processes)."""
        return self._analysers

    async def open(self) -> None:
        """Start the content analysers (processes start here, not with the first message)."""
        await self._analysers.open()

    async def close(self) -> None:
        """Stop the content analysers; a stuck one is abandoned."""
        await self._analysers.close()

    async def _analyse(self, decider: Decider, submission: Submission) -> ContentReport:
        """Run the decider's content analysis off the event loop, within the time budget.

        Content read before (a campaign's body sent again) is recalled on the loop: the
        hop to a worker and back would cost more than the look-up.
        """
        known = decider.recall(submission)
        if known is not None:
            return known
        started = time.perf_counter()
        try:
            return await self._analysers.analyse(decider, submission)
        except Unanalysed as exc:
            error = str(exc)
        except Exception as exc:  # noqa: BLE001 - any failure holds, never passes
            error = f"content analysis failed: {type(exc).__name__}: {exc}"
        log.warning("content_unchecked", message=submission.message_id, error=error)
        return ContentReport(error=error, elapsed=time.perf_counter() - started)

    def _report(self, admission: Admission, key: str, recipients: int) -> None:
        bound = log.bind(message=admission.message_id, campaign=admission.campaign_id, key=key)
        if admission.resent:  # stored, counted and reported the first time
            bound.info("message_resent", recipients=recipients, held=admission.held)
            return
        bound.info("message_accepted", recipients=recipients, held=admission.held)
        for finding in admission.findings:
            self._metrics.policy_findings.labels(rule=finding.rule, mode=finding.mode).inc()
            bound.info(
                "policy_finding",
                rule=finding.rule,
                kind=finding.kind,
                mode=finding.mode,
                finding=finding.message,
            )
        if admission.tripped:
            rules = sorted({f.rule for f in admission.findings if f.mode == "enforce"})
            for rule in rules:
                self._metrics.campaign_holds.labels(rule=rule).inc()
            bound.warning(
                "campaign_held", rules=rules, actor="policy", recipients=admission.held_recipients
            )

    def _edit(self, headers: HeaderBlock, message_id: str, now: float, trace: str) -> HeaderBlock:
        """Strip declarations and add what an MTA adds when the sender left it out."""
        added = [trace] if trace else []
        if not headers.has("Date"):
            added.append(f"Date: {format_datetime(datetime.fromtimestamp(now, UTC))}")
        if not headers.has("Message-ID"):
            added.append(f"Message-ID: <{message_id}@{self._hostname}>")
        return headers.without(self._strip).prepend(*added)
