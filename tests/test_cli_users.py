"""`sendbrake users …` as an operator runs it: subprocesses on a real spool (a SQLite file,
a PostgreSQL schema); the password comes on standard input and only its hash is kept."""

from __future__ import annotations

import json
import sqlite3

import pytest

from gateway.ingress.auth import password_matches
from tests.leaks import PASSWORDS
from tests.process import sendbrake

PASSWORD = PASSWORDS["cli"]


def test_add_list_and_remove_a_user(unopened_spool_url):
    url = unopened_spool_url
    added = sendbrake(
        "users", "add", "shop", "--allow-sender-domain", "Shop.test",
        "--allow-sender-domain", "news.shop.test", spool_url=url, stdin=PASSWORD + "\n",
    )  # fmt: skip
    assert added.returncode == 0, added.stderr
    assert added.stdout == ""
    assert "added SMTP user 'shop' (may send from news.shop.test, shop.test)" in added.stderr
    assert sendbrake("users", "add", "outlet", spool_url=url, stdin=PASSWORD).returncode == 0

    header, outlet, shop = sendbrake("users", "list", spool_url=url).stdout.splitlines()
    assert header.split() == ["NAME", "SENDER", "DOMAINS", "CREATED"]
    assert outlet.split()[:2] == ["outlet", "(any)"]
    assert shop.split()[:2] == ["shop", "news.shop.test,shop.test"]
    listed = json.loads(sendbrake("users", "list", "--json", spool_url=url).stdout)
    assert [(u["name"], u["sender_domains"]) for u in listed] == [
        ("outlet", []),
        ("shop", ["news.shop.test", "shop.test"]),
    ]
    assert all("hash" not in key for u in listed for key in u)

    assert sendbrake("users", "remove", "outlet", spool_url=url).returncode == 0
    gone = sendbrake("users", "remove", "outlet", spool_url=url)
    assert gone.returncode == 1
    assert "error: no SMTP user named 'outlet'" in gone.stderr


def test_only_a_salted_hash_of_the_password_is_stored(tmp_path):
    url = f"sqlite:///{tmp_path}/spool.db"
    assert sendbrake("users", "add", "shop", spool_url=url, stdin=PASSWORD).returncode == 0
    with sqlite3.connect(tmp_path / "spool.db") as conn:
        [(stored,)] = conn.execute("SELECT password_hash FROM smtp_users").fetchall()
    assert stored.startswith("$argon2id$")
    assert password_matches(stored, PASSWORD)
    assert PASSWORD.encode() not in (tmp_path / "spool.db").read_bytes()


@pytest.mark.parametrize(
    ("args", "stdin", "error"),
    [
        (["users", "add", "shop"], "short", "at least 12 characters"),
        (["users", "add", "10.0.0.0/8"], PASSWORD, "is not a user name"),
        (["users", "add", "shop", "--allow-sender-domain", "not a domain"], PASSWORD,
         "not a domain name: 'not a domain'"),
    ],
)  # fmt: skip
def test_bad_input_is_refused_before_anything_is_stored(tmp_path, args, stdin, error):
    url = f"sqlite:///{tmp_path}/spool.db"
    result = sendbrake(*args, spool_url=url, stdin=stdin)
    assert result.returncode == 1
    assert error in result.stderr
    assert not (tmp_path / "spool.db").exists()


def test_a_taken_name_is_a_clear_error(tmp_path):
    url = f"sqlite:///{tmp_path}/spool.db"
    assert sendbrake("users", "add", "shop", spool_url=url, stdin=PASSWORD).returncode == 0
    again = sendbrake("users", "add", "shop", spool_url=url, stdin=PASSWORD)
    assert again.returncode == 1
    assert "error: an SMTP user named 'shop' exists already" in again.stderr
