r"""Shared pieces of the `sendbrake` commands: options, settings loading, output helpers.

Errors go to standard error as `error: …` with exit status 1; data goes to standard output.
Text that came from outside (campaign keys, subjects, findings, problem details) reaches
the terminal escaped (`terminal_safe`): control characters and bidirectional overrides
are shown as `\x1b`, `\u202e`, never sent to the terminal as they are.
"""

from __future__ import annotations

import json
import re
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


# C0 and C1 controls (ESC, CSI, BEL, CR, ...) and the bidirectional marks and overrides
# that can make a terminal show text other than what is there.
_UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]")
_UNSAFE_BEYOND_C0 = re.compile("[\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]")


def terminal_safe(text: str) -> str:
    r"""Return `text` with each control or bidi character escaped (`\x1b`, `\n`, `\u202e`)."""
    return _UNSAFE.sub(lambda m: ascii(m.group())[1:-1], text)


def escaped(data: Any) -> Any:
    """Return JSON-like data with every string (keys too) made `terminal_safe`."""
    if isinstance(data, str):
        return terminal_safe(data)
    if isinstance(data, dict):
        return {terminal_safe(str(k)): escaped(v) for k, v in data.items()}
    if isinstance(data, list | tuple):
        return [escaped(v) for v in data]
    return data


def load_settings(config: Path | None) -> settings.Settings:
    """Load the settings, or exit naming file, line, key and reason."""
    try:
        return settings.load(config)
    except ConfigError as exc:
        raise click.ClickException(f"invalid configuration: {exc}") from None


def fail(*lines: str) -> NoReturn:
    """Print `lines` to standard error and exit with status 1."""
    for line in lines:
        click.echo(terminal_safe(line), err=True)
    raise click.exceptions.Exit(1)


def plural(count: int, word: str) -> str:
    """Return `count word` with the word in plural when it must be."""
    return f"{count} {word}" if count == 1 else f"{count} {word}s"


def table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """Render rows as left-aligned columns under an upper-case header."""
    cells = [list(header), *([terminal_safe(str(cell)) for cell in row] for row in rows)]
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
    r"""Render data as indented JSON; controls and bidi marks inside strings as \u escapes.

    json.dumps escapes C0 controls itself; the others are only ever inside strings, where
    a \u escape means the same character.
    """
    text = json.dumps(data, indent=2, ensure_ascii=False)
    return _UNSAFE_BEYOND_C0.sub(lambda m: f"\\u{ord(m.group()):04x}", text)
