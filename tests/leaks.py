"""Secrets in logs, looked for in everything the suite logs (see tests/conftest.py).

Every API token has the `sb_` prefix (the test tokens of tests/harness.py too), so any
token-shaped text in a log line is a leak, whichever test made the token; so is text in
the shape of a SendGrid API key (`SG.<id>.<secret>`, the fake provider's key has it); SMTP
passwords have no shape, so the tests take theirs from `PASSWORDS`.
"""

from __future__ import annotations

import re

from gateway.ops.auth import TOKEN_PREFIX

PASSWORDS = {
    "submission": "a long enough password",
    "logs": "correct horse battery staple",
    "cli": "twelve chars or more",
}
_SECRET = re.compile(
    "|".join(
        [
            re.escape(TOKEN_PREFIX) + r"[A-Za-z0-9_-]{4,}",
            r"SG\.[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}",
            *map(re.escape, PASSWORDS.values()),
        ]
    )
)


def leaks(text: str) -> list[str]:
    """The lines of `text` that contain a token or one of the tests' passwords."""
    return [line for line in text.splitlines() if _SECRET.search(line)]
