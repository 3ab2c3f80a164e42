"""The durable spool: the Spool protocol and a factory that picks the backend from a URL."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit

from gateway.errors import ConfigError
from gateway.settings import SpoolSettings
from gateway.spool.base import Spool
from gateway.spool.sqlite import SqliteSpool

__all__ = ["Spool", "SqliteSpool", "create_spool", "redacted", "sqlite_path"]
POSTGRES_SCHEMES = {"postgresql", "postgres"}


def sqlite_path(url: str) -> Path:
    """Return the file of ``sqlite:///relative`` or ``sqlite:////absolute``."""
    parts = urlsplit(url)
    if (
        parts.scheme != "sqlite"
        or parts.netloc
        or not parts.path.startswith("/")
        or len(parts.path) < 2
    ):
        raise ConfigError("spool.url", "spool.url", f"not a sqlite URL: {url!r}")
    return Path(parts.path[1:])


def redacted(url: str) -> str:
    """Return `url` with its password (if any) replaced, fit for a log line or a message."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return parts._replace(netloc=netloc).geturl()


def create_spool(settings: SpoolSettings) -> Spool:
    """Build (but do not open) the spool that `settings.url` names."""
    scheme = urlsplit(settings.url).scheme
    if scheme == "sqlite":
        return SqliteSpool(
            sqlite_path(settings.url),
            commit_delay=settings.commit_delay,
            max_batch=settings.max_batch,
            busy_timeout=settings.busy_timeout,
        )
    if scheme in POSTGRES_SCHEMES:
        try:
            from gateway.spool.postgres import PostgresSpool  # noqa: PLC0415 - optional driver
        except ImportError as exc:  # the optional driver is not installed
            raise ConfigError(
                "spool.url",
                "spool.url",
                f"a PostgreSQL spool needs psycopg: pip install 'sendbrake[postgres]' ({exc})",
            ) from None
        return PostgresSpool(
            settings.url,
            writers=settings.writers,
            readers=settings.readers,
            commit_delay=settings.commit_delay,
            max_batch=settings.max_batch,
            connect_timeout=settings.connect_timeout,
        )
    raise ConfigError("spool.url", "spool.url", f"unknown spool URL scheme {scheme!r}")
