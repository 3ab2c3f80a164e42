"""The spool fixture: one per backend, so every contract test runs against each."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from gateway.spool import SqliteSpool


@pytest.fixture(params=["sqlite"])
async def spool(request, tmp_path: Path) -> AsyncIterator[SqliteSpool]:
    store = SqliteSpool(tmp_path / "spool.db")
    await store.open()
    yield store
    await store.close()
