"""Registries an analysis process imports by name (a child cannot be handed test closures).

The shipped kinds, with the test-marker scanner changed to misbehave on a subject that asks
for it: `HANG` never returns (a real hang: the child must be killed), `DIE` ends the
process at once (as a crash in a C extension would), `SLOW` takes 0.3 s (asleep, so that
a loaded machine does not stretch it past a test's budget).
"""

from __future__ import annotations

import os
import time

from gateway.policy.registry import Registry, default_registry
from tests.policy.factories import changed


def misbehaving() -> Registry:
    """The shipped registry whose `test_markers` scanner hangs, dies or is slow on request."""
    [unit] = [u for u in default_registry().units if u.kind == "test_markers"]
    scan = unit.scan
    assert scan is not None

    def scan_or_misbehave(rule, document, shared):
        if "HANG" in document.subject:
            while True:
                time.sleep(1)
        if "DIE" in document.subject:
            os._exit(3)
        if "SLOW" in document.subject:
            time.sleep(0.3)
        return scan(rule, document, shared)

    return changed("test_markers", scan=scan_or_misbehave)
