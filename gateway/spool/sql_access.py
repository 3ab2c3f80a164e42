"""Statements of who may act and what they did: API tokens and the audit log.

Tokens are stored as hashes only; the audit table refuses updates and deletes (a trigger
in the migrations), so the log is append-only. Plain functions on a connection.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from gateway.errors import Conflict
from gateway.model import AuditEntry, Role, SmtpUser, Token
from gateway.spool.dialect import Conn


def append_audit(conn: Conn, entry: AuditEntry) -> int:
    """Append one audit entry; the table refuses updates and deletes."""
    row = conn.execute(
        "INSERT INTO audit (at, actor, action, target, reason, outcome, details)"
        " VALUES (?, ?, ?, ?, ?, ?, ?) RETURNING id",
        (
            entry.at,
            entry.actor,
            entry.action,
            entry.target,
            entry.reason,
            entry.outcome,
            json.dumps(dict(entry.details)),
        ),
    ).fetchone()
    return int(row[0])


def audit_log(conn: Conn, limit: int, before: int | None) -> list[AuditEntry]:
    """Newest first; `before` is the last ID of the previous page."""
    rows = conn.execute(
        "SELECT id, at, actor, action, target, reason, outcome, details FROM audit"
        " WHERE id < ? ORDER BY id DESC LIMIT ?",
        (before if before is not None else 2**62, limit),
    ).fetchall()
    return [
        AuditEntry(at, actor, action, target, reason, outcome, json.loads(details), rid)
        for rid, at, actor, action, target, reason, outcome, details in rows
    ]


def add_token(conn: Conn, token: Token) -> None:
    """Store a token's hash; a name in use (even revoked) is a conflict."""
    added = conn.execute(
        "INSERT INTO tokens (name, sha256, roles, identity, created_at) VALUES (?, ?, ?, ?, ?)"
        " ON CONFLICT DO NOTHING RETURNING name",
        (
            token.name,
            token.sha256,
            json.dumps(sorted(token.roles)),
            token.identity,
            token.created_at,
        ),
    ).fetchone()
    if added is None:
        raise Conflict(f"a token named {token.name!r} exists already")


def tokens(conn: Conn) -> list[Token]:
    """Every stored token, revoked ones included."""
    return [
        _token(row)
        for row in conn.execute(
            "SELECT name, sha256, roles, identity, created_at, revoked_at FROM tokens ORDER BY name"
        )
    ]


def token_by_hash(conn: Conn, sha256: str) -> Token | None:
    """Return the live token with this hash, if any."""
    row = conn.execute(
        "SELECT name, sha256, roles, identity, created_at, revoked_at FROM tokens"
        " WHERE sha256 = ? AND revoked_at IS NULL",
        (sha256,),
    ).fetchone()
    return None if row is None else _token(row)


def revoke_token(conn: Conn, name: str, now: float) -> bool:
    """Revoke a token by name; False when there is no live token of that name."""
    return (
        conn.execute(
            "UPDATE tokens SET revoked_at = ? WHERE name = ? AND revoked_at IS NULL", (now, name)
        ).rowcount
        == 1
    )


def _token(row: Sequence[Any]) -> Token:
    name, sha256, roles, identity, created_at, revoked_at = row
    return Token(
        name=name,
        sha256=sha256,
        roles=frozenset(Role(r) for r in json.loads(roles)),
        identity=identity,
        created_at=created_at,
        revoked_at=revoked_at,
    )


def add_user(conn: Conn, user: SmtpUser) -> None:
    """Store an SMTP user; a name in use is a conflict."""
    added = conn.execute(
        "INSERT INTO smtp_users (name, password_hash, sender_domains, created_at)"
        " VALUES (?, ?, ?, ?) ON CONFLICT DO NOTHING RETURNING name",
        (user.name, user.password_hash, json.dumps(list(user.sender_domains)), user.created_at),
    ).fetchone()
    if added is None:
        raise Conflict(f"an SMTP user named {user.name!r} exists already")


def smtp_user(conn: Conn, name: str) -> SmtpUser | None:
    """Return the SMTP user of this name."""
    row = conn.execute(
        "SELECT name, password_hash, sender_domains, created_at FROM smtp_users WHERE name = ?",
        (name,),
    ).fetchone()
    return None if row is None else _user(row)


def smtp_users(conn: Conn) -> list[SmtpUser]:
    """Every SMTP user, by name."""
    return [
        _user(row)
        for row in conn.execute(
            "SELECT name, password_hash, sender_domains, created_at FROM smtp_users ORDER BY name"
        )
    ]


def remove_user(conn: Conn, name: str) -> bool:
    """Remove an SMTP user; False when there is none of that name."""
    return conn.execute("DELETE FROM smtp_users WHERE name = ?", (name,)).rowcount == 1


def _user(row: Sequence[Any]) -> SmtpUser:
    name, password_hash, domains, created_at = row
    return SmtpUser(name, password_hash, tuple(json.loads(domains)), created_at)
