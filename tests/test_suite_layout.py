"""The suite's own layout: test modules share helpers through tests/support/ and fixtures
through conftest.py, never by importing one another."""

from __future__ import annotations

import ast
from pathlib import Path

TESTS = Path(__file__).resolve().parent


def _imported_modules(path: Path) -> list[str]:
    """Every module ``path`` imports, at any depth (inside functions too); for
    ``from package import name`` both the package and ``package.name``."""
    modules = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            modules.extend(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            modules.append(node.module)
            modules.extend(f"{node.module}.{alias.name}" for alias in node.names)
    return modules


def _is_test_module(module: str) -> bool:
    """``test_x``, ``tests.test_x`` or conftest: modules pytest collects, not libraries."""
    parts = module.split(".")
    return parts[0] == "conftest" or any(part.startswith("test_") for part in parts)


def test_no_test_module_imports_another_test_module() -> None:
    """No module under tests/ imports a ``test_*`` module or conftest: shared helpers live
    in tests/support/ and shared fixtures in conftest.py, so F811 stays on for tests."""
    wrong = {
        str(path.relative_to(TESTS)): found
        for path in sorted(TESTS.rglob("*.py"))
        if (found := sorted({m for m in _imported_modules(path) if _is_test_module(m)}))
    }
    assert not wrong, f"move what these import to tests/support/ or conftest.py: {wrong}"
