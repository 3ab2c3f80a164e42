"""Records for policy tests: campaigns, submissions and engines built from a rules snippet."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from gateway.admission.resolve import comparable
from gateway.mail.addresses import address_hash
from gateway.model import Campaign, CampaignRef, Counters, Declaration, Submission
from gateway.policy.engine import Engine
from gateway.policy.loader import PolicySet, load_policies
from gateway.policy.registry import Registry, default_registry
from gateway.states import CampaignState


def campaign(
    received: int,
    declared: int | None = None,
    *,
    category: str | None = None,
    duplicates: int = 0,
    acknowledged: frozenset[tuple[str, str]] = frozenset(),
) -> Campaign:
    """An open campaign with these counters and declaration."""
    return Campaign(
        id="C1",
        key="spring",
        client="127.0.0.0/8",
        implicit=False,
        state=CampaignState.OPEN,
        sender="news@shop.test",
        subject="Spring",
        declared=Declaration(size=declared, category=category),
        counters=Counters(received=received),
        created_at=0.0,
        updated_at=0.0,
        acknowledged=acknowledged,
        duplicates=duplicates,
    )


def submission(rcpts: Sequence[str]) -> Submission:
    """A message of that campaign to `rcpts`, with mailboxes and hashes as admission makes them."""
    boxes = tuple(comparable(r) for r in rcpts)
    return Submission(
        message_id="M1",
        client="127.0.0.0/8",
        mail_from="news@shop.test",
        rcpt_tos=tuple(rcpts),
        content=b"",
        campaign=CampaignRef(
            client="127.0.0.0/8",
            key="spring",
            implicit=False,
            sender="news@shop.test",
            subject="Spring",
            declaration=Declaration(),
        ),
        received_at=0.0,
        mailboxes=boxes,
        hashes=tuple(address_hash(b) for b in boxes),
    )


def load(folder: Path, registry: Registry | None = None) -> PolicySet:
    """The policy files of `folder`, loaded with `registry` (the shipped kinds if None)."""
    return load_policies(folder, registry or default_registry())


def changed(kind: str, **parts: Any) -> Registry:
    """The shipped registry with parts of one kind's unit replaced (its check, its scanner)."""
    units = default_registry().units
    assert kind in {u.kind for u in units}
    return Registry(replace(u, **parts) if u.kind == kind else u for u in units)


def engine(
    tmp_path: Path,
    rules: str,
    *,
    extra: str = "",
    budget: float = 0.05,
    registry: Registry | None = None,
) -> Engine:
    """An engine over one policy file: `extra` top-level keys, then `rules` (YAML lines)."""
    (tmp_path / "p.yaml").write_text(f"version: 1\n{extra}rules:\n{rules}")
    registry = registry or default_registry()
    policies = load_policies(tmp_path, registry)
    return Engine(policies, registry=registry, clock=lambda: 1234.0, budget=budget)
