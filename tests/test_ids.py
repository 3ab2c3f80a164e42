"""Message and campaign ids: 26 Crockford base-32 digits, the time first (ULID layout)."""

from __future__ import annotations

import os

from gateway import model
from gateway.model import _CROCKFORD, new_id


def reference(now: float, random: bytes) -> str:
    """The ULID layout digit by digit: 48 bits of milliseconds, 80 random bits."""
    value = (int(now * 1000) << 80) | int.from_bytes(random, "big")
    return "".join(_CROCKFORD[(value >> (5 * i)) & 31] for i in reversed(range(26)))


def test_an_id_is_the_ulid_of_its_time_and_random_bits(monkeypatch):
    for now in (0.0, 1.5, 1_764_662_400.123, 2**47 / 1000):
        for random in (bytes(10), b"\xff" * 10, os.urandom(10)):
            monkeypatch.setattr(model.os, "urandom", lambda n, r=random: r[:n])
            assert new_id(now) == reference(now, random)


def test_ids_sort_by_time_and_are_url_safe():
    ids = [new_id(t) for t in (1_700_000_000.0, 1_700_000_000.001, 1_800_000_000.0)]
    assert ids == sorted(ids)
    assert all(len(i) == 26 and set(i) <= set(_CROCKFORD) for i in ids)
    assert len({new_id(1.0) for _ in range(1000)}) == 1000
