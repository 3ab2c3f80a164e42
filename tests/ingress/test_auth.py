"""SMTP AUTH's parts on their own: password hashes, failed-login windows, sender domains,
and the refusal to listen beyond loopback without protection."""

from __future__ import annotations

import pytest

from gateway.errors import ConfigError
from gateway.failures import FailedAttempts
from gateway.ingress.auth import hash_password, password_matches, sender_allowed
from gateway.ingress.smtp import check_exposure
from gateway.model import SmtpUser
from gateway.settings import SmtpSettings
from tests.clock import ManualClock


def test_a_password_hash_is_salted_and_checks_only_its_password():
    first, second = hash_password("correct horse"), hash_password("correct horse")
    assert first != second  # salted
    assert first.startswith("$argon2id$")
    assert password_matches(first, "correct horse")
    assert not password_matches(first, "correct horse ")
    assert not password_matches("not a hash", "correct horse")


def test_failures_lock_a_client_for_the_window_and_a_success_forgets_them():
    clock = ManualClock()
    failures = FailedAttempts(limit=3, window=60, clock=clock)
    for _ in range(3):
        assert not failures.retry_after("192.0.2.1")
        failures.failed("192.0.2.1")
    assert failures.retry_after("192.0.2.1")
    assert not failures.retry_after("192.0.2.2")  # per client address
    clock.advance(61)
    assert not failures.retry_after("192.0.2.1")
    failures.failed("192.0.2.1")
    failures.succeeded("192.0.2.1")
    assert not failures._failures


@pytest.mark.parametrize(
    ("sender", "allowed"),
    [
        ("news@shop.test", True),
        ("news@mail.shop.test", True),
        ("news@SHOP.TEST", True),
        ("news@evilshop.test", False),
        ("news@shop.test.evil", False),
        ("", False),
    ],
)
def test_a_user_sends_only_from_its_domains_and_their_subdomains(sender, allowed):
    user = SmtpUser("shop", "x", sender_domains=("shop.test",))
    assert sender_allowed(user, sender) is allowed
    assert sender_allowed(SmtpUser("any", "x"), sender)  # no list: any domain


def settings(**values) -> SmtpSettings:
    return SmtpSettings.model_validate(values)


def test_loopback_needs_nothing_more():
    check_exposure(settings(listen="127.0.0.1:2525"), users=0)
    check_exposure(settings(listen="[::1]:2525", auth="required"), users=0)


def test_beyond_loopback_without_tls_refuses_to_start_and_says_what_to_set():
    with pytest.raises(ConfigError) as refused:
        check_exposure(settings(listen="0.0.0.0:2525"), users=3)
    assert refused.value.key == "smtp.tls.cert"
    assert "smtp.tls.key" in str(refused.value)
    assert "sendbrake tls self-signed" in str(refused.value)


def test_required_auth_without_users_refuses_to_start(tmp_path):
    tls = {"cert": "cert.pem", "key": "key.pem"}
    with pytest.raises(ConfigError, match="sendbrake users add NAME"):
        check_exposure(settings(listen="0.0.0.0:2525", tls=tls), users=0)
    check_exposure(settings(listen="0.0.0.0:2525", tls=tls), users=1)


def test_auth_off_beyond_loopback_is_refused_when_every_address_may_relay():
    with pytest.raises(ConfigError) as refused:
        check_exposure(
            settings(listen="0.0.0.0:2525", auth="off", allowed_networks=["0.0.0.0/0"]), users=0
        )
    assert refused.value.key == "smtp.allowed_networks"
    assert "open relay" in str(refused.value)
    check_exposure(
        settings(listen="0.0.0.0:2525", auth="off", allowed_networks=["10.0.0.0/8"]), users=0
    )
