"""Test layout: what test modules share lives in helper modules, never in a test module
or a conftest, so importing a helper never drags another module's tests or fixtures in."""

from __future__ import annotations

import ast
from pathlib import Path

TESTS = Path(__file__).resolve().parent


def module_name(path: Path, root: Path) -> str:
    """`<root>/e2e/test_relay.py` -> `tests.e2e.test_relay` (the package is named `tests`)."""
    rel = path.relative_to(root).with_suffix("")
    parts = [p for p in rel.parts if p != "__init__"]
    return ".".join(["tests", *parts])


def imports(path: Path, root: Path) -> list[tuple[int, list[str]]]:
    """(line, modules it may import) per import statement, relative imports resolved."""
    package = module_name(path, root).split(".")
    if path.name != "__init__.py":
        package = package[:-1]
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, [alias.name]) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = package[: len(package) - node.level + 1] if node.level else []
            module = ".".join([*base, *([node.module] if node.module else [])])
            # `from tests.e2e import test_relay` imports a module by its attribute name.
            found.append((node.lineno, [module, *(f"{module}.{a.name}" for a in node.names)]))
    return sorted(found)


def is_forbidden(module: str) -> bool:
    """A test module (`test_*`) or a conftest, anywhere under `tests`."""
    parts = module.split(".")
    return parts[0] == "tests" and any(p == "conftest" or p.startswith("test_") for p in parts[1:])


def forbidden_imports(root: Path) -> list[str]:
    """`file:line imports module` for each statement importing a test module or a conftest."""
    wrong = []
    for path in sorted(root.rglob("*.py")):
        for line, modules in imports(path, root):
            bad = [m for m in modules if is_forbidden(m)]
            if bad:
                wrong.append(f"{path.relative_to(root.parent)}:{line} imports {bad[0]}")
    return wrong


def test_no_module_imports_from_a_test_module_or_a_conftest():
    assert forbidden_imports(TESTS) == [], (
        "move shared helpers into a helper module (tests/harness.py, tests/mail.py, ...)"
    )


def test_the_scan_finds_imports_of_test_modules_and_conftests(tmp_path):
    root = tmp_path / "tests"
    (root / "e2e").mkdir(parents=True)
    (root / "__init__.py").write_text("")
    (root / "e2e" / "__init__.py").write_text("")
    (root / "harness.py").write_text("def run_gateway(): ...\n")
    (root / "e2e" / "test_relay.py").write_text("def message(): ...\n")
    (root / "e2e" / "test_good.py").write_text(
        "from tests.harness import run_gateway\nfrom tests import harness\n"
    )
    (root / "e2e" / "test_bad.py").write_text(
        "from tests.conftest import run_gateway\n"
        "from tests.e2e.test_relay import message\n"
        "from tests.e2e import test_relay\n"
        "from .test_relay import message as again\n"
        "import tests.conftest\n"
    )
    assert forbidden_imports(root) == [
        "tests/e2e/test_bad.py:1 imports tests.conftest",
        "tests/e2e/test_bad.py:2 imports tests.e2e.test_relay",
        "tests/e2e/test_bad.py:3 imports tests.e2e.test_relay",
        "tests/e2e/test_bad.py:4 imports tests.e2e.test_relay",
        "tests/e2e/test_bad.py:5 imports tests.conftest",
    ]
