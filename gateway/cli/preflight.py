"""`sendbrake preflight FILE.eml`: what a send of a message would meet, before the send.

Calls `POST /api/v1/preflight` of a running gateway (its real policy set, segments and
campaigns); nothing is stored or sent. The exit status suits a CI step: 0 when the mail
would go out, 3 when it would be held, 1 on an error.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import click

from gateway.cli.common import pairs
from gateway.cli.review import Api, api_options

HELD_EXIT = 3


def _verdict(answer: Mapping[str, Any]) -> str:
    campaign = f"campaign {answer['key']} (client {answer['client']})"
    lines = [f"would be HELD: {campaign}" if answer["held"] else f"would go out: {campaign}"]
    for f in answer["findings"]:
        lines.append(f"  {f['rule']} [{f['kind']}, {f['mode']}]: {f['message']}")
        if evidence := pairs(f.get("evidence", {})):
            lines.append(f"    {evidence}")
    if not answer["findings"]:
        lines.append("  no findings")
    return "\n".join(lines)


@click.command()
@click.argument("message", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--declared", "size", type=click.IntRange(min=0), help="Declared size.")
@click.option("--category", help="Declared category, e.g. survey.")
@click.option("--locale", help="Declared locale, e.g. de-AT.")
@click.option(
    "--to",
    "recipients",
    multiple=True,
    metavar="ADDRESS",
    help="A recipient (repeat); default: To and Cc.",
)
@click.option(
    "--to-segment", "segment", metavar="NAME", help="Or the audience: a loaded segment's members."
)
@click.option("--from", "mail_from", metavar="ADDRESS", help="Envelope sender; default: From.")
@click.option(
    "--client",
    help="Judge it as this client's next message (an SMTP user, or a network such as 127.0.0.0/8).",
)
@api_options
def preflight(
    api: Api,
    *,
    message: Path,
    size: int | None,
    category: str | None,
    locale: str | None,
    recipients: tuple[str, ...],
    segment: str | None,
    mail_from: str | None,
    client: str | None,
) -> None:
    """Show every finding a send of MESSAGE (an .eml file) would raise; send nothing.

    Exit status: 0 when it would go out, 3 when it would be held, 1 on an error.
    """
    body: dict[str, Any] = {"message_base64": base64.b64encode(message.read_bytes()).decode()}
    given = {
        "size": size,
        "category": category,
        "locale": locale,
        "recipients": list(recipients),
        "segment": segment,
        "mail_from": mail_from,
        "client": client,
    }
    body.update({name: value for name, value in given.items() if value not in (None, [])})
    answer = api.call("POST", "/preflight", body=body).body
    api.output(answer, _verdict)
    if answer["held"]:
        raise SystemExit(HELD_EXIT)
