"""Layering (STYLE.md): a module imports only its own layer or a lower one, and the
stages of layer 2 never import each other."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "gateway"

# A unit is a top-level module or package of `gateway`, or a sub-package or module of one
# named with a dot; a module belongs to the longest unit its name starts with.
LAYERS = {
    "errors": 0,
    "model": 0,
    "states": 0,
    "settings": 0,
    "yamlfile": 0,
    "log": 1,
    "failures": 1,
    "childproc": 1,
    "metrics": 1,
    "mail": 1,
    "review": 1,
    "audience.lists": 1,
    "spool": 1,
    "feedback": 2,
    "admission": 2,
    "audience": 2,
    "ingress": 2,
    "policy": 2,
    "relay": 2,
    "ops": 3,
    "service": 4,
    "cli": 4,
    "__main__": 4,
    "__init__": 4,
}
STAGES = {"admission", "audience", "feedback", "ingress", "policy", "relay"}


def unit_of(module: str) -> str:
    """`gateway.relay.worker` -> `relay`; `gateway.audience.lists` -> `audience.lists`."""
    parts = module.split(".")[1:] or ["__init__"]
    for length in range(len(parts), 0, -1):
        unit = ".".join(parts[:length])
        if unit in LAYERS:
            return unit
    return parts[0]


def modules() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py"))


def imports_of(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found |= {f"{node.module}.{alias.name}" for alias in node.names}
    return {name for name in found if name.startswith("gateway.")}


def test_every_module_belongs_to_a_layer():
    for path in modules():
        rel = path.relative_to(PACKAGE.parent).with_suffix("")
        assert unit_of(".".join(rel.parts)) in LAYERS, (
            f"{path} has no layer in tests/test_layers.py"
        )


def violations(unit: str, imported: set[str]) -> list[str]:
    """Return what is wrong with `unit` importing these modules."""
    wrong = []
    for name in sorted(imported):
        target = unit_of(name)
        if target not in LAYERS:
            continue  # `from gateway import x` is checked through x's own name
        if LAYERS[target] > LAYERS[unit]:
            wrong.append(f"{unit} (L{LAYERS[unit]}) imports {name} (L{LAYERS[target]})")
        elif unit in STAGES and target in STAGES and target != unit:
            wrong.append(f"stage {unit} imports stage {target}: hand work on through the spool")
    return wrong


@pytest.mark.parametrize("path", modules(), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_module_imports_only_its_layer_or_lower(path):
    rel = path.relative_to(PACKAGE.parent).with_suffix("")
    assert violations(unit_of(".".join(rel.parts)), imports_of(path)) == []


def test_the_checker_catches_upward_and_sideways_imports(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text("from gateway.service import Gateway\nimport gateway.relay.worker\n")
    found = violations("spool", imports_of(bad))
    assert "spool (L1) imports gateway.service (L4)" in found
    assert "spool (L1) imports gateway.relay.worker (L2)" in found
    assert violations("admission", {"gateway.relay.worker"}) == [
        "stage admission imports stage relay: hand work on through the spool"
    ]
    assert violations("mail", {"gateway.audience.loader"}) == [
        "mail (L1) imports gateway.audience.loader (L2)"
    ]
    assert violations("model", {"gateway.mail.content"}) == [
        "model (L0) imports gateway.mail.content (L1)"
    ]


def test_a_sub_package_has_the_layer_of_its_longest_unit():
    assert unit_of("gateway.audience.lists") == "audience.lists"
    assert unit_of("gateway.audience.loader") == "audience"
    assert unit_of("gateway.policy.rules.seasonal") == "policy"
    assert unit_of("gateway") == "__init__"
