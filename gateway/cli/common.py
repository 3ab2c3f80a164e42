"""Shared pieces of the `sendbrake` commands: options, settings loading, output helpers.

Errors go to standard error as `error: …` with exit status 1; data goes to standard output.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, NoReturn

import click

from gateway import settings
from gateway.errors import ConfigError

CONFIG_HELP = "Settings file (default: $SENDBRAKE_CONFIG, else built-in defaults)."

config_option = click.option(
    "--config",
    "-c",
    "config_path",
    type=click.Path(path_type=Path, dir_okay=False),
    help=CONFIG_HELP,
)
reason_option = click.option("--reason", required=True, help="Why; written to the audit log.")


def load_settings(config: Path | None) -> settings.Settings:
    """Load the settings, or exit naming file, line, key and reason."""
    try:
        return settings.load(config)
    except ConfigError as exc:
        raise click.ClickException(f"invalid configuration: {exc}") from None


def fail(*lines: str) -> NoReturn:
    """Print `lines` to standard error and exit with status 1."""
    for line in lines:
        click.echo(line, err=True)
    raise click.exceptions.Exit(1)


def plural(count: int, word: str) -> str:
    """Return `count word` with the word in plural when it must be."""
    return f"{count} {word}" if count == 1 else f"{count} {word}s"


def table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """Render rows as left-aligned columns under an upper-case header."""
    cells = [list(header), *([str(cell) for cell in row] for row in rows)]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in cells
    )


def pairs(data: Mapping[str, Any], skip: frozenset[str] = frozenset()) -> str:
    """Render details such as evidence as `key=value`, lists joined by commas."""
    return "  ".join(
        f"{k}={','.join(map(str, v)) if isinstance(v, list) else v}"
        for k, v in data.items()
        if k not in skip
    )


def dump(data: Any) -> str:
    """Render data as indented JSON."""
    return json.dumps(data, indent=2, ensure_ascii=False)
