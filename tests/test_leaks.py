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


def test_text_in_the_shape_of_a_sendgrid_api_key_is_a_leak_the_word_is_not():
    key = "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"
    lines = [f"upstream_call authorization=Bearer {key}", "upstream=sendgrid api_key=**********"]
    assert leaks("\n".join(lines)) == [lines[0]]
