"""The spool fixtures: one per backend, so every contract test runs against each.

`spools` makes spools over one storage (one SQLite file, one PostgreSQL schema): a second
spool from it is a restarted gateway on SQLite, another replica on PostgreSQL.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import pytest

from gateway.spool import Spool, SqliteSpool
from gateway.spool.postgres import PostgresSpool
from tests.postgres import private_schema

SpoolFactory = Callable[[], Spool]


@pytest.fixture(params=["sqlite", "postgres"])
def spools(request, tmp_path: Path) -> Iterator[SpoolFactory]:
    if request.param == "sqlite":
        yield lambda: SqliteSpool(tmp_path / "spool.db")
        return
    with private_schema() as url:
        yield lambda: PostgresSpool(url)


@pytest.fixture
async def spool(spools: SpoolFactory) -> AsyncIterator[Spool]:
    store = spools()
    await store.open()
    yield store
    await store.close()
