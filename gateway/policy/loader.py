"""Load the policy directory: every `*.yaml` file, validated and merged into one set.

Owns the shape of a policy file (DESIGN.md §10) around its rules: version, defaults,
segments, identities, internal domains. Each rule is validated by the model of its kind,
looked up in the registry the caller passes; the loader knows no kind itself. Errors name
file, line and key; all of them are reported at once so an operator fixes a file in one
go. The set's version is a digest of the files, recorded on every finding.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TypeVar

from pydantic import Field, ValidationError

from gateway.errors import ConfigError, PolicyError
from gateway.policy.registry import Registry
from gateway.policy.rules.base import Defaults, Identity, Rule, Shared, Strict
from gateway.yamlfile import YamlDoc, parse_yaml

Lines = dict[tuple[str, ...], int]  # key path -> line
M = TypeVar("M", bound=Strict)


class SegmentFile(Strict):
    """A segment loaded from a file: one address per line, or CSV with a header."""

    file: Path
    column: str | None = Field(None, description="CSV column holding the address.")


class PolicyFile(Strict):
    """One YAML file in the policy directory; each rule is checked by its kind's model."""

    version: Literal[1]
    defaults: Defaults = Field(default_factory=Defaults)
    segments: dict[str, SegmentFile] = Field(default_factory=dict)
    identities: list[Identity] = Field(default_factory=list)
    internal_domains: list[str] = Field(default_factory=list)
    rules: list[dict[str, Any]] = Field(default_factory=list)


@dataclass(frozen=True)
class ActiveRule:
    """A rule with its file's defaults applied."""

    rule: Rule
    mode: str
    action: str
    source: str  # file:line, for explanations

    @property
    def id(self) -> str:
        """The rule's id."""
        return self.rule.id


@dataclass(frozen=True)
class SegmentSource:
    """A segment the policy files load from a file (path resolved against that file)."""

    name: str
    path: Path
    column: str | None
    declared_in: str  # file:line


@dataclass(frozen=True)
class PolicySet:
    """Every rule of the policy directory, in declared order (files sorted by name)."""

    rules: tuple[ActiveRule, ...]
    internal_domains: frozenset[str]
    version: str
    files: tuple[str, ...]
    segment_files: tuple[SegmentSource, ...] = ()
    identities: tuple[Identity, ...] = ()  # protected identities (signature policy)

    @property
    def shared(self) -> Shared:
        """What the set declares outside its rules, as the rules see it."""
        return Shared(self.identities, self.internal_domains)


def load_policies(directory: Path, registry: Registry) -> PolicySet:
    """Load and validate `directory/*.yaml` with the rule kinds of `registry`.

    Raise `PolicyError` listing every problem.
    """
    if not directory.is_dir():
        raise PolicyError([ConfigError(str(directory), "policies.dir", "no such policy directory")])
    paths = sorted(directory.glob("*.yaml"))
    merged = _Merged(registry)
    digest = hashlib.sha256()
    for path in paths:
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            merged.problems.append(ConfigError(str(path), "", f"cannot read the file: {exc}"))
            continue
        digest.update(path.name.encode() + b"\0" + text.encode() + b"\0")
        parsed = _parse(path, text, registry, merged.problems)
        if parsed is not None:
            merged.add(path, *parsed)
    merged.check_across()
    if merged.problems:
        raise PolicyError(merged.problems)
    return PolicySet(
        rules=tuple(merged.rules),
        internal_domains=frozenset(merged.domains),
        version=f"sha256:{digest.hexdigest()[:12]}",
        files=tuple(p.name for p in paths),
        segment_files=tuple(merged.sources.values()),
        identities=tuple(identity for identity, _ in merged.identities.values()),
    )


@dataclass
class _Merged:
    """What the files of one directory add up to, and what is wrong across them."""

    registry: Registry
    problems: list[ConfigError] = field(default_factory=list)
    rules: list[ActiveRule] = field(default_factory=list)
    domains: set[str] = field(default_factory=set)
    sources: dict[str, SegmentSource] = field(default_factory=dict)
    rule_ids: dict[str, str] = field(default_factory=dict)
    identities: dict[str, tuple[Identity, str]] = field(default_factory=dict)
    placed: list[tuple[Rule, str, int]] = field(default_factory=list)  # rule, file:line, index

    def add(self, path: Path, policy: PolicyFile, rules: list[Rule], lines: Lines) -> None:
        self.domains.update(d.lower() for d in policy.internal_domains)
        for index, identity in enumerate(policy.identities):
            where = f"{path}:{lines.get(('identities', str(index)), 0)}"
            if identity.id in self.identities:
                first = self.identities[identity.id][1]
                reason = f"identity {identity.id!r} is also declared in {first}"
                self._problem(where, f"identities.{index}.id", reason)
            else:
                self.identities[identity.id] = (identity, where)
        for name, spec in policy.segments.items():
            where = f"{path}:{lines.get(('segments', name), 0)}"
            if name in self.sources:
                first = self.sources[name].declared_in
                self._problem(
                    where, f"segments.{name}", f"segment {name!r} is also loaded in {first}"
                )
            else:
                self.sources[name] = SegmentSource(
                    name, path.parent / spec.file, spec.column, where
                )
        for index, rule in enumerate(rules):
            where = f"{path}:{lines.get(('rules', str(index)), 0)}"
            action = rule.action or policy.defaults.action
            if rule.id in self.rule_ids:
                first = self.rule_ids[rule.id]
                self._problem(
                    where, f"rules.{index}.id", f"duplicate rule id {rule.id!r} (first in {first})"
                )
            elif action == "suppress" and not self.registry.unit(rule).suppressible:
                reason = f"rule kind {rule.kind} cannot suppress single recipients; use hold"
                self._problem(where, f"rules.{index}.action", reason)
            self.rule_ids.setdefault(rule.id, where)
            self.rules.append(ActiveRule(rule, rule.mode or policy.defaults.mode, action, where))
            self.placed.append((rule, where, index))

    def check_across(self) -> None:
        """Ask every rule what is wrong with it given all files (a signature's identities)."""
        shared = Shared(
            tuple(identity for identity, _ in self.identities.values()), frozenset(self.domains)
        )
        for rule, where, index in self.placed:
            for key, reason in rule.problems(shared):
                self._problem(where, f"rules.{index}.{key}", reason)

    def _problem(self, where: str, key: str, reason: str) -> None:
        self.problems.append(ConfigError(where, key, reason))


def _parse(
    path: Path, text: str, registry: Registry, problems: list[ConfigError]
) -> tuple[PolicyFile, list[Rule], Lines] | None:
    try:
        doc = parse_yaml(path, text)
    except ConfigError as exc:
        problems.append(exc)
        return None
    data, lines = doc.data, doc.lines
    if not isinstance(data, dict):
        problems.append(
            ConfigError(f"{path}:1", "", "a policy file is a mapping with version and rules")
        )
        return None
    found = _Found(doc)
    policy = found.validated(PolicyFile, data, ())
    raw_rules = data.get("rules")
    rules = [
        found.rule(registry, raw, ("rules", str(index)))
        for index, raw in enumerate(raw_rules if isinstance(raw_rules, list) else [])
        if isinstance(raw, dict)  # anything else is named by the file's own validation
    ]
    problems.extend(found.problems)
    if policy is None or found.problems:
        return None
    return policy, [rule for rule in rules if rule is not None], lines


@dataclass
class _Found:
    """The problems of one file, each placed at its key's line."""

    doc: YamlDoc
    problems: list[ConfigError] = field(default_factory=list)

    def rule(self, registry: Registry, raw: dict[str, Any], loc: tuple[str, ...]) -> Rule | None:
        """Validate one rule with the model of its kind; None (and a problem) when wrong."""
        kind = raw.get("kind")
        unit = registry.get(kind) if isinstance(kind, str) else None
        if unit is None:
            known = ", ".join(registry.kinds)
            reason = (
                f"unknown rule kind {kind!r}; known kinds: {known}"
                if "kind" in raw
                else f"a rule needs a kind; known kinds: {known}"
            )
            self.add((*loc, "kind"), reason)
            return None
        rule: Rule | None = self.validated(unit.params, raw, loc)
        return rule

    def validated(self, model: type[M], data: dict[str, Any], loc: tuple[str, ...]) -> M | None:
        """Validate `data` (at key path `loc`) as `model`; None (and problems) when wrong."""
        try:
            return model.model_validate(data)
        except ValidationError as exc:
            for error in exc.errors():
                self.add((*loc, *(str(part) for part in error["loc"])), _reason(error))
            return None

    def add(self, loc: tuple[str, ...], reason: str) -> None:
        """Add a problem at key path `loc`, on the line of its deepest key the file has."""
        self.problems.append(self.doc.error(loc, reason))


def _reason(error: Any) -> str:
    if error["type"] == "extra_forbidden":
        return "unknown key"
    return str(error["msg"])
