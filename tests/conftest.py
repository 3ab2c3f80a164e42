"""Shared fixtures: fresh settings, registry, log config and spool folder per test.

Only fixtures live here; what test modules import lives in the helper modules
(tests/harness.py, tests/mail.py, tests/metrics.py, ...), see tests/test_test_layout.py.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import structlog

from gateway import settings as settings_mod
from gateway.log import configure
from tests import postgres
from tests.fakes.upstream import CapturingUpstream
from tests.harness import make_settings


@pytest.fixture(autouse=True, scope="session")
def _drop_postgres_schemas() -> Iterator[None]:
    yield
    postgres.drop_created()


@pytest.fixture(params=["sqlite", "postgres"])
def unopened_spool_url(request, tmp_path: Path) -> Iterator[str]:
    """A spool URL no gateway has opened yet, on each backend (the CLI tests create it)."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path}/spool.db"
        return
    with postgres.private_schema() as url:
        yield url


@pytest.fixture(autouse=True)
def _reset_logging() -> Iterator[None]:
    structlog.reset_defaults()
    configure("json", "warning")
    yield
    structlog.reset_defaults()


@pytest.fixture
async def upstream() -> AsyncIterator[CapturingUpstream]:
    up = CapturingUpstream()
    await up.start()
    yield up
    await up.stop()


@pytest.fixture
def settings_for(tmp_path: Path) -> Callable[..., settings_mod.Settings]:
    def build(
        upstream_port: int | None = None, **sections: dict[str, Any]
    ) -> settings_mod.Settings:
        return make_settings(tmp_path, upstream_port, **sections)

    return build
