"""Preflight: every finding a message would raise, before anyone sends it.

`POST /api/v1/preflight` takes a message (raw RFC 5322), what it would be declared as and
its audience, and answers with the findings and whether the campaign would be held. It
runs the real admission (`Admitter.preflight`: the same parsing, campaign resolution,
content analysis, look-ups and rules as a send) in a spool transaction that is rolled
back, so it stores, counts and relays nothing. A platform's CI can check a template this
way before the send; `sendbrake preflight FILE.eml` is the same call.

Whose campaign it joins: by default a client of its own (`preflight`), so the message is
judged as the first of a new campaign; name the sending `client` (an SMTP user, or the
allowed network such as `127.0.0.0/8`) to judge it as the next message of that client's
campaign with the same key, with the counters that campaign has now.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from email.utils import getaddresses

from aiohttp import web

from gateway.admission.resolve import DECLARATION_HEADERS
from gateway.errors import CampaignRejected, MessageRefused
from gateway.mail.addresses import mailbox_problem
from gateway.mail.headers import HeaderBlock
from gateway.model import Admission, CampaignRef, Inbound
from gateway.ops import routes
from gateway.ops import schemas as s
from gateway.ops.auth import Gate
from gateway.ops.bodies import PreflightBody
from gateway.ops.exchange import read_body, respond, wrong
from gateway.ops.openapi import Handlers
from gateway.spool.base import Segments

Rehearse = Callable[[Inbound, Sequence[int] | None], Awaitable[tuple[CampaignRef, Admission]]]
PREFLIGHT_CLIENT = "preflight"
MAX_SEGMENT_AUDIENCE = 200_000  # members a rehearsal stores (and rolls back) at once
MEMBER_DOMAIN = "segment-member.invalid"  # RFC 2606: names no real mailbox


@dataclass(eq=False)  # handlers are bound methods: keep identity hashing
class PreflightApi(Handlers):
    """The handler of POST /preflight."""

    gate: Gate
    spool: Segments
    rehearse: Rehearse

    ROUTES = routes.PREFLIGHT

    async def preflight(self, request: web.Request) -> web.Response:
        """POST /preflight: the findings a send of this message would raise; nothing kept."""
        await self.gate.caller(request, "preflight", "preflight", "preflight")
        body = await read_body(request, PreflightBody)
        content = declared(body)
        headers = HeaderBlock.parse(content)
        hashes = None if body.segment is None else await self._members(body.segment)
        if hashes is not None:  # a stand-in address per member; rules read their hashes
            recipients = [f"member-{i}@{MEMBER_DOMAIN}" for i in range(len(hashes))]
        else:
            recipients = body.recipients or addresses(headers, "To", "Cc")
        if not recipients:
            detail = "the message has no To or Cc address"
            raise wrong("recipients", "required", f"give the audience: {detail}")
        for index, address in enumerate(recipients):
            if problem := mailbox_problem(address):
                raise wrong(f"recipients.{index}", problem, f"recipient {problem}")
        mail_from = body.mail_from or next(iter(addresses(headers, "From")), "")
        if problem := mailbox_problem(mail_from):
            raise wrong("mail_from", problem or "required", f"the envelope sender {problem}")
        inbound = Inbound(
            ingress="preflight",
            client=body.client or PREFLIGHT_CLIENT,
            mail_from=mail_from,
            rcpt_tos=tuple(recipients),
            content=content,
        )
        try:
            ref, admission = await self.rehearse(inbound, hashes)
        except MessageRefused as exc:
            detail = f"a send would be refused (554 5.6.0): {exc}"
            raise wrong("message", exc.reason, detail) from None
        except CampaignRejected as exc:
            detail = f"a send would be refused (550 5.7.1): {exc}"
            raise wrong("message", "campaign rejected", detail) from None
        return respond(
            s.Preflight(
                held=admission.held,
                client=ref.client,
                key=ref.key,
                implicit=ref.implicit,
                findings=[s.PreflightFinding.model_validate(f) for f in admission.findings],
            )
        )

    async def _members(self, name: str) -> list[int]:
        """Return the member hashes of a loaded segment, the preflight's audience."""
        segment = await self.spool.segment(name)
        if segment is None:
            raise wrong("segment", "not a loaded segment", f"no segment named {name!r}")
        if segment.size > MAX_SEGMENT_AUDIENCE:
            rule = f"at most {MAX_SEGMENT_AUDIENCE} members"
            raise wrong("segment", rule, f"segment {name} has {segment.size} members: {rule}")
        members: list[int] = []
        while page := await self.spool.segment_page(
            segment.version, members[-1] if members else None
        ):
            members += page
        if not members:
            raise wrong("segment", "has no members", f"segment {name} is empty")
        return members


def declared(body: PreflightBody) -> bytes:
    """Return the message with the body's declaration as its declaration headers."""
    content = body.content()
    values = (body.size, body.category, body.locale)
    given = dict(zip(DECLARATION_HEADERS, values, strict=True))
    lines = [f"{name}: {value}" for name, value in given.items() if value is not None]
    if not lines:
        return content
    replaced = frozenset(name.lower() for name, v in given.items() if v is not None)
    return HeaderBlock.parse(content).without(replaced).prepend(*lines).to_bytes()


def addresses(headers: HeaderBlock, *names: str) -> list[str]:
    """Return the addresses of the header fields `names`, in order."""
    values = [value for name in names if (value := headers.get(name))]
    return [address for _, address in getaddresses(values) if address]
