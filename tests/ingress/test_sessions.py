"""Session counting: the total limit for everyone, the per-client one outside the
allowed networks, and a closed session's slot free again."""

from __future__ import annotations

from gateway.ingress.sessions import Sessions
from gateway.settings import SmtpSettings


def test_per_client_limit_spares_exempt_clients_and_the_total_holds_for_all() -> None:
    sessions = Sessions(SmtpSettings(max_sessions=4, max_sessions_per_client=2))
    assert [sessions.open("203.0.113.9", exempt=False) for _ in range(3)] == [
        None,
        None,
        "max_sessions_per_client",
    ]
    assert [sessions.open("127.0.0.1", exempt=True) for _ in range(3)] == [
        None,
        None,
        "max_sessions",
    ]
    sessions.close("203.0.113.9")
    assert sessions.open("127.0.0.1", exempt=True) is None
    sessions.close("127.0.0.1")
    assert sessions.open("203.0.113.9", exempt=False) is None  # one of its two again
