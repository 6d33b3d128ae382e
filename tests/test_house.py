"""The house rules of issue 13, checked on every run: small modules, one docstring per test."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MAX_MODULE_LINES = 400


def test_no_module_of_the_library_or_the_service_is_over_400_lines() -> None:
    """Every module of cervixbatch/ and daemon/ stays at 400 lines or under."""
    sources = [*ROOT.joinpath("cervixbatch").rglob("*.py"), *ROOT.joinpath("daemon").rglob("*.py")]
    assert len(sources) > 50  # the tree was found
    too_long = {
        str(path.relative_to(ROOT)): lines
        for path in sources
        if (lines := len(path.read_text(encoding="utf-8").splitlines())) > MAX_MODULE_LINES
    }
    assert too_long == {}


def test_every_test_says_the_behaviour_it_checks_in_a_docstring() -> None:
    """Each test function has a docstring (the behaviour, in a sentence)."""
    missing = []
    for path in ROOT.joinpath("tests").glob("test_*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            is_test = isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
            if is_test and node.name.startswith("test_") and not ast.get_docstring(node):
                missing.append(f"{path.name}::{node.name}")
    assert missing == []
