"""The worker's schedules share one public phases object (issue 23): neither reaches into
another object's private members, the worker's modules import one another without a
circle (lazy and type-only imports counted), no lint rule is switched off for a worker or
backfill file, and both schedules still time and log their phases under the same plain
names."""

from __future__ import annotations

import ast
import tomllib
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import pytest
from structlog.testing import capture_logs

from cervixbatch.config import load_config
from cervixbatch.model.pair import load_stages
from cervixbatch.segmentation.steps import Step
from cervixbatch.store.db import open_database
from cervixbatch.worker.batch_state import Phase
from cervixbatch.worker.runner import Runner

ROOT = Path(__file__).resolve().parent.parent  # the repository
_SHARED = ("worker", "backfill")  # the packages whose schedules share the phases


def _modules(package: str) -> dict[str, ast.Module]:
    folder = ROOT / "cervixbatch" / package
    return {
        f"cervixbatch.{package}.{path.stem}": ast.parse(path.read_text(), str(path))
        for path in sorted(folder.glob("*.py"))
        if path.stem != "__init__"
    }


def _imported(tree: ast.Module) -> set[str]:
    """Every module ``tree`` imports, wherever the import stands (functions, TYPE_CHECKING)."""
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def test_the_worker_modules_import_one_another_without_a_circle() -> None:
    """Following every import between the worker's modules, even one inside a function or
    under TYPE_CHECKING, never leads back to where it started."""
    modules = _modules("worker")
    edges = {name: _imported(tree) & modules.keys() - {name} for name, tree in modules.items()}
    done: set[str] = set()

    def visit(name: str, path: tuple[str, ...]) -> None:
        assert name not in path, f"import circle: {' -> '.join((*path, name))}"
        if name in done:
            return
        for target in sorted(edges[name]):
            visit(target, (*path, name))
        done.add(name)

    for name in sorted(edges):
        visit(name, ())


def test_no_schedule_touches_a_private_member_of_another_object() -> None:
    """In the worker and the backfill, a ``_name`` is only ever read off ``self`` or
    ``cls``: the schedules share the phases through their public API."""
    reached = [
        f"{module}:{node.lineno} .{node.attr}"
        for package in _SHARED
        for module, tree in _modules(package).items()
        for node in ast.walk(tree)
        if isinstance(node, ast.Attribute)
        and node.attr.startswith("_")
        and not node.attr.startswith("__")
        and not (isinstance(node.value, ast.Name) and node.value.id in {"self", "cls"})
    ]
    assert reached == []


def test_no_lint_rule_is_switched_off_for_a_worker_or_backfill_file() -> None:
    """pyproject.toml's per-file ignores name no module of the worker or the backfill."""
    settings = tomllib.loads((ROOT / "pyproject.toml").read_text())
    ignores = settings["tool"]["ruff"]["lint"].get("per-file-ignores", {})
    assert [
        pattern
        for pattern in ignores
        if any(pattern.startswith(f"cervixbatch/{package}/") for package in _SHARED)
    ] == []


def _photo(path: Path, index: int) -> Path:
    """A small photo of its own bytes: a pink disc on a dark field."""
    rgb = np.full((240, 320, 3), 30 + index, np.uint8)
    cv2.circle(rgb, (160, 120), 80, (200, 120, 150), thickness=-1)
    assert cv2.imwrite(str(path), rgb)
    return path


@pytest.mark.parametrize("pipelined", [False, True], ids=["sequential", "pipelined"])
def test_both_schedules_log_their_phase_timings_under_plain_names(
    make_config: Callable[..., Path], tmp_path: Path, pipelined: bool
) -> None:
    """A batch's timings and its ``batch_done`` event name the phases as the plain strings
    they always were ("claim" … "commit", and the frame steps when the schedule runs them
    apart), in the order the phases ran."""
    config = load_config(
        make_config(batch__size=2, batch__pipeline=pipelined, models__simulate_device_ms=1.0)
    )
    db = open_database(config.database.url)
    try:
        with Runner(config, db, load_stages(config)) as runner, capture_logs() as logs:
            for index in range(3):
                runner.registrar.register(_photo(tmp_path / f"p{index}.png", index))
            outcomes = []
            runner.process_until_empty(on_batch=outcomes.append)
    finally:
        db.dispose()
    steps = [str(step) for step in Step] if pipelined else []
    expected = ["claim", "read", "segment", *steps, "write", "commit"]
    assert [str(phase) for phase in Phase] == ["claim", "read", "segment", "write", "commit"]
    events = [event for event in logs if event["event"] == "batch_done"]
    assert len(events) == len(outcomes) == 2
    for event, outcome in zip(events, outcomes, strict=True):
        assert list(outcome.timings_ms) == list(event["ms"]) == expected
        assert {type(name) for name in (*outcome.timings_ms, *event["ms"])} == {str}
