"""Private PostgreSQL schemas for tests, on the server CI and this machine run.

`SENDBRAKE_TEST_POSTGRES` names the server (default: 127.0.0.1:5432, database `test`,
trust auth, as CI has it). A test gets a schema of its own, named in the spool URL's
`options` (search_path), so tests never see each other's rows.

`SENDBRAKE_TEST_SPOOL=postgres` runs the gateway tests on PostgreSQL instead of SQLite
(`make test` runs the end-to-end and API tests once more that way).
"""

from __future__ import annotations

import hashlib
import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import psycopg

SERVER = os.environ.get("SENDBRAKE_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test")
BACKEND = os.environ.get("SENDBRAKE_TEST_SPOOL", "sqlite")
_created: dict[str, str] = {}


def _url(schema: str) -> str:
    joiner = "&" if "?" in SERVER else "?"
    return f"{SERVER}{joiner}options=-csearch_path%3D{schema}"


def _create(schema: str) -> None:
    with psycopg.connect(SERVER, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")


def _drop(schema: str) -> None:
    with psycopg.connect(SERVER, autocommit=True) as conn:
        conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")


@contextmanager
def private_schema() -> Iterator[str]:
    """Create a schema, yield a spool URL whose connections use it, drop it afterwards."""
    schema = f"sendbrake_test_{uuid.uuid4().hex[:12]}"
    _create(schema)
    try:
        yield _url(schema)
    finally:
        _drop(schema)


def schema_url(owner: str) -> str:
    """Return the URL of `owner`'s schema (a test's folder), created on first use."""
    if owner not in _created:
        schema = f"sendbrake_test_{hashlib.sha256(owner.encode()).hexdigest()[:12]}"
        _drop(schema)  # left by an interrupted run
        _create(schema)
        _created[owner] = schema
    return _url(_created[owner])


def drop_created() -> None:
    """Drop every schema `schema_url` created in this process, on one connection.

    Only this process's: with pytest-xdist each worker drops its own schemas (another
    worker's tests may still run in theirs). One connection for all of them, since a
    connection costs about as much as the drop (a PostgreSQL pass leaves some 150).
    """
    if not _created:
        return
    with psycopg.connect(SERVER, autocommit=True) as conn:
        while _created:
            conn.execute(f"DROP SCHEMA IF EXISTS {_created.popitem()[1]} CASCADE")
