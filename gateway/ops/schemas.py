"""The JSON shapes of the ops API (DESIGN.md §4, §10) as pydantic models.

They are the one home of every answer's field names, problem documents included (request
bodies are in `gateway.ops.bodies`).

Handlers build their answers by validating the spool's records into these models and
serialising them; `gateway.ops.openapi` generates the document's components from the same
models, so the served JSON and the document cannot drift. Field order is the JSON's order.
This module must not talk to the spool or know about HTTP.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Annotated, Any, Generic, Literal, TypeVar

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, WithJsonSchema, model_validator

from gateway import model, states
from gateway.mail.headers import HeaderBlock, text_preview
from gateway.ops.views import timestamp

T = TypeVar("T")
NOT_RENDERED = "(not rendered: the message's MIME structure is nested too deeply to decode)"


def preview(content: bytes) -> str:
    """Return the decoded start of a message's text, or say why there is none.

    The standard library's parser recurses once per MIME level, so a message nested a
    thousand levels deep raises RecursionError where any other view would render: such
    a message is shown without a preview (its headers and raw form still are).
    """
    try:
        return text_preview(content)
    except (RecursionError, ValueError):
        return NOT_RENDERED


def _rfc3339(value: object) -> object:
    """Epoch seconds from a record become RFC 3339 text; text passes as it is."""
    return timestamp(value) if isinstance(value, int | float) else value


Timestamp = Annotated[
    str, BeforeValidator(_rfc3339), WithJsonSchema({"type": "string", "format": "date-time"})
]


class Out(BaseModel):
    """An answer's shape: built from records' attributes, exactly these fields, all present."""

    model_config = ConfigDict(
        extra="forbid",
        frozen=True,
        from_attributes=True,
        json_schema_serialization_defaults_required=True,
    )

    def dump(self) -> dict[str, Any]:
        """Return the JSON-ready data."""
        return self.model_dump(mode="json", by_alias=True)


# -- problems and probes --------------------------------------------------------------------


class FieldError(Out):
    """One wrong input: which field (or `file:line: key`), and what is wrong with it."""

    field: str
    detail: str


class ProblemHead(BaseModel):
    """The members every RFC 9457 problem document of this API has."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    type: str
    title: str
    status: int
    detail: str
    instance: str

    def dump(self) -> dict[str, Any]:
        """Return the JSON-ready data; optional members without a value are left out."""
        return self.model_dump(mode="json", exclude_none=True)


class ProblemDetails(ProblemHead):
    """An RFC 9457 problem document; `errors` names each wrong field of invalid input."""

    errors: list[FieldError] | None = None


class InvalidPolicies(ProblemHead):
    """A refused policy reload: the version that stays in force, and every problem."""

    version: str
    errors: list[FieldError]


class Health(Out):
    """Liveness or readiness."""

    status: Literal["ok", "ready"]


class Unready(Out):
    """Readiness when the spool does not answer."""

    status: Literal["unavailable"]
    spool: str = Field(description="Why the spool did not answer.")


# -- campaigns ------------------------------------------------------------------------------


class Declared(Out):
    """What the sender declared the campaign to be."""

    size: int | None
    category: str | None
    locale: str | None


class Counters(Out):
    """Recipients by what happened to them (DESIGN.md §10)."""

    received: int
    queued: int
    held: int
    relayed: int
    deferred: int
    failed: int
    discarded: int
    suppressed: int
    escaped: int


class Feedback(Out):
    """What the provider reported about the campaign's recipients (docs/feedback.md)."""

    delivered: int
    bounced: int
    dropped: int
    complained: int
    unsubscribed: int


class FeedbackSample(Out):
    """One provider event kept as evidence (a few per kind)."""

    kind: str
    at: Timestamp
    recipient: str
    message_id: str
    evidence: dict[str, Any]


class Finding(Out):
    """What one rule found, merged over the messages that raised it."""

    rule: str
    kind: str
    mode: str
    message: str
    evidence: dict[str, Any]
    policy_version: str
    at: Timestamp
    count: int


class Acknowledged(Out):
    """A (rule, kind) a full release accepted: later mail raising only it passes."""

    rule: str
    kind: str


class Campaign(Out):
    """A campaign as listed and shown."""

    id: str
    key: str
    client: str
    implicit: bool
    state: states.CampaignState
    sender: str
    subject: str
    declared: Declared
    counters: Counters
    feedback: Feedback
    duplicates: int
    findings: list[Finding]
    acknowledged: list[Acknowledged]
    held_at: Timestamp | None
    created_at: Timestamp
    updated_at: Timestamp

    @model_validator(mode="before")
    @classmethod
    def _from_record(cls, data: Any) -> Any:
        if not isinstance(data, model.Campaign):
            return data
        fields = {name: getattr(data, name) for name in Campaign.model_fields}
        fields["acknowledged"] = [{"rule": r, "kind": k} for r, k in sorted(data.acknowledged)]
        return fields


class Signoff(Out):
    """One identity's sign-off of a campaign."""

    identity: str
    actor: str
    on_behalf: bool
    reason: str
    at: Timestamp


class TimelineStep(BaseModel):
    """One step of a campaign's story; the event's details (counts, rules) follow."""

    model_config = ConfigDict(extra="allow", frozen=True)

    at: Timestamp
    event: str
    actor: str

    @model_validator(mode="before")
    @classmethod
    def _from_record(cls, data: Any) -> Any:
        if isinstance(data, model.CampaignEvent):
            return {"at": data.at, "event": data.event, "actor": data.actor, **data.details}
        return data


class MessageSummary(Out):
    """A short view of a message: envelope, subject, preview and links."""

    id: str
    mail_from: str
    from_: str | None = Field(alias="from")
    subject: str | None
    received_at: Timestamp
    size: int
    preview: str
    url: str
    raw_url: str

    @staticmethod
    def fields_of(message: model.StoredMessage, headers: HeaderBlock, base: str) -> dict[str, Any]:
        """Return this view's fields of a stored message."""
        return {
            "id": message.id,
            "mail_from": message.mail_from,
            "from": headers.get("From"),
            "subject": headers.get("Subject"),
            "received_at": message.received_at,
            "size": len(message.content),
            "preview": preview(message.content),
            "url": f"{base}/messages/{message.id}",
            "raw_url": f"{base}/messages/{message.id}/raw",
        }

    @classmethod
    def of(cls, message: model.StoredMessage, base: str) -> MessageSummary:
        """Render a stored message."""
        return cls.model_validate(cls.fields_of(message, HeaderBlock.parse(message.content), base))


class Recipient(Out):
    """One recipient row."""

    id: int
    address: str
    state: states.RecipientState
    message_id: str
    attempts: int
    next_attempt_at: Timestamp
    last_reply: str
    updated_at: Timestamp


class Message(MessageSummary):
    """A message with its decoded headers and its recipients' states."""

    campaign_id: str
    client: str
    ingress: str
    headers: list[tuple[str, str | None]]
    recipients: list[Recipient]

    @classmethod
    def with_recipients(
        cls, message: model.StoredMessage, recipients: Iterable[model.RecipientRecord], base: str
    ) -> Message:
        """Render a stored message and its recipients."""
        headers = HeaderBlock.parse(message.content)
        return cls.model_validate(
            {
                **cls.fields_of(message, headers, base),
                "campaign_id": message.campaign_id,
                "client": message.client,
                "ingress": message.ingress,
                "headers": [
                    (name, headers.get(name))
                    for name in dict.fromkeys(n for n, _ in headers.fields)
                ],
                "recipients": list(recipients),
            }
        )


class Canary(Out):
    """A campaign's latest canary release and how far it got (docs/feedback.md)."""

    state: states.CanaryState
    recipients: int = Field(description="The slice released first.")
    waiting: int = Field(description="Recipients of the slice not yet relayed (while sending).")
    observe: float = Field(description="Seconds of quiet feedback the slice must get.")
    actor: str
    reason: str
    started_at: Timestamp
    sent_at: Timestamp | None
    decide_at: Timestamp | None = Field(description="When the rest goes if all stays quiet.")
    decided_at: Timestamp | None

    @classmethod
    def of(cls, canary: model.Canary, campaign: model.Campaign) -> Canary:
        """Show `campaign`'s canary; while its slice sends, what of it still waits."""
        waiting = campaign.counters.queued + campaign.counters.deferred
        return cls(
            state=canary.state,
            recipients=canary.recipients,
            waiting=waiting if canary.state is states.CanaryState.SENDING else 0,
            observe=canary.observe,
            actor=canary.actor,
            reason=canary.reason,
            started_at=canary.started_at,
            sent_at=canary.sent_at,
            decide_at=canary.decide_at,
            decided_at=canary.decided_at,
        )


class ThrottleInForce(Out):
    """A relay throttle the policy in force puts on the campaign, and its bucket now."""

    rule: str
    per_second: float = Field(description="Recipients per second the relay may hand over.")
    burst: int
    scope: Literal["campaign", "client", "global"]
    next_at: Timestamp | None = Field(
        description="When the bucket lets the next recipient go; null: it may go now."
    )
    waiting: int = Field(description="Recipients of this campaign waiting for this throttle.")


class CampaignDetail(Campaign):
    """A campaign with its sign-offs, sample message, canary and timeline."""

    throttles: list[ThrottleInForce]
    signoffs: list[Signoff]
    signoffs_missing: list[str]
    feedback_samples: list[FeedbackSample]
    sample: MessageSummary | None
    canary: Canary | None
    timeline: list[TimelineStep]
    recipients_url: str


class Page(Out, Generic[T]):
    """One page of a list; `next` is the cursor of the following page, or null."""

    items: list[T]
    next: str | None


class CampaignList(Page[Campaign]):
    """A page of campaigns, newest first."""


class RecipientList(Page[Recipient]):
    """A page of a campaign's recipients, in arrival order."""


class Manifest(Out):
    """A registered declaration, and the campaign it updated (when the client is named)."""

    key: str
    client: str
    declared: Declared
    updated_at: Timestamp
    campaign: Campaign | None


class PendingRelease(Out):
    """A large release recorded as one approval; a second operator must release too."""

    status: Literal["pending_approval"]
    approvals: list[str]
    required: int
    detail: str
    campaign: CampaignDetail


# -- relay, audit, policies, segments -------------------------------------------------------


class RelayStatus(Out):
    """Whether the relay is paused."""

    paused: bool


class RelayChange(RelayStatus):
    """A pause or resume: who did it and why."""

    by: str
    reason: str


class AuditEntry(Out):
    """One entry of the append-only audit log."""

    at: Timestamp
    actor: str
    action: str
    target: str
    reason: str
    outcome: Literal["ok", "refused", "pending"]
    details: dict[str, Any]
    id: int


class AuditList(Page[AuditEntry]):
    """A page of the audit log, newest first."""


class WebhookReceipt(Out):
    """What a webhook call recorded: events received, new (not a retry), queued to forward."""

    received: int
    new: int
    unattributed: int
    forwarding: bool


class WebhookDelivery(Out):
    """A batch of provider events on its way to the platform's webhook URL."""

    id: int
    source: str
    state: model.ForwardState
    events: int
    attempts: int
    last_error: str
    received_at: Timestamp
    queued_at: Timestamp
    next_attempt_at: Timestamp
    updated_at: Timestamp


class WebhookDeliveryList(Page[WebhookDelivery]):
    """A page of forwarded batches, newest first."""


class PolicyRule(Out):
    """A rule in force."""

    id: str
    kind: str
    mode: str


class PolicyReload(Out):
    """What a policy reload put in force."""

    version: str
    previous: str
    changed: bool
    files: list[str]
    rules: list[PolicyRule]
    identities: list[str]


class Segment(Out):
    """A loaded segment."""

    name: str
    size: int
    lines: int
    invalid: int
    source: str
    loaded_by: str
    loaded_at: Timestamp
    version: int


class SegmentList(Page[Segment]):
    """Every segment (one page)."""


class InvalidLine(Out):
    """A line of an upload that holds no usable address."""

    line: int
    text: str


class SegmentLoad(Segment):
    """What an upload did."""

    duplicates: int
    blank: int
    invalid_samples: list[InvalidLine]
    replaced_version: int | None


# -- preflight ------------------------------------------------------------------------------


class PreflightFinding(Out):
    """What one rule would find in the message."""

    rule: str
    kind: str
    mode: str
    message: str
    evidence: dict[str, Any]


class Preflight(Out):
    """What a send of the message would meet; nothing was stored or sent."""

    held: bool
    client: str
    key: str
    implicit: bool
    findings: list[PreflightFinding]
