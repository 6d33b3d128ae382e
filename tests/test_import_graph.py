"""The shape of the package: no import circle, a short root, every module inside the layers.

The graph counts every ``import``/``from`` anywhere in a module — inside functions and
under ``TYPE_CHECKING`` too — because a lazy import hides a circle from Python, not from a
reader. An edge from a package's ``__init__`` to its own submodule is not a circle's part.
"""

from __future__ import annotations

import ast
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE_DIRS = {
    "cervixbatch": ROOT / "cervixbatch",
    "cervixbatchd": ROOT / "daemon" / "cervixbatchd",
}
LAYER_CONTRACT = "Layers follow the data flow"


def module_files() -> dict[str, Path]:
    """Every module of both packages, by dotted name (a package by its ``__init__``)."""
    found: dict[str, Path] = {}
    for package, directory in PACKAGE_DIRS.items():
        for path in sorted(directory.rglob("*.py")):
            parts = [package, *path.relative_to(directory).with_suffix("").parts]
            if parts[-1] == "__init__":
                parts = parts[:-1]
            found[".".join(parts)] = path
    return found


def _imported_names(module: str, path: Path) -> set[str]:
    """The dotted names a module imports, absolute, wherever in the file the import is."""
    is_package = path.name == "__init__.py"
    own_package = module if is_package else module.rpartition(".")[0]
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = own_package.split(".")
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            names.add(base)
            names.update(f"{base}.{alias.name}" for alias in node.names)
    return names


def import_graph() -> dict[str, set[str]]:
    """Module → the modules of ours it imports (``from a import b`` counts ``a.b`` if a module)."""
    files = module_files()
    graph: dict[str, set[str]] = {}
    for module, path in files.items():
        targets = {name for name in _imported_names(module, path) if name in files}
        if path.name == "__init__.py":  # a package gathering its own parts is no circle
            targets = {t for t in targets if not t.startswith(module + ".")}
        graph[module] = targets - {module}
    return graph


def _reachable(graph: dict[str, set[str]], start: str) -> set[str]:
    """Every module ``start`` leads to by one import or a chain of them."""
    seen: set[str] = set()
    todo = list(graph.get(start, ()))
    while todo:
        node = todo.pop()
        if node not in seen:
            seen.add(node)
            todo.extend(graph.get(node, ()))
    return seen


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Each group of modules that all lead to one another (a circle), sorted."""
    reach = {node: _reachable(graph, node) for node in graph}
    groups = {
        tuple(sorted({node} | {other for other in reach[node] if node in reach.get(other, ())}))
        for node in graph
        if node in reach[node]
    }
    return sorted(list(group) for group in groups)


def test_no_import_circle_anywhere() -> None:
    """No two modules of cervixbatch or cervixbatchd import each other, even lazily."""
    assert cycles(import_graph()) == []


def test_cycle_finder_sees_a_lazy_circle() -> None:
    """The finder reports a circle closed by one edge, and nothing for a chain."""
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": {"c"}, "c": set()}) == []


def test_graph_counts_imports_inside_functions_and_type_checking(tmp_path: Path) -> None:
    """An import inside a function or under TYPE_CHECKING is an edge like any other."""
    source = tmp_path / "mod.py"
    source.write_text(
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n    from cervixbatch.store import db\n"
        "def f():\n    import cervixbatch.model.pair\n    from . import sibling\n",
        encoding="utf-8",
    )
    names = _imported_names("cervixbatch.tools.mod", source)
    assert {"cervixbatch.store.db", "cervixbatch.model.pair", "cervixbatch.tools.sibling"} <= names


def test_root_of_the_package_is_short() -> None:
    """At most ten modules sit directly in cervixbatch/; the rest live in subpackages."""
    root_modules = sorted(p.name for p in PACKAGE_DIRS["cervixbatch"].glob("*.py"))
    assert len(root_modules) <= 10, root_modules


def test_every_module_is_inside_the_layer_contract() -> None:
    """Each top-level subpackage or module of cervixbatch is named in the data-flow layers."""
    config = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    contracts = config["tool"]["importlinter"]["contracts"]
    (layers,) = [c["layers"] for c in contracts if c["name"].startswith(LAYER_CONTRACT)]
    named = {part.strip() for layer in layers for part in layer.replace(":", "|").split("|")}
    top_level = {
        ".".join(module.split(".")[:2])
        for module in module_files()
        if module.startswith("cervixbatch.")
    }
    assert sorted(top_level - named) == []


def _reexported(path: Path) -> list[str]:
    """Names a module lists in ``__all__`` but imports from elsewhere (top level)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    imported: set[str] = set()
    listed: list[str] = []
    for node in tree.body:
        if isinstance(node, ast.ImportFrom | ast.Import):
            imported.update((alias.asname or alias.name).split(".")[0] for alias in node.names)
        elif isinstance(node, ast.Assign) and any(
            isinstance(t, ast.Name) and t.id == "__all__" for t in node.targets
        ):
            listed = [e.value for e in node.value.elts if isinstance(e, ast.Constant)]  # type: ignore[attr-defined]
    return sorted(name for name in listed if name in imported)


def test_one_import_path_per_public_name() -> None:
    """A public name is offered by the module that defines it, or by its package's
    ``__init__`` — never re-exported by a sibling module, which would give it two paths."""
    offenders = {
        module: names
        for module, path in module_files().items()
        if path.name != "__init__.py" and (names := _reexported(path))
    }
    assert offenders == {}
