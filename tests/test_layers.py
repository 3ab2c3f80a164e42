"""Layering (STYLE.md): a module imports only its own layer or a lower one, and the
stages of layer 2 never import each other."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "gateway"

LAYERS = {
    "errors": 0,
    "model": 0,
    "settings": 0,
    "mime": 0,
    "segments": 0,
    "content": 0,
    "html_text": 0,
    "signoffs": 0,
    "log": 1,
    "metrics": 1,
    "spool": 1,
    "audience": 2,
    "ingress": 2,
    "campaigns": 2,
    "policy": 2,
    "relay": 2,
    "ops": 3,
    "service": 4,
    "cli": 4,
    "__main__": 4,
    "__init__": 4,
}
STAGES = {"ingress", "campaigns", "policy", "relay", "audience"}


def unit_of(module: str) -> str:
    """`gateway.relay.worker` -> `relay`."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


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
    assert violations("campaigns", {"gateway.relay.worker"}) == [
        "stage campaigns imports stage relay: hand work on through the spool"
    ]
