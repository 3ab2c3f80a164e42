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
from tests.fakes.sendgrid_provider import FakeSendGrid
from tests.fakes.upstream import CapturingUpstream
from tests.harness import make_settings
from tests.leaks import leaks

# Log lines with a secret in them, from every test's captured output (tests/leaks.py); a
# dict as an ordered set, since a test's later reports repeat its earlier sections.
_LEAKED: dict[str, None] = {}


@pytest.fixture(autouse=True, scope="session")
def _drop_postgres_schemas() -> Iterator[None]:
    yield
    postgres.drop_created()


@pytest.fixture(autouse=True, scope="session")
def _no_secret_in_log_files(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Fail the run if any log file a test wrote (gateway processes, Postfix) has a secret."""
    yield
    found = [
        f"{path}: {line[:200]}"
        for path in sorted(tmp_path_factory.getbasetemp().rglob("*.log"))
        for line in leaks(path.read_text(errors="replace"))
    ]
    assert not found, "secrets in log files:\n" + "\n".join(found)


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    """Look for secrets in what each test logged and printed, passed tests included."""
    for title, text in report.sections:
        _LEAKED.update(dict.fromkeys(f"{report.nodeid} ({title}): {x[:200]}" for x in leaks(text)))


def pytest_sessionfinish(session: pytest.Session) -> None:
    if _LEAKED:
        reporter = session.config.pluginmanager.get_plugin("terminalreporter")
        if reporter is not None:
            reporter.write_line("secrets in captured log lines:\n" + "\n".join(_LEAKED), red=True)
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


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
async def sendgrid() -> AsyncIterator[FakeSendGrid]:
    provider = FakeSendGrid()
    await provider.start()
    yield provider
    await provider.stop()


@pytest.fixture
def settings_for(tmp_path: Path) -> Callable[..., settings_mod.Settings]:
    def build(
        upstream_port: int | None = None, **sections: dict[str, Any]
    ) -> settings_mod.Settings:
        return make_settings(tmp_path, upstream_port, **sections)

    return build
