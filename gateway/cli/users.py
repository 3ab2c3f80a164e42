"""`sendbrake users` and `sendbrake tls`: who may submit over SMTP, and over what.

Users live in the spool (every replica sees the same ones) with a salted argon2id hash of
their password, which is read from standard input so it never shows in a process list or
a shell history. The AUTH user is the campaign's `client`: two users never share a
campaign.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import re
import sys
import time
from pathlib import Path

import click

from gateway.cli.common import config_option, dump, fail, table
from gateway.cli.spool import with_spool
from gateway.errors import Conflict
from gateway.ingress.auth import hash_password
from gateway.model import SmtpUser
from gateway.ops.views import timestamp

# No "/": a user name can never equal an allowed network, the other kind of client.
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@+-]{0,63}$")
_DOMAIN = re.compile(r"^(?=.{1,253}$)([a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z0-9-]{2,63}$")
MIN_PASSWORD = 12


@click.group("users")
def users_group() -> None:
    """Manage SMTP AUTH users, stored in the spool (only salted password hashes are kept)."""


@users_group.command("add")
@click.argument("name")
@click.option(
    "--allow-sender-domain",
    "domains",
    multiple=True,
    metavar="DOMAIN",
    help="A domain MAIL FROM may use (its subdomains too); repeat for several. Default: any.",
)
@config_option
def users_add(name: str, domains: tuple[str, ...], config_path: Path | None) -> None:
    """Add the SMTP user NAME; read its password from standard input (one line)."""
    if not _NAME.match(name):
        fail(
            f"error: {name!r} is not a user name: letters, digits and . _ @ + -,"
            " at most 64, starting with a letter or digit"
        )
    wrong = [d for d in domains if not _DOMAIN.match(d.casefold())]
    if wrong:
        fail(f"error: not a domain name: {', '.join(map(repr, wrong))}")
    password = sys.stdin.readline().rstrip("\r\n")
    if len(password) < MIN_PASSWORD:
        fail(f"error: the password on standard input must have at least {MIN_PASSWORD} characters")
    user = SmtpUser(
        name=name,
        password_hash=hash_password(password),
        sender_domains=tuple(sorted({d.casefold() for d in domains})),
        created_at=time.time(),
    )
    try:
        with_spool(config_path, lambda spool: spool.add_user(user), create=True)
    except Conflict as exc:
        fail(f"error: {exc}")
    allowed = ", ".join(user.sender_domains) or "any domain"
    click.echo(f"added SMTP user {name!r} (may send from {allowed})", err=True)


@users_group.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@config_option
def users_list(as_json: bool, config_path: Path | None) -> None:
    """List the SMTP users stored in the spool."""
    users = with_spool(config_path, lambda spool: spool.smtp_users(), create=False)
    if as_json:
        click.echo(
            dump(
                [
                    {
                        "name": u.name,
                        "sender_domains": list(u.sender_domains),
                        "created_at": timestamp(u.created_at),
                    }
                    for u in users
                ]
            )
        )
    elif not users:
        click.echo("no SMTP users in the spool")
    else:
        rows = [
            [u.name, ",".join(u.sender_domains) or "(any)", timestamp(u.created_at)] for u in users
        ]
        click.echo(table(("NAME", "SENDER DOMAINS", "CREATED"), rows))


@users_group.command("remove")
@click.argument("name")
@config_option
def users_remove(name: str, config_path: Path | None) -> None:
    """Remove the SMTP user NAME; its next login fails (open sessions end as they are)."""
    if not with_spool(config_path, lambda spool: spool.remove_user(name), create=False):
        fail(f"error: no SMTP user named {name!r} in the spool")
    click.echo(f"removed SMTP user {name!r}", err=True)


@click.group("tls")
def tls_group() -> None:
    """Certificates for the SMTP listener's STARTTLS."""


@tls_group.command("self-signed")
@click.argument("folder", type=click.Path(file_okay=False, path_type=Path))
@click.option(
    "--host",
    "hosts",
    multiple=True,
    default=("localhost",),
    show_default=True,
    help="A name or address the certificate is for; repeat for several.",
)
@click.option("--days", default=30, show_default=True, help="How long it is valid.")
def tls_self_signed(folder: Path, hosts: tuple[str, ...], days: int) -> None:
    """Write a development certificate and key (cert.pem, key.pem) into FOLDER.

    Clients must be told to trust it (or not to verify): for tests and trials only; a
    relay on the send path needs a certificate its clients trust.
    """
    # Imported here: only this command needs the library's X.509 machinery.
    from cryptography import x509  # noqa: PLC0415
    from cryptography.hazmat.primitives import hashes, serialization  # noqa: PLC0415
    from cryptography.hazmat.primitives.asymmetric import ec  # noqa: PLC0415
    from cryptography.x509.oid import NameOID  # noqa: PLC0415

    key = ec.generate_private_key(ec.SECP256R1())
    names: list[x509.GeneralName] = []
    for host in hosts:
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            names.append(x509.DNSName(host))
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hosts[0])])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=days))
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .sign(key, hashes.SHA256())
    )
    folder.mkdir(parents=True, exist_ok=True)
    cert_path, key_path = folder / "cert.pem", folder / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.touch(mode=0o600)
    key_path.chmod(0o600)  # the key is readable by its owner only, before it is written
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    click.echo(f"wrote {cert_path} and {key_path} (valid {days} days for {', '.join(hosts)})")
    click.echo(f"  smtp.tls.cert: {cert_path}\n  smtp.tls.key: {key_path}")
