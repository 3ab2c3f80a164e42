"""The envelope's gate: which mailboxes MAIL and RCPT take (RFC 5321, RFC 6531), and
what the refusal says of the others."""

from __future__ import annotations

import pytest

from gateway.mail.addresses import mailbox_problem

MAILBOXES = {
    "a@example.org": None,
    "First.Last+tag_1@Mail.Sender-1.TEST": None,
    '"quoted local"@example.org': None,
    '"a\\"b"@example.org': None,
    "jürgen@exämple.org": None,  # UTF-8; whether SMTPUTF8 was declared is the caller's
    "a@xn--exmple-cua.org": None,
    "a@localhost": None,
    "a@[192.0.2.1]": None,
    "a@[IPv6:2001:db8::1]": None,
    "a\x00b@example.org": "contains a control character",
    "a\x85b@example.org": "contains a control character",  # C1 (NEL)
    "a\udcffb@example.org": "is not valid UTF-8",
    "postmaster": "has no @domain",
    "@example.org": "has an empty local part",
    "a@": "has an empty domain",
    "x" * 65 + "@example.org": "has a local part longer than 64 octets",
    "ü" * 33 + "@example.org": "has a local part longer than 64 octets",  # octets, not chars
    "a..b@example.org": "has a local part that is not valid (RFC 5321 4.1.2)",
    'a"b@example.org': "has a local part that is not valid (RFC 5321 4.1.2)",
    "a@exa_mple.org": "has a domain that is not a valid host name (RFC 5321 4.1.2)",
    "a@example.org.": "has a domain that is not a valid host name (RFC 5321 4.1.2)",
    "a@-example.org": "has a domain that is not a valid host name (RFC 5321 4.1.2)",
    "a@" + "b" * 64 + ".org": "has a domain that is not a valid host name (RFC 5321 4.1.2)",
    "a@[::1]": "has an address literal that is not an IP address",  # IPv6 needs its tag
    "a@[300.1.1.1]": "has an address literal that is not an IP address",
    "a@ex\u200dample.org": "has a domain that is not a valid internationalised name (IDNA 2008)",
    "a@" + ".".join(["b" * 60] * 5): "is longer than 254 octets",
}


@pytest.mark.parametrize("mailbox", list(MAILBOXES))
def test_mailbox_problem_says_what_is_wrong_or_none(mailbox: str) -> None:
    assert mailbox_problem(mailbox) == MAILBOXES[mailbox]
