"""SMTP AUTH: which tenant a submitting client is, checked without stalling other sessions.

A login names an `SmtpUser` in the spool (so every replica knows the same users); the
password is checked against its salted argon2id hash in a worker thread, since a hash
costs tens of milliseconds of CPU by design. A client address that fails too often in a
window must wait before it may try again, whichever user names it tries. An unknown user
costs the same hash check as a wrong password, so timing does not tell which names exist.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Awaitable, Callable
from typing import Protocol

import structlog
from aiosmtpd.smtp import AuthResult, LoginPassword
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from gateway.failures import FailedAttempts
from gateway.model import SmtpUser

log = structlog.get_logger(__name__)

REPLY_AUTH_INVALID = "535 5.7.8 Authentication credentials invalid"
REPLY_AUTH_LOCKED = "454 4.7.0 Too many failed authentications from this address; try later"

_HASHER = PasswordHasher()  # argon2id with the library's current parameters

FindUser = Callable[[str], Awaitable[SmtpUser | None]]


def hash_password(password: str) -> str:
    """Return a salted argon2id hash of `password`, self-describing (parameters included)."""
    return _HASHER.hash(password)


@functools.cache
def _decoy() -> str:
    """Return the hash an unknown user's password is checked against, made once per process.

    Made when the first authenticator is built, not at import: every `sendbrake` command
    imports this module, and one hash costs a few hundred milliseconds of CPU and 64 MiB.
    """
    return _HASHER.hash("sendbrake decoy password")


def password_matches(password_hash: str, password: str) -> bool:
    """Tell whether `password` is the one `password_hash` was made from."""
    try:
        return _HASHER.verify(password_hash, password)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


class Authenticates(Protocol):
    """What checks SMTP AUTH credentials: `SmtpAuthenticator`, or an ingress process's proxy."""

    async def authenticate(self, client: str, credentials: LoginPassword) -> AuthResult:
        """Return success with the `SmtpUser` as auth data, or the refusal to send."""
        ...


class SmtpAuthenticator:
    """Checks SMTP AUTH credentials against the spool's users."""

    def __init__(self, find_user: FindUser, failures: FailedAttempts) -> None:
        self._find_user = find_user
        self._failures = failures
        self._decoy = _decoy()  # ready before the first login, so it costs what others do

    async def authenticate(self, client: str, credentials: LoginPassword) -> AuthResult:
        """Return success with the `SmtpUser` as auth data, or the refusal to send."""
        if self._failures.retry_after(client) is not None:
            log.warning("smtp_auth_locked", peer=client)
            return AuthResult(success=False, handled=False, message=REPLY_AUTH_LOCKED)
        try:
            name = credentials.login.decode("utf-8")
            password = credentials.password.decode("utf-8")
        except UnicodeDecodeError:
            name, password = "", ""
        user = await self._find_user(name) if name else None
        matches = await asyncio.to_thread(
            password_matches, user.password_hash if user else self._decoy, password
        )
        if user is None or not matches:
            self._failures.failed(client)
            log.warning("smtp_auth_failed", peer=client, user=name[:64])
            return AuthResult(success=False, handled=False, message=REPLY_AUTH_INVALID)
        self._failures.succeeded(client)
        log.info("smtp_auth_succeeded", peer=client, user=user.name)
        return AuthResult(success=True, auth_data=user)


def sender_allowed(user: SmtpUser, mail_from: str) -> bool:
    """Whether `user` may send as `mail_from`: its domain, or a subdomain, is one of theirs."""
    if not user.sender_domains:
        return True
    domain = mail_from.rpartition("@")[2].casefold().rstrip(".")
    return any(
        domain == allowed or domain.endswith(f".{allowed}")
        for allowed in (d.casefold() for d in user.sender_domains)
    )
