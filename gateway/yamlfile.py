"""YAML files operators write, read so that every error names file, line and key.

One reader for the settings file, policy files and policy test fixtures: invalid YAML
is a `ConfigError` at the line the parser stopped on, and a problem found later (by
validation) is placed on the line of the deepest key of its path that the file has.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from gateway.errors import ConfigError

KeyPath = tuple[str, ...]


@dataclass(frozen=True, slots=True)
class YamlDoc:
    """A parsed YAML file and the 1-based line of every key path in it."""

    path: Path
    data: Any
    lines: dict[KeyPath, int]

    def line_of(self, loc: Sequence[str]) -> int:
        """Return the line of `loc`, or of its deepest ancestor the file has (else 1)."""
        key = tuple(loc)
        return next(
            (self.lines[key[:n]] for n in range(len(key), 0, -1) if key[:n] in self.lines), 1
        )

    def error(self, loc: Sequence[str], reason: str) -> ConfigError:
        """Return a `ConfigError` for the key path `loc`, placed on its line."""
        return ConfigError(f"{self.path}:{self.line_of(loc)}", ".".join(loc), reason)


def parse_yaml(path: Path, text: str) -> YamlDoc:
    """Parse YAML text read from `path`; invalid YAML raises `ConfigError` with its line."""
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.MarkedYAMLError as exc:
        line = exc.problem_mark.line + 1 if exc.problem_mark else 0
        raise ConfigError(f"{path}:{line}", "", f"invalid YAML: {exc.problem}") from None
    return YamlDoc(path, data, dict(key_lines(node)))


def read_yaml(path: Path) -> YamlDoc:
    """Read and parse a YAML file; an unreadable file is a `ConfigError` naming it."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(str(path), "", exc.strerror or str(exc)) from None
    return parse_yaml(path, text)


def key_lines(node: yaml.Node | None, prefix: KeyPath = ()) -> Iterator[tuple[KeyPath, int]]:
    """Yield (key path, 1-based line) for every mapping key and list item in a YAML tree."""
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            path = (*prefix, str(key_node.value))
            yield path, key_node.start_mark.line + 1
            yield from key_lines(value_node, path)
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            path = (*prefix, str(index))
            yield path, item.start_mark.line + 1
            yield from key_lines(item, path)
