"""What the shared SQL statements need to know of the database they run on.

The statement modules (`sql_queue`, `sql_review`, `sql_access`, `sql_segments`, `sql_tx`)
are written once, with `?` placeholders, against `Conn`: SQLite's connection as it is, and
PostgreSQL's through a thin adapter (`gateway.spool.postgres`). Where the two engines must
differ (row locks across replicas, an index hint), the statements ask the connection's
`Dialect`, never the backend module.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Protocol


class Cursor(Protocol):
    """The part of a DB-API cursor the statements use."""

    @property
    def rowcount(self) -> int: ...

    def fetchone(self) -> Any: ...

    def fetchall(self) -> list[Any]: ...

    def __iter__(self) -> Iterator[Any]: ...


class Conn(Protocol):
    """The part of a DB-API connection the statements use, and its dialect."""

    dialect: Dialect

    def execute(self, sql: str, parameters: Sequence[Any] = ..., /) -> Cursor: ...

    def executemany(self, sql: str, parameters: Iterable[Sequence[Any]], /) -> Cursor: ...


@dataclass(frozen=True, slots=True)
class Dialect:
    """How one database engine runs the shared statements and the writer's transactions."""

    name: str
    begin: str  # opens the writer's transaction
    errors: tuple[type[Exception], ...]  # what the driver raises for a failed statement
    # Still inside the transaction after a unit failed (else the engine rolled it all back).
    in_transaction: Callable[[Any], bool]
    # A failure a second try of the unit, alone and after the batch commits, can overcome
    # (PostgreSQL's deadlock victim); never true on SQLite's single writer.
    transient: Callable[[BaseException], bool]
    # The connection is gone (the server restarted): open a new one and try once more.
    broken: Callable[[Any], bool]
    # Several processes write at once: claims lock the messages they take (FOR NO KEY
    # UPDATE SKIP LOCKED) and an admission locks its campaign's row until it commits.
    shared: bool
    # Where shared: locks a campaign key (client, key) until the transaction commits.
    key_lock: str = ""
    leased_index: str = ""  # hint that makes the expired-lease probe one index seek
