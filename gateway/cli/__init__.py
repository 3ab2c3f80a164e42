"""The `sendbrake` command: serve, check configuration, test policies, manage tokens, review.

Commands are thin: they load settings once, configure logging, and call the service, the
policy loader, the spool's token table, or the ops HTTP API. Each group lives in its own
module; this one holds the entry point, `serve` and `config`.
"""

from __future__ import annotations

import asyncio
import signal
import sys
from pathlib import Path

import click
import uvloop
import yaml
from prometheus_client import CollectorRegistry

from gateway import __version__, log, settings
from gateway.cli.common import CONFIG_HELP, load_settings
from gateway.cli.policies import policies
from gateway.cli.preflight import preflight
from gateway.cli.review import campaigns, relay
from gateway.cli.settings_docs import reference_markdown
from gateway.cli.tokens import tokens_group
from gateway.cli.users import tls_group, users_group
from gateway.errors import SendbrakeError
from gateway.metrics import Metrics
from gateway.service import Gateway


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="sendbrake")
def main() -> None:
    """sendbrake: a guardrail SMTP relay that holds risky marketing campaigns for review."""


@main.command()
@click.option("--config", "-c", type=click.Path(path_type=Path, dir_okay=False), help=CONFIG_HELP)
def serve(config: Path | None) -> None:
    """Run the gateway: SMTP ingress, relay workers and the HTTP surface."""
    cfg = load_settings(config)
    log.configure(cfg.log.format, cfg.log.level, final=True)
    gateway = Gateway(cfg, metrics=Metrics.create(CollectorRegistry()))

    async def run() -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, gateway.stop)
        # SIGHUP reloads the policy files; an invalid set keeps the old one (logged).
        loop.add_signal_handler(signal.SIGHUP, gateway.request_reload)
        await gateway.run()

    try:
        if cfg.runtime.event_loop == "uvloop":
            uvloop.run(run())
        else:
            asyncio.run(run())
    except SendbrakeError as exc:
        raise click.ClickException(str(exc)) from None
    except OSError as exc:  # typically: address already in use
        raise click.ClickException(f"cannot start: {exc}") from None


@main.group()
def config() -> None:
    """Inspect the configuration."""


@config.command("show")
@click.option(
    "--config", "-c", "path", type=click.Path(path_type=Path, dir_okay=False), help=CONFIG_HELP
)
def config_show(path: Path | None) -> None:
    """Print the effective configuration as YAML, secrets masked."""
    data = settings.effective(load_settings(path))
    click.echo(yaml.safe_dump(data, sort_keys=False, allow_unicode=True), nl=False)


@config.command("docs")
@click.option(
    "--output",
    "-o",
    type=click.Path(path_type=Path, dir_okay=False),
    help="Write here instead of standard output.",
)
def config_docs(output: Path | None) -> None:
    """Print the settings reference (docs/settings.md) generated from the code."""
    text = reference_markdown()
    if output is None:
        sys.stdout.write(text)
    else:
        output.write_text(text, encoding="utf-8")
        click.echo(f"wrote {output}", err=True)


main.add_command(policies)
main.add_command(tokens_group)
main.add_command(users_group)
main.add_command(tls_group)
main.add_command(campaigns)
main.add_command(relay)
main.add_command(preflight)
