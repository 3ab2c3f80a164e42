"""The spool as the command line's tools open it: beside gateways that may be running."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TypeVar

from gateway import log
from gateway.cli.common import fail, load_settings
from gateway.errors import ConfigError, SpoolError
from gateway.spool import create_spool, redacted, sqlite_path
from gateway.spool.base import Spool

T = TypeVar("T")


def with_spool(
    config_path: Path | None,
    work: Callable[[Spool], Awaitable[T]],
    *,
    create: bool,
    log_level: str = "warning",
) -> T:
    """Run `work` on the configured spool, beside a running gateway if there is one.

    Through the spool port and its locking (`Storage.attach`): no schema migration
    behind a live SQLite gateway, writes in transactions that take the database's locks.
    A PostgreSQL spool may be created (migrated) here: its migrations take a lock of
    their own, beside any number of running replicas. Gateways look tokens and SMTP
    users up on every request and login, so changes work at once on all of them.
    """
    cfg = load_settings(config_path)
    log.configure(cfg.log.format, log_level)  # standard output is for the result alone
    try:
        where = str(sqlite_path(cfg.spool.url))
    except ConfigError:
        where, shared = redacted(cfg.spool.url), True
    else:
        shared = False
        if not create and not Path(where).exists():
            fail(f"error: no spool database at {where} (spool.url {cfg.spool.url})")
    try:
        spool = create_spool(cfg.spool)
    except ConfigError as exc:
        fail(f"error: {exc}")

    async def run() -> T:
        await (spool.open() if create and shared else spool.attach())
        try:
            return await work(spool)
        finally:
            await spool.close()

    try:
        return asyncio.run(run())
    except SpoolError as exc:
        fail(f"error: spool database {where}: {exc}")
