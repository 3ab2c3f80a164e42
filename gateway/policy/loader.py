"""Load the policy directory: every `*.yaml` file, validated and merged into one set.

Errors name file, line and key; all of them are reported at once so an operator fixes a
file in one go. The set's version is a digest of the files, recorded on every finding.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from gateway.errors import ConfigError, PolicyError
from gateway.policy.content_rules import Identity, Signature
from gateway.policy.rules import RULE_KINDS, SUPPRESSIBLE, PolicyFile, Rule
from gateway.settings import yaml_key_lines


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


def load_policies(directory: Path) -> PolicySet:
    """Load and validate `directory/*.yaml`; raise `PolicyError` listing every problem."""
    if not directory.is_dir():
        raise PolicyError([ConfigError(str(directory), "policies.dir", "no such policy directory")])
    paths = sorted(directory.glob("*.yaml"))
    merged = _Merged()
    digest = hashlib.sha256()
    for path in paths:
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            merged.problems.append(ConfigError(str(path), "", f"cannot read the file: {exc}"))
            continue
        digest.update(path.name.encode() + b"\0" + text.encode() + b"\0")
        parsed = _parse(path, text, merged.problems)
        if parsed is not None:
            merged.add(path, *parsed)
    merged.check_identities()
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

    problems: list[ConfigError] = field(default_factory=list)
    rules: list[ActiveRule] = field(default_factory=list)
    domains: set[str] = field(default_factory=set)
    sources: dict[str, SegmentSource] = field(default_factory=dict)
    rule_ids: dict[str, str] = field(default_factory=dict)
    identities: dict[str, tuple[Identity, str]] = field(default_factory=dict)
    signature_rules: list[tuple[Signature, str, str]] = field(default_factory=list)

    def add(self, path: Path, policy: PolicyFile, lines: dict[tuple[str, ...], int]) -> None:
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
        for index, rule in enumerate(policy.rules):
            where = f"{path}:{lines.get(('rules', str(index)), 0)}"
            action = rule.action or policy.defaults.action
            if rule.id in self.rule_ids:
                first = self.rule_ids[rule.id]
                self._problem(
                    where, f"rules.{index}.id", f"duplicate rule id {rule.id!r} (first in {first})"
                )
            elif action == "suppress" and rule.kind not in SUPPRESSIBLE:
                reason = f"rule kind {rule.kind} cannot suppress single recipients; use hold"
                self._problem(where, f"rules.{index}.action", reason)
            self.rule_ids.setdefault(rule.id, where)
            self.rules.append(ActiveRule(rule, rule.mode or policy.defaults.mode, action, where))
            if isinstance(rule, Signature):
                self.signature_rules.append((rule, where, f"rules.{index}.identities"))

    def check_identities(self) -> None:
        """Check that signature rules name identities, and only declared ones."""
        for rule, where, key in self.signature_rules:
            if rule.identities is None and not self.identities:
                self._problem(where, key, "no identities are declared; add an identities list")
            for name in rule.identities or ():
                if name not in self.identities:
                    known = ", ".join(sorted(self.identities)) or "none"
                    self._problem(where, key, f"unknown identity {name!r} (declared: {known})")

    def _problem(self, where: str, key: str, reason: str) -> None:
        self.problems.append(ConfigError(where, key, reason))


def _parse(
    path: Path, text: str, problems: list[ConfigError]
) -> tuple[PolicyFile, dict[tuple[str, ...], int]] | None:
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        data: Any = yaml.safe_load(text)
    except yaml.MarkedYAMLError as exc:
        line = exc.problem_mark.line + 1 if exc.problem_mark else 0
        problems.append(ConfigError(f"{path}:{line}", "", f"invalid YAML: {exc.problem}"))
        return None
    lines = dict(yaml_key_lines(node))
    if not isinstance(data, dict):
        problems.append(
            ConfigError(f"{path}:1", "", "a policy file is a mapping with version and rules")
        )
        return None
    try:
        return PolicyFile.model_validate(data), lines
    except ValidationError as exc:
        for error in exc.errors():
            loc = _yaml_path(error["loc"])
            if error["type"].startswith("union_tag"):
                loc = (*loc, "kind")  # the problem is the rule's kind, not the whole rule
            key = ".".join(loc)
            problems.append(ConfigError(f"{path}:{_line(loc, lines)}", key, _reason(error)))
        return None


def _yaml_path(loc: tuple[int | str, ...]) -> tuple[str, ...]:
    """Drop the union tag pydantic inserts after a rule's index (rules.0.declared_size.ratio)."""
    return tuple(str(part) for part in loc if str(part) not in RULE_KINDS)


def _line(loc: tuple[str, ...], lines: dict[tuple[str, ...], int]) -> int:
    for depth in range(len(loc), 0, -1):
        if loc[:depth] in lines:
            return lines[loc[:depth]]
    return 1


def _reason(error: Any) -> str:
    if error["type"] == "union_tag_invalid":
        return f"unknown rule kind {error['input'].get('kind')!r}; known kinds: {', '.join(RULE_KINDS)}"
    if error["type"] == "union_tag_not_found":
        return f"a rule needs a kind; known kinds: {', '.join(RULE_KINDS)}"
    if error["type"] == "extra_forbidden":
        return "unknown key"
    return str(error["msg"])
