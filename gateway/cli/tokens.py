"""`sendbrake tokens`: API tokens kept in the spool, of which only hashes are stored."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import click

from gateway.cli.common import config_option, dump, fail, load_settings, table
from gateway.cli.spool import with_spool
from gateway.errors import Conflict
from gateway.model import Role, Token
from gateway.ops.auth import new_token, token_hash
from gateway.ops.views import timestamp


@click.group("tokens")
def tokens_group() -> None:
    """Manage API tokens stored in the spool (only their hashes are kept)."""


@tokens_group.command("add")
@click.argument("name")
@click.option(
    "--role",
    "roles",
    multiple=True,
    required=True,
    type=click.Choice([str(role) for role in Role]),
    help="What the token may do; repeat for several roles.",
)
@click.option("--identity", help="Protected identity the token signs off for.")
@config_option
def tokens_add(
    name: str, roles: tuple[str, ...], identity: str | None, config_path: Path | None
) -> None:
    """Create a token NAME; print it once, on the last line of standard output."""
    if not name.strip():
        fail("error: a token needs a name")
    if name in {t.name for t in load_settings(config_path).ops.tokens}:
        fail(f"error: the config file already has a token named {name!r}; choose another name")
    secret = new_token()
    record = Token(
        name=name,
        sha256=token_hash(secret),
        roles=frozenset(Role(role) for role in roles),
        identity=identity,
        created_at=time.time(),
    )
    try:
        with_spool(config_path, lambda spool: spool.add_token(record), create=True)
    except Conflict as exc:
        fail(f"error: {exc}; choose another name")
    click.echo(
        f"added token {name!r} (roles: {', '.join(sorted(record.roles))}); "
        "it is shown only this once:",
        err=True,
    )
    click.echo(secret)


@tokens_group.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@config_option
def tokens_list(as_json: bool, config_path: Path | None) -> None:
    """List the tokens stored in the spool, revoked ones included."""
    stored = with_spool(config_path, lambda spool: spool.tokens(), create=False)
    if as_json:
        click.echo(
            dump(
                [
                    {
                        "name": t.name,
                        "roles": sorted(t.roles),
                        "identity": t.identity,
                        "created_at": timestamp(t.created_at),
                        "revoked_at": timestamp(t.revoked_at),
                    }
                    for t in stored
                ]
            )
        )
    elif not stored:
        click.echo("no tokens in the spool")
    else:
        rows = [
            [
                t.name,
                ",".join(sorted(t.roles)),
                t.identity or "-",
                timestamp(t.created_at),
                timestamp(t.revoked_at) or "-",
            ]
            for t in stored
        ]
        click.echo(table(("NAME", "ROLES", "IDENTITY", "CREATED", "REVOKED"), rows))


@tokens_group.command("revoke")
@click.argument("name")
@config_option
def tokens_revoke(name: str, config_path: Path | None) -> None:
    """Revoke the token NAME; requests with it fail from now on."""
    revoked = with_spool(
        config_path, lambda spool: spool.revoke_token(name, time.time()), create=False
    )
    if not revoked:
        fail(
            f"error: no live token named {name!r} in the spool "
            "(tokens in the config file are removed by editing it)"
        )
    click.echo(f"revoked token {name!r}", err=True)


@tokens_group.command("hash")
def tokens_hash() -> None:
    """Read a token on standard input; print the SHA-256 for the config's ops.tokens."""
    secret = sys.stdin.read().strip()
    if not secret:
        fail("error: no token on standard input")
    click.echo(token_hash(secret))
