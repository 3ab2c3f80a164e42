"""Provider template rule: bulk mail whose content lives on the provider, unread.

Owns the `provider_template` kind. A send through the HTTP send API may name a
provider-side template (SendGrid's `template_id`) instead of carrying its content: the
provider renders it, so no content rule here ever reads what the recipients will see.
Above the bulk threshold such a campaign is held (fail closed), unless the template is
one an operator reviewed and listed in `allow`. The check reads the header the ingress
wrote (`model.TEMPLATE_HEADER`), in the transaction; it has no scanner.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from gateway.mail.headers import HeaderBlock
from gateway.model import TEMPLATE_HEADER
from gateway.policy.rules.base import Context, Observation, Rule


class ProviderTemplate(Rule):
    """Bulk campaigns sent as a provider-side template the gateway cannot read."""

    kind: Literal["provider_template"]
    bulk_threshold: int = Field(
        100, ge=0, description="Recipients a campaign may reach before a template holds it."
    )
    allow: list[str] = Field(
        default_factory=list,
        description="Template ids whose content was reviewed: they never hold.",
    )


def check(rule: ProviderTemplate, ctx: Context) -> list[Observation]:
    """Hold a bulk campaign sent as a template that is not in `allow`."""
    template = HeaderBlock(ctx.submission.header_fields, b"").get(TEMPLATE_HEADER)
    if template is None:
        return []
    template = template.strip()
    received = ctx.campaign.counters.received
    if template in rule.allow or received <= rule.bulk_threshold:
        return []
    return [
        Observation(
            kind="provider_template",
            message=(
                f"campaign of {received} recipients (bulk threshold {rule.bulk_threshold}) is"
                f" sent as provider template {template}, whose content the gateway cannot"
                f" read; review it and list it in rule {rule.id}'s allow, or release"
            ),
            evidence={
                "template_id": template,
                "received": received,
                "bulk_threshold": rule.bulk_threshold,
            },
        )
    ]
