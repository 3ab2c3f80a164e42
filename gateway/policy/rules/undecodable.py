"""Undecodable rule: content that cannot be decoded cannot have been checked.

Owns the `undecodable` kind: its (empty) parameters, its scanner, which lists what
`gateway.mail.content.decode` could not read (an unknown charset, broken base64, no text
part), and its check, which holds such mail (fail closed).
"""

from __future__ import annotations

from typing import Literal

from gateway.mail.content import Document
from gateway.model import ContentHit
from gateway.policy.rules.base import SAMPLE, Context, Observation, Rule, Shared
from gateway.policy.rules.patterns import more


class Undecodable(Rule):
    """Content that cannot be decoded (unknown charset, broken base64, no text part)."""

    kind: Literal["undecodable"]


def scan(rule: Undecodable, doc: Document, shared: Shared) -> list[ContentHit]:  # noqa: ARG001
    """List what could not be decoded."""
    return [ContentHit("undecodable", "message", problem) for problem in doc.problems]


def check(rule: Undecodable, ctx: Context) -> list[Observation]:
    """Hold mail whose content could not be decoded: it cannot have been checked."""
    hits = ctx.scan(rule.id).hits
    if not hits:
        return []
    return [
        Observation(
            kind="undecodable_content",
            message=f"content could not be decoded, so it was not checked: {hits[0].fragment}{more(hits)}",
            evidence={"problems": [h.fragment for h in hits[:SAMPLE]]},
        )
    ]
