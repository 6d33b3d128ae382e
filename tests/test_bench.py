"""``cervixbatch bench --tiny``: every path runs and the report has its fields. Speed
targets are measured on real sizes (docs/performance.md), never asserted here."""

from __future__ import annotations

import inspect
import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from cervixbatch import bench
from cervixbatch.cli import main

STEPS = {"decode", "resize", "stage1", "roi", "stage2", "postprocess", "write", "commit"}


@pytest.fixture
def no_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A working directory without config.toml: the built-in defaults."""
    monkeypatch.delenv("CERVIXBATCH_CONFIG", raising=False)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_bench_tiny_reports_every_path(no_config: Path) -> None:
    out = no_config / "reports" / "bench.json"
    result = CliRunner().invoke(
        main, ["bench", "--tiny", "--count", "3", "--batch-size", "2", "--output", str(out)]
    )
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert json.loads(out.read_text(encoding="utf-8")) == report

    assert report["count"] == 3
    assert report["batch_size"] == 2
    assert report["models"]["tiny"] is True
    assert report["precision"]["seed_loop"] == "float32"
    assert report["precision"]["end_to_end"] in {"float32", "mixed_bfloat16"}
    assert report["model_only"]["images_per_s"] > 0
    assert set(report["model_only"]["steps_ms"]) == {"stage1", "stage2"}
    assert list(report["sizes"]) == ["320x240"]
    size = report["sizes"]["320x240"]
    for path in ("seed_loop", "end_to_end"):
        assert size[path]["images"] == 3
        assert size[path]["images_per_s"] > 0
        assert set(size[path]["steps_ms"]) >= STEPS
        assert all(v >= 0 for v in size[path]["steps_ms"].values())
    assert size["ratios"]["end_to_end_vs_seed_loop"] > 0
    assert size["ratios"]["end_to_end_vs_model_only"] > 0
    assert report["peak_rss_mb"] > 0
    machine = report["machine"]
    assert machine["cores"] >= 1
    assert isinstance(machine["cpu_bf16"], bool)


def test_bench_rejects_a_bad_size(no_config: Path) -> None:
    result = CliRunner().invoke(main, ["bench", "--tiny", "--sizes", "320by240"])
    assert result.exit_code == 2
    assert "--sizes" in result.output


def test_predict_only_in_the_seed_loop() -> None:
    """``model.predict`` (slow per call, leaks in loops) is the seed's, never ours."""
    package = Path(bench.__file__).parent
    users = sorted(
        str(p.relative_to(package))
        for p in package.rglob("*.py")
        if ".predict(" in p.read_text(encoding="utf-8")
    )
    assert users == ["bench.py"]
    source = Path(bench.__file__).read_text(encoding="utf-8")
    assert source.count(".predict(") == inspect.getsource(bench.seed_loop).count(".predict(")
