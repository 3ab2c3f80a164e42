"""The suite's secret scan (tests/leaks.py) finds tokens and passwords, not their names."""

from __future__ import annotations

from gateway.ops.auth import new_token
from tests.leaks import PASSWORDS, leaks


def test_token_shaped_text_and_the_tests_passwords_are_leaks_names_are_not():
    token = new_token()
    text = "\n".join(
        [
            f'{{"event": "api_call", "authorization": "Bearer {token}"}}',
            '{"event": "api_refused", "token": "alice", "roles": "operator"}',
            f"AUTH PLAIN for shop with {PASSWORDS['submission']}!",
            "smtp_auth_failed user=shop",
            "prefix sb_ alone",
        ]
    )
    assert leaks(text) == [text.splitlines()[0], text.splitlines()[2]]
