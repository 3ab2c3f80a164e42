"""Reading address lists: normalisation, text and CSV, invalid lines counted not dropped."""

from __future__ import annotations

import pytest

from gateway.audience.lists import ListReader
from gateway.mail.addresses import address_hash, normalise_address


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("ada@example.org", "ada@example.org"),
        ("  Ada@Example.ORG \t", "ada@example.org"),
        ("<bob@example.org>", "bob@example.org"),
        ("jürgen@exämple.org", "jürgen@xn--exmple-cua.org"),
        ("no-at-sign", None),
        ("two@@example.org", None),
        ("spaces in@example.org", None),
        ("user@localhost", None),
        ("user@-bad-.org", None),
        ("@example.org", None),
    ],
)
def test_normalise_address(text, expected):
    assert normalise_address(text) == expected


def test_local_part_case_can_be_kept():
    assert (
        normalise_address("Ada.Lovelace@EXAMPLE.org", casefold_local=False)
        == "Ada.Lovelace@example.org"
    )


def test_hash_is_a_stable_signed_64_bit_integer():
    value = address_hash("ada@example.org")
    assert value == address_hash("ada@example.org") != address_hash("bob@example.org")
    assert -(2**63) <= value < 2**63


def test_text_list_counts_invalid_and_blank_lines_with_line_numbers():
    reader = ListReader(csv_format=False)
    hashes = reader.feed(b"ada@example.org\n\nnot an address\r\nBOB@example.org\n")
    hashes += reader.finish()
    assert hashes == [address_hash("ada@example.org"), address_hash("bob@example.org")]
    assert (
        reader.stats.lines,
        reader.stats.addresses,
        reader.stats.blank,
        reader.stats.invalid,
    ) == (4, 2, 1, 1)
    assert reader.stats.invalid_samples == [{"line": 3, "text": "not an address"}]


def test_lines_split_across_chunks_are_read_whole():
    reader = ListReader(csv_format=False)
    data = b"".join(f"user{i}@example.org\n".encode() for i in range(1000))
    hashes = []
    for start in range(0, len(data), 7):  # chunk edges fall inside addresses
        hashes += reader.feed(data[start : start + 7])
    hashes += reader.finish()
    assert hashes == [address_hash(f"user{i}@example.org") for i in range(1000)]
    assert reader.stats.invalid == 0


def test_last_line_without_newline_is_read():
    reader = ListReader(csv_format=False)
    assert reader.feed(b"a@example.org\nb@example.org") == [address_hash("a@example.org")]
    assert reader.finish() == [address_hash("b@example.org")]


def test_csv_uses_the_email_column_and_a_bom_is_ignored():
    reader = ListReader(csv_format=True)
    data = '\ufeffName,E-Mail,Plan\nAda,ada@example.org,pro\n"Lovelace, Ada",a2@example.org,x\nBob,,free\n'
    hashes = reader.feed(data.encode())
    hashes += reader.finish()
    assert hashes == [address_hash("ada@example.org"), address_hash("a2@example.org")]
    assert reader.stats.invalid == 1
    assert reader.stats.invalid_samples == [{"line": 4, "text": ""}]


def test_csv_column_can_be_named():
    reader = ListReader(csv_format=True, column="work")
    hashes = reader.feed(b"email,work\nhome@example.org,work@example.org\n") + reader.finish()
    assert hashes == [address_hash("work@example.org")]


def test_csv_without_an_email_column_is_an_error_naming_the_header():
    reader = ListReader(csv_format=True)
    with pytest.raises(ValueError, match="no column"):
        reader.feed(b"name,phone\nAda,123\n")
