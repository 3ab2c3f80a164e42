"""Statements of audience segments: versioned member lists and their lookups.

A load writes a new version's members in many small transactions (so ingest is never
stalled behind a ten-million-row insert), then `publish` moves the segment's pointer to it
in one transaction. Old versions are retired and purged in bounded chunks afterwards.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from gateway.errors import Conflict
from gateway.model import Segment
from gateway.spool.dialect import Conn

PURGE_CHUNK = 50_000
_COLUMNS = "name, version, size, lines, invalid, source, digest, loaded_by, loaded_at"


def begin(conn: Conn, name: str, now: float) -> int:
    """Start loading a new version of `name`; return its version number."""
    row = conn.execute(
        "INSERT INTO segment_versions (name, state, started_at) VALUES (?, 'loading', ?)"
        " RETURNING version",
        (name, now),
    ).fetchone()
    return int(row[0])


def add(conn: Conn, version: int, hashes: Iterable[int]) -> int:
    """Add members to a loading version; return how many were new (repeats are ignored)."""
    cursor = conn.executemany(
        "INSERT INTO segment_members (version, hash) VALUES (?, ?) ON CONFLICT DO NOTHING",
        [(version, h) for h in sorted(hashes)],  # in key order: fewer B-tree pages touched
    )
    return int(cursor.rowcount)


def publish(conn: Conn, segment: Segment) -> int | None:
    """Make `segment.version` the live list of `segment.name`; return the retired version."""
    state = conn.execute(
        "SELECT state FROM segment_versions WHERE version = ?", (segment.version,)
    ).fetchone()
    if state is None or state[0] != "loading":
        raise Conflict(f"segment version {segment.version} is not being loaded")
    old = conn.execute("SELECT version FROM segments WHERE name = ?", (segment.name,)).fetchone()
    conn.execute(
        f"INSERT INTO segments ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
        " ON CONFLICT (name) DO UPDATE SET version = excluded.version, size = excluded.size,"
        " lines = excluded.lines, invalid = excluded.invalid, source = excluded.source,"
        " digest = excluded.digest, loaded_by = excluded.loaded_by, loaded_at = excluded.loaded_at",
        (
            segment.name,
            segment.version,
            segment.size,
            segment.lines,
            segment.invalid,
            segment.source,
            segment.digest,
            segment.loaded_by,
            segment.loaded_at,
        ),
    )
    conn.execute("UPDATE segment_versions SET state = 'live' WHERE version = ?", (segment.version,))
    if old is None:
        return None
    conn.execute("UPDATE segment_versions SET state = 'retired' WHERE version = ?", (old[0],))
    return int(old[0])


def abandon(conn: Conn, version: int) -> None:
    """Give up a load that failed; its rows are purged later."""
    conn.execute(
        "UPDATE segment_versions SET state = 'retired' WHERE version = ? AND state = 'loading'",
        (version,),
    )


def retire_unfinished(conn: Conn) -> int:
    """At start, retire loads a previous process did not finish."""
    return conn.execute(
        "UPDATE segment_versions SET state = 'retired' WHERE state = 'loading'"
    ).rowcount


def purge(conn: Conn) -> int:
    """Delete up to PURGE_CHUNK members of retired versions; return how many went."""
    row = conn.execute(
        "SELECT version FROM segment_versions WHERE state = 'retired' LIMIT 1"
    ).fetchone()
    if row is None:
        return 0
    deleted = conn.execute(
        "DELETE FROM segment_members WHERE version = ? AND hash IN ("
        " SELECT hash FROM segment_members WHERE version = ? LIMIT ?)",
        (row[0], row[0], PURGE_CHUNK),
    ).rowcount
    if deleted == 0:
        conn.execute("DELETE FROM segment_versions WHERE version = ?", (row[0],))
    return deleted or 1  # a removed empty version is progress too


def segments(conn: Conn) -> list[Segment]:
    """Every live segment, by name."""
    return [Segment(*row) for row in conn.execute(f"SELECT {_COLUMNS} FROM segments ORDER BY name")]


def segment(conn: Conn, name: str) -> Segment | None:
    """One live segment."""
    row = conn.execute(f"SELECT {_COLUMNS} FROM segments WHERE name = ?", (name,)).fetchone()
    return None if row is None else Segment(*row)


def members(conn: Conn, version: int, hashes: Sequence[int]) -> set[int]:
    """Return which of `hashes` belong to a segment version (one index probe each)."""
    found: set[int] = set()
    for start in range(0, len(hashes), 500):
        chunk = hashes[start : start + 500]
        marks = ",".join("?" * len(chunk))
        found.update(
            h
            for (h,) in conn.execute(
                f"SELECT hash FROM segment_members WHERE version = ? AND hash IN ({marks})",
                (version, *chunk),
            )
        )
    return found


def page(conn: Conn, version: int, after: int | None, limit: int) -> list[int]:
    """Return up to `limit` members of a version in hash order, after `after`."""
    low = "" if after is None else " AND hash > ?"
    rows = conn.execute(
        f"SELECT hash FROM segment_members WHERE version = ?{low} ORDER BY hash LIMIT ?",
        (version, *(() if after is None else (after,)), limit),
    )
    return [int(h) for (h,) in rows]


def version_of(conn: Conn, name: str) -> tuple[int, int] | None:
    """Return (live version, size) of a segment, or None when it was never loaded."""
    row = conn.execute("SELECT version, size FROM segments WHERE name = ?", (name,)).fetchone()
    return None if row is None else (int(row[0]), int(row[1]))
