"""Unsubscribe readiness: bulk marketing mail its readers can leave, in one click.

Owns the `unsubscribe` kind. Since 2024 the large mailbox providers (Gmail, Yahoo) require
of bulk senders a `List-Unsubscribe` header with an HTTPS URI and `List-Unsubscribe-Post:
List-Unsubscribe=One-Click` (RFC 8058), and a visible way out in the message; mail without
them lands in spam or is refused. The check reads the two headers from the message as the
platform sent it (cheap, in the transaction); the scanner looks for the visible link: a
link whose address, or a phrase of the text, says unsubscribe in one of the languages the
language rule knows. Only campaigns that declare a marketing category are judged:
receipts and password resets need no unsubscribe link.
"""

from __future__ import annotations

import re
from typing import Literal

from pydantic import Field

from gateway.mail.content import Document
from gateway.mail.headers import HeaderBlock
from gateway.model import ContentHit
from gateway.policy.rules.base import Context, Observation, Rule, Shared
from gateway.policy.rules.patterns import context

MARKETING = (
    *("newsletter", "promotion", "promotional", "marketing", "announcement", "digest"),
    *("event", "winback", "win-back", "reengagement", "survey", "offer", "sale"),
)
ONE_CLICK = "list-unsubscribe=one-click"
# A link that leads out: its address names unsubscribing or the subscription preferences.
_LINK = re.compile(
    r"unsub|opt[-_]?out|abmeld|abbestell|d[eé]sabonn|d[eé]sinscri|baja|descadastr|"
    r"disiscri|afmeld|uitschrijv|avmeld|avregistr|wypis|preferences|subscription",
    re.IGNORECASE,
)
# The same said in the text a reader sees (the words around a link are in the HTML's text).
_PHRASE = re.compile(
    r"unsubscribe|opt[ -]out|stop receiving|manage (?:your )?(?:e-?mail )?preferences"
    r"|d(?:ar(?:te|se)|ate) de baja|cancelar (?:la |a )?(?:suscripci[oó]n|inscri[cç][aã]o)"
    r"|abmelden|abbestellen|austragen|d[eé]sabonner|d[eé]sinscri|d[eé]sabonnement"
    r"|descadastr|subscri[cç][aã]o|disiscriv|annulla l'iscrizione|afmelden|uitschrijven"
    r"|配信停止|配信解除|登録解除|購読解除|meld deg av|avslutt abonnement|afmeld"
    r"|avregistrera|avsluta prenumeration|wypisz|zrezygnuj z subskrypcji"
    r"|取消订阅|退订|取消訂閱|退訂|수신거부|구독 취소|отписаться|abonelikten [çc]ık",
    re.IGNORECASE,
)


class Unsubscribe(Rule):
    """Bulk marketing mail without one-click unsubscribe headers or a visible link."""

    kind: Literal["unsubscribe"]
    bulk_threshold: int = Field(
        1000, ge=0, description="Recipients a campaign reaches before it is judged."
    )
    categories: list[str] = Field(
        default_factory=lambda: list(MARKETING),
        description="Declared categories that are marketing; others are never judged.",
    )
    one_click: bool = Field(default=True, description="Require RFC 8058 one-click unsubscribe.")
    visible_link: bool = Field(default=True, description="Require an unsubscribe link in the body.")


def scan(rule: Unsubscribe, doc: Document, shared: Shared) -> list[ContentHit]:  # noqa: ARG001
    """Find the visible way out: an unsubscribe link, or the phrase in the text."""
    for link in doc.links:
        if _LINK.search(link):
            return [ContentHit("unsubscribe_link", "link", link[:200])]
    for where, text in (("text", doc.text), ("html", doc.html)):
        found = _PHRASE.search(text)
        if found:
            return [ContentHit("unsubscribe_link", where, context(text, *found.span()))]
    return []


def missing_headers(headers: HeaderBlock) -> list[str]:
    """Say what the message's List-Unsubscribe headers lack for RFC 8058 one-click."""
    value = headers.get("List-Unsubscribe")
    if value is None:
        return ["no List-Unsubscribe header"]
    uris = re.findall(r"<\s*([^>]*?)\s*>", value)
    missing = []
    if not any(uri.lower().startswith("https://") for uri in uris):
        missing.append("no https URI in List-Unsubscribe")
    post = (headers.get("List-Unsubscribe-Post") or "").replace(" ", "").lower()
    if post != ONE_CLICK:
        missing.append("no List-Unsubscribe-Post: List-Unsubscribe=One-Click")
    return missing


def check(rule: Unsubscribe, ctx: Context) -> list[Observation]:
    """Hold bulk marketing mail a reader cannot unsubscribe from in one click."""
    campaign = ctx.campaign
    category = campaign.declared.category
    wanted = {c.lower() for c in rule.categories}
    if category is None or category not in wanted:
        return []
    received = campaign.counters.received
    if received <= rule.bulk_threshold:
        return []
    problems = []
    if rule.one_click:
        problems += missing_headers(HeaderBlock(ctx.submission.header_fields, b""))
    if rule.visible_link and not ctx.scan(rule.id).hits:
        problems.append("no unsubscribe link in the body")
    if not problems:
        return []
    return [
        Observation(
            kind="unsubscribe_missing",
            message=(
                f"{category} campaign of {received} recipients (bulk threshold "
                f"{rule.bulk_threshold}) cannot be unsubscribed from: {'; '.join(problems)}"
            ),
            evidence={
                "problems": problems,
                "received": received,
                "bulk_threshold": rule.bulk_threshold,
                "category": category,
            },
        )
    ]
