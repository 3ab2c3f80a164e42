"""The rule registry: which rule kinds exist, built once and handed to the loader and engine.

A `Registry` maps each `kind` a policy file may name to its `Unit` (parameters, check,
scanner, whether it may suppress). `default_registry` lists the shipped kinds, one line
each, in the order "known kinds" messages name them; adding a kind is one rule module and
one line here (docs/architecture.md, "Adding a rule kind"). Nothing here is global: the
composition (service, CLI, tests) builds a registry and passes it explicitly, and tests
pass registries of their own.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from gateway.policy.rules import (
    blast,
    duplicate_content,
    feedback,
    language,
    merge_tags,
    provider_template,
    seasonal,
    segmentation,
    signature,
    test_markers,
    throttle,
    undecodable,
    unsubscribe,
)
from gateway.policy.rules.base import Rule, Unit


class Registry:
    """Rule kinds by name; immutable once built."""

    def __init__(self, units: Iterable[Unit[Any]]) -> None:
        """Index `units` by kind; two units of one kind are a programming error."""
        by_kind: dict[str, Unit[Any]] = {}
        for unit in units:
            if unit.kind in by_kind:
                raise ValueError(f"rule kind {unit.kind!r} is registered twice")
            by_kind[unit.kind] = unit
        self._units = by_kind

    @property
    def units(self) -> tuple[Unit[Any], ...]:
        """Every unit, in registration order."""
        return tuple(self._units.values())

    @property
    def kinds(self) -> tuple[str, ...]:
        """Every kind, in registration order."""
        return tuple(self._units)

    def get(self, kind: str) -> Unit[Any] | None:
        """Return the unit of `kind`, or None when no unit has that kind."""
        return self._units.get(kind)

    def unit(self, rule: Rule) -> Unit[Any]:
        """Return the unit that checks `rule`; raise LookupError for a rule it did not parse."""
        unit = self._units.get(rule.kind)
        if unit is None or not isinstance(rule, unit.params):
            raise LookupError(f"rule {rule.id!r} of kind {rule.kind!r} is not in this registry")
        return unit


def default_registry() -> Registry:
    """Return the shipped rule kinds (DESIGN.md §3, docs/policies.md)."""
    return Registry(
        [
            Unit(blast.DeclaredSize, blast.declared_size),
            Unit(blast.UndeclaredLimit, blast.undeclared_limit),
            Unit(blast.AbsoluteCeiling, blast.absolute_ceiling),
            Unit(blast.DuplicateRecipients, blast.duplicate_recipients, suppressible=True),
            Unit(
                duplicate_content.DuplicateContent,
                duplicate_content.duplicate_content,
                scan=duplicate_content.scan,
                suppressible=True,
                count=duplicate_content.count,
            ),
            Unit(segmentation.SegmentExclude, segmentation.segment_exclude, suppressible=True),
            Unit(segmentation.SegmentOnly, segmentation.segment_only, suppressible=True),
            Unit(segmentation.SegmentMix, segmentation.segment_mix),
            Unit(segmentation.SegmentCoverage, segmentation.segment_coverage),
            Unit(segmentation.FrequencyCap, segmentation.frequency_cap, suppressible=True),
            Unit(signature.Signature, signature.signature, scan=signature.scan),
            Unit(merge_tags.MergeTags, merge_tags.check, scan=merge_tags.scan),
            Unit(test_markers.TestMarkers, test_markers.check, scan=test_markers.scan),
            Unit(seasonal.Seasonal, seasonal.check, scan=seasonal.scan),
            Unit(language.Language, language.check, scan=language.scan),
            Unit(undecodable.Undecodable, undecodable.check, scan=undecodable.scan),
            Unit(unsubscribe.Unsubscribe, unsubscribe.check, scan=unsubscribe.scan),
            Unit(provider_template.ProviderTemplate, provider_template.check),
            Unit(feedback.FeedbackBreaker, feedback.check, judge=feedback.judge),
            Unit(throttle.ThrottleRule, throttle.check, throttle=throttle.throttle),
        ]
    )
