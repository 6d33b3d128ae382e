"""``cervixbatch bench --tiny``: every path runs and the report has its fields. Speed
targets are measured on real sizes (docs/performance.md), never asserted here."""

from __future__ import annotations

import inspect
import json
import os
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner
from support.models import ANALYTIC_SIZE
from support.photos import draw_photo, write_photo

from cervixbatch.cli import main
from cervixbatch.config import Precision
from cervixbatch.model.device import (
    CPU_BF16_AUTO,
    DeviceInfo,
    fitting_batch_size,
    resolve_precision,
    use_xla,
)
from cervixbatch.tools.bench import run as bench
from cervixbatch.tools.bench import seed_loop as bench_seed_loop

STEPS = {"decode", "resize", "stage1", "roi", "stage2", "postprocess", "write", "commit"}


@pytest.fixture
def no_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A working directory without config.toml: the built-in defaults."""
    monkeypatch.delenv("CERVIXBATCH_CONFIG", raising=False)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_bench_tiny_reports_every_path(no_config: Path) -> None:
    """bench --tiny writes a JSON report with figures for every measured path."""
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


def test_bench_end_to_end_under_the_pipelined_schedule_times_each_step(no_config: Path) -> None:
    """Under the default (pipelined) schedule the end-to-end path names its schedule and
    reports the time of each model stage, which the pipelined stages measure themselves."""
    result = CliRunner().invoke(main, ["bench", "--tiny", "--count", "2", "--batch-size", "2"])
    assert result.exit_code == 0, result.output
    end_to_end = json.loads(result.stdout)["sizes"]["320x240"]["end_to_end"]
    assert end_to_end["mode"] == "pipelined"
    assert end_to_end["processing_images_per_s"] > 0
    assert end_to_end["steps_ms"]["stage1"] > 0
    assert end_to_end["steps_ms"]["stage2"] > 0


def test_bench_rejects_a_bad_size(no_config: Path) -> None:
    """A malformed --sizes value exits 2 naming the option."""
    result = CliRunner().invoke(main, ["bench", "--tiny", "--sizes", "320by240"])
    assert result.exit_code == 2
    assert "--sizes" in result.output


def test_predict_only_in_the_seed_loop() -> None:
    """``model.predict`` (slow per call, leaks in loops) is the seed's, never ours."""
    package = Path(bench.__file__).parents[1]  # cervixbatch/tools
    users = sorted(
        str(p.relative_to(package))
        for p in package.rglob("*.py")
        if ".predict(" in p.read_text(encoding="utf-8")
    )
    assert users == ["bench/seed_loop.py"]
    source = Path(bench_seed_loop.__file__).read_text(encoding="utf-8")
    assert source.count(".predict(") == inspect.getsource(bench_seed_loop.seed_loop).count(
        ".predict("
    )


@pytest.mark.parametrize(
    ("gpus", "bf16", "expected"),
    [
        (1, False, "mixed_float16"),
        (0, True, "mixed_bfloat16" if CPU_BF16_AUTO else "float32"),
        (0, False, "float32"),
    ],
)
def test_auto_precision_per_device(gpus: int, bf16: bool, expected: str) -> None:
    """``auto``: float16 on GPUs, bfloat16 on CPUs that have it natively (the measured
    decision), float32 elsewhere; an explicit choice is kept."""
    info = DeviceInfo(device="/GPU:0" if gpus else "/CPU:0", gpus=gpus, cpu_bf16=bf16)
    assert resolve_precision(Precision.AUTO, info).value == expected
    assert resolve_precision(Precision.FLOAT32, info) is Precision.FLOAT32
    assert use_xla(info) is bool(gpus)  # XLA measured slower on CPU


def test_gpu_batch_is_bounded_by_its_memory() -> None:
    """On a GPU the compiled batch holds what fits; CPUs keep the configured batch."""
    gpu = DeviceInfo(device="/GPU:0", gpus=1, cpu_bf16=False, gpu_free_bytes=1 << 30)
    assert fitting_batch_size(64, 100 << 20, gpu) == 4  # 40 % of 1 GiB / 100 MiB
    assert fitting_batch_size(2, 100 << 20, gpu) == 2
    assert fitting_batch_size(8, 10 << 30, gpu) == 1
    cpu = DeviceInfo(device="/CPU:0", gpus=0, cpu_bf16=True)
    assert fitting_batch_size(64, 10 << 30, cpu) == 64


@pytest.mark.slow
def test_bench_compares_runtimes_and_precisions_side_by_side(no_config: Path) -> None:
    """``--runtimes``/``--precisions`` measure every runnable pair in one run (INT8 on
    TensorFlow is skipped with a note), each with model-only, end to end and its agreement
    with TensorFlow float32; the JSON stays clean on stdout, the table goes to stderr."""
    if os.environ.get("CI") != "true":  # in CI the test extra installs it: no skipping
        pytest.importorskip("openvino", reason="OpenVINO is not installed")
    args = ["bench", "--tiny", "--count", "2", "--batch-size", "2"]
    result = CliRunner().invoke(
        main, [*args, "--runtimes", "tensorflow,openvino", "--precisions", "float32,int8"]
    )
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    names = [row["variant"] for row in report["variants"]]
    assert names == ["tensorflow/float32", "openvino/float32", "openvino/int8"]
    assert report["notes"] == ["tensorflow/int8 skipped: INT8 runs on OpenVINO only"]
    for row in report["variants"]:
        assert row["model_only"]["images_per_s"] > 0
        assert row["end_to_end"]["320x240"]["images"] == 2
        assert set(row["agreement"]) == {"cervix", "lesion"}
        assert 0.0 <= row["agreement"]["lesion"]["mean_dice"] <= 1.0
        assert row["ratios"]["model_only_vs_tensorflow_float32"] > 0
    assert report["variants"][0]["agreement"]["cervix"]["mean_dice"] == 1.0
    assert report["variants"][1]["agreement"]["lesion"]["mean_dice"] >= 0.999
    assert "openvino/int8 |" in result.stderr


def test_bench_refuses_an_unknown_runtime(no_config: Path) -> None:
    """A runtime that does not exist is a usage error naming the choices."""
    result = CliRunner().invoke(main, ["bench", "--tiny", "--runtimes", "onnx"])
    assert result.exit_code == 2
    assert "tensorflow" in result.output


def test_bench_measures_the_configured_models_and_leaves_their_folder_alone(
    no_config: Path, analytic_models: dict[str, Path]
) -> None:
    """``--configured-models`` benches models.cervix/lesion (here trained-like analytic
    models) instead of random seed-size ones; their INT8 models are made in the bench's own
    folder with accuracy control, so nothing is written beside the user's files, and the
    agreement of a model that INT8 cannot move is ~1."""
    if os.environ.get("CI") != "true":  # in CI the test extra installs it: no skipping
        pytest.importorskip("openvino", reason="OpenVINO is not installed")
    folder = analytic_models["cervix"].parent
    before = sorted(p.name for p in folder.iterdir())
    (no_config / "config.toml").write_text(
        f'[models]\ncervix = "{analytic_models["cervix"]}"\n'
        f'lesion = "{analytic_models["lesion"]}"\n',
        encoding="utf-8",
    )
    args = ["bench", "--tiny", "--configured-models", "--count", "2", "--batch-size", "2"]
    result = CliRunner().invoke(main, [*args, "--runtimes", "openvino", "--precisions", "int8"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["models"]["source"].startswith("configured (any INT8 models quantized by")
    assert report["models"]["cervix_input"] == [ANALYTIC_SIZE, ANALYTIC_SIZE, 3]
    assert report["models"]["lesion_input"] == [ANALYTIC_SIZE, ANALYTIC_SIZE, 1]
    (row,) = report["variants"]
    assert row["variant"] == "openvino/int8"
    assert row["agreement"]["cervix"]["mean_dice"] >= 0.98
    assert sorted(p.name for p in folder.iterdir()) == before


def test_bench_runs_the_int8_models_quantize_made_for_the_configured_models(
    no_config: Path, analytic_models: dict[str, Path]
) -> None:
    """Where `cervixbatch quantize` already made INT8 models whose cards pass the gate,
    ``--configured-models`` benches exactly those (what the daemon would run) instead of
    quantizing again, and writes nothing into their folder."""
    if os.environ.get("CI") != "true":  # in CI the test extra installs it: no skipping
        pytest.importorskip("openvino", reason="OpenVINO is not installed")
    models = no_config / "models"
    models.mkdir()
    for name, path in analytic_models.items():
        shutil.copy(path, models / f"{name}.keras")
    for i in range(10):
        write_photo(no_config / "photos" / f"p{i:02d}.jpg", draw_photo(320, 240, seed=i))
    (no_config / "config.toml").write_text(
        '[models]\ncervix = "models/cervix.keras"\nlesion = "models/lesion.keras"\n',
        encoding="utf-8",
    )
    made = CliRunner().invoke(main, ["quantize", "--images", "photos", "--count", "8"])
    assert made.exit_code == 0, made.output
    before = {p.name: p.stat().st_mtime_ns for p in models.iterdir()}
    assert "cervix.int8.card.json" in before
    args = ["bench", "--tiny", "--configured-models", "--count", "2", "--batch-size", "2"]
    result = CliRunner().invoke(main, [*args, "--runtimes", "openvino", "--precisions", "int8"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["models"]["source"].startswith("configured, with their own INT8 models")
    assert report["variants"][0]["variant"] == "openvino/int8"
    assert {p.name: p.stat().st_mtime_ns for p in models.iterdir()} == before
