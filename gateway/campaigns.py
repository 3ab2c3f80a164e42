"""Campaign resolution and admission: from an inbound message to a durable submission.

Owns DESIGN.md §2: which campaign a message belongs to (key header list, implicit
campaigns, client scoping), what the sender declared, and the header edits an MTA makes
on the way (declaration headers stripped, missing Date/Message-ID added). It hands the
result to the spool with the campaign-level decision function; it never talks SMTP.

Content analysis (MIME decoding and the content rules' scanners) is CPU work, so it runs
on a small thread pool before the spool transaction, within a time budget. A crash or a
timeout does not pass the message: the report then carries the error, and the decider
holds the campaign (fail closed).
"""

from __future__ import annotations

import asyncio
import re
import socket
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from datetime import UTC, datetime
from email.utils import format_datetime

import structlog

from gateway.content import ContentReport
from gateway.metrics import Metrics
from gateway.mime import HeaderBlock
from gateway.model import (
    Admission,
    CampaignRef,
    Decider,
    Declaration,
    Inbound,
    PassAll,
    Submission,
    new_id,
)
from gateway.segments import address_hash, normalise_address
from gateway.settings import CampaignSettings
from gateway.spool.base import Spool

log = structlog.get_logger(__name__)

QUEUE_WAIT = 60.0  # seconds a message may wait for an analysis thread before it is held

DECLARATION_HEADERS = ("X-Declared-Size", "X-Campaign-Category", "X-Campaign-Locale")
_SPACES = re.compile(r"\s+")

__all__ = ["DECLARATION_HEADERS", "Admitter", "normalise_subject", "resolve"]


def normalise_subject(subject: str) -> str:
    """Fold case and whitespace so that cosmetic differences do not split a campaign."""
    return _SPACES.sub(" ", subject).strip().casefold()


def comparable(address: str, casefold_local: bool = True) -> str:
    """Return how a recipient is compared with others and with segments."""
    # An address a segment could not hold still needs a stable form for duplicates.
    return normalise_address(address, casefold_local) or address.strip().casefold()


def read_declaration(headers: HeaderBlock) -> Declaration:
    """Read the declaration headers; a size that is not a whole number is left undeclared."""
    size_text = headers.get("X-Declared-Size")
    size = int(size_text) if size_text and size_text.strip().isdigit() else None
    if size_text is not None and size is None:
        log.warning("declared_size_invalid", value=size_text)
    return Declaration(
        size=size,
        category=(headers.get("X-Campaign-Category") or "").strip().lower() or None,
        locale=(headers.get("X-Campaign-Locale") or "").strip() or None,
    )


def resolve(headers: HeaderBlock, inbound: Inbound, settings: CampaignSettings) -> CampaignRef:
    """Work out the campaign of a message (DESIGN.md §2)."""
    subject = headers.get("Subject") or ""
    declaration = read_declaration(headers)
    for name in settings.key_headers:
        value = headers.get(name)
        if value and value.strip():
            return CampaignRef(
                client=inbound.client,
                key=value.strip(),
                implicit=False,
                sender=inbound.mail_from,
                subject=subject,
                declaration=declaration,
            )
    key = f"implicit:{inbound.mail_from.lower()}:{normalise_subject(subject)}"
    return CampaignRef(
        client=inbound.client,
        key=key,
        implicit=True,
        sender=inbound.mail_from,
        subject=subject,
        declaration=declaration,
    )


class Admitter:
    """Turns inbound messages into durable submissions, one spool commit each."""

    def __init__(
        self,
        spool: Spool,
        settings: CampaignSettings,
        *,
        hostname: str = "",
        decider: Decider | None = None,
        casefold_local: bool = True,
        metrics: Metrics | None = None,
        clock: Callable[[], float] = time.time,
        on_admitted: Callable[[Admission], None] | None = None,
        content_timeout: float = 5.0,
        content_workers: int = 2,
    ) -> None:
        self._spool = spool
        self._metrics = metrics or Metrics.create()
        self._settings = settings
        self._hostname = hostname or socket.getfqdn()
        self._decider: Decider = decider or PassAll()
        self._casefold = casefold_local
        self._clock = clock
        self._on_admitted = on_admitted
        self._strip = frozenset(
            name.lower() for name in DECLARATION_HEADERS if settings.strip_declaration_headers
        )
        self._content_timeout = content_timeout
        # Threads never die when a wait times out, so a stuck analysis occupies one worker;
        # the pool bounds how many can pile up, and later messages time out (and hold).
        self._analysers = ThreadPoolExecutor(content_workers, thread_name_prefix="content")

    async def admit(self, inbound: Inbound) -> Admission:
        """Resolve, edit and spool one message; return once the commit is durable."""
        now = self._clock()
        message_id = new_id(now)
        headers = HeaderBlock.parse(inbound.content)
        ref = resolve(headers, inbound, self._settings)
        content = self._edit(headers, message_id, now, inbound.trace).to_bytes()
        mailboxes = tuple(comparable(rcpt, self._casefold) for rcpt in inbound.rcpt_tos)
        submission = Submission(
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
        )
        decider = self._decider  # read once: a policy reload swaps it between messages
        report = await self._analyse(decider, submission)
        submission = replace(submission, report=report)
        admission = await self._spool.accept(submission, decider, self._settings.implicit_window)
        self._report(admission, ref.key, len(inbound.rcpt_tos))
        if self._on_admitted is not None:
            self._on_admitted(admission)
        return admission

    def use_decider(self, decider: Decider) -> None:
        """Switch to another decider (a reloaded policy set) for later messages."""
        self._decider = decider

    def close(self) -> None:
        """Stop the analysis threads; a stuck one is left to die with the process."""
        self._analysers.shutdown(wait=False, cancel_futures=True)

    async def _analyse(self, decider: Decider, submission: Submission) -> ContentReport:
        """Run the decider's content analysis off the event loop, within the time budget.

        Content read before (a campaign's body sent again) is recalled on the loop: the
        hop to a thread and back would cost more than the look-up.
        """
        known = decider.recall(submission)
        if known is not None:
            return known
        loop = asyncio.get_running_loop()
        started = time.perf_counter()
        running = asyncio.Event()

        def analyse() -> ContentReport:
            loop.call_soon_threadsafe(running.set)
            return decider.analyse(submission)

        try:
            work = loop.run_in_executor(self._analysers, analyse)
            # The budget is the analysis's own: time queued behind a burst of other messages
            # is backpressure, not a reason to hold. A pool that never frees up still holds.
            await asyncio.wait_for(running.wait(), QUEUE_WAIT)
            return await asyncio.wait_for(work, self._content_timeout)
        except TimeoutError:
            error = f"content analysis took longer than {self._content_timeout:g} s"
        except Exception as exc:  # noqa: BLE001 - any failure holds, never passes
            error = f"content analysis failed: {type(exc).__name__}: {exc}"
        log.warning("content_unchecked", message=submission.message_id, error=error)
        return ContentReport(error=error, elapsed=time.perf_counter() - started)

    def _report(self, admission: Admission, key: str, recipients: int) -> None:
        bound = log.bind(message=admission.message_id, campaign=admission.campaign_id, key=key)
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
