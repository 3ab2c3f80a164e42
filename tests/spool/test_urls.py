"""spool.url: which backend it names, and how it appears in logs and messages."""

from __future__ import annotations

import pytest

from gateway.errors import ConfigError
from gateway.settings import SpoolSettings
from gateway.spool import SqliteSpool, create_spool, redacted
from gateway.spool.postgres import PostgresSpool


def test_a_postgresql_url_makes_a_postgres_spool_sized_by_the_settings():
    settings = SpoolSettings(url="postgresql://gw:secret@db.internal/sendbrake", writers=3)
    spool = create_spool(settings)
    assert isinstance(spool, PostgresSpool)
    assert spool._writer._count == 3
    assert isinstance(create_spool(SpoolSettings(url="sqlite:///var/s.db")), SqliteSpool)


def test_an_unknown_scheme_names_the_key():
    with pytest.raises(ConfigError, match=r"spool.url.*'mysql'"):
        create_spool(SpoolSettings(url="mysql://db/x"))


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("postgresql://gw:s3cr%40t@db.internal:5432/sb", "postgresql://gw:***@db.internal:5432/sb"),
        (
            "postgresql://gw@db.internal/sb?sslmode=require",
            "postgresql://gw@db.internal/sb?sslmode=require",
        ),
        ("sqlite:///var/spool.db", "sqlite:///var/spool.db"),
    ],
)
def test_a_password_never_reaches_a_log_line(url, shown):
    assert redacted(url) == shown
