"""Load the policy directory: every `*.yaml` file, validated and merged into one set.

Errors name file, line and key; all of them are reported at once so an operator fixes a
file in one go. The set's version is a digest of the files, recorded on every finding.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from gateway.errors import ConfigError, PolicyError
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
class PolicySet:
    """Every rule of the policy directory, in declared order (files sorted by name)."""

    rules: tuple[ActiveRule, ...]
    internal_domains: frozenset[str]
    version: str
    files: tuple[str, ...]


def load_policies(directory: Path) -> PolicySet:
    """Load and validate `directory/*.yaml`; raise `PolicyError` listing every problem."""
    if not directory.is_dir():
        raise PolicyError([ConfigError(str(directory), "policies.dir", "no such policy directory")])
    paths = sorted(directory.glob("*.yaml"))
    problems: list[ConfigError] = []
    rules: list[ActiveRule] = []
    domains: set[str] = set()
    seen: dict[str, str] = {}
    digest = hashlib.sha256()
    for path in paths:
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            problems.append(ConfigError(str(path), "", f"cannot read the file: {exc}"))
            continue
        digest.update(path.name.encode() + b"\0" + text.encode() + b"\0")
        parsed = _parse(path, text, problems)
        if parsed is None:
            continue
        policy, lines = parsed
        domains.update(d.lower() for d in policy.internal_domains)
        for index, rule in enumerate(policy.rules):
            line = lines.get(("rules", str(index)), 0)
            where = f"{path}:{line}"
            action = rule.action or policy.defaults.action
            if rule.id in seen:
                problems.append(
                    ConfigError(
                        where,
                        f"rules.{index}.id",
                        f"duplicate rule id {rule.id!r} (first in {seen[rule.id]})",
                    )
                )
            elif action == "suppress" and rule.kind not in SUPPRESSIBLE:
                problems.append(
                    ConfigError(
                        where,
                        f"rules.{index}.action",
                        f"rule kind {rule.kind} cannot suppress single recipients; use hold",
                    )
                )
            seen.setdefault(rule.id, where)
            rules.append(ActiveRule(rule, rule.mode or policy.defaults.mode, action, where))
    if problems:
        raise PolicyError(problems)
    return PolicySet(
        rules=tuple(rules),
        internal_domains=frozenset(domains),
        version=f"sha256:{digest.hexdigest()[:12]}",
        files=tuple(p.name for p in paths),
    )


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
