"""The OpenVINO runtime: which runtime runs, the cached IR, float32 masks equal to
TensorFlow's, and the INT8 agreement gate — with tiny real models, real files, the real
CLI and the daemon as a real subprocess."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from click.testing import CliRunner
from structlog.testing import capture_logs
from support.paths import REPO
from support.photos import draw_photo, write_photo

from cervixbatch.cli import main
from cervixbatch.config import Precision, Runtime
from cervixbatch.errors import ConfigError, ModelError
from cervixbatch.model.loading import file_sha256
from cervixbatch.model.options import LoadOptions
from cervixbatch.model.runtime import openvino_available, resolve_runtime
from cervixbatch.model.stage import load_stage
from cervixbatch.model.stage_names import Stage
from cervixbatch.model.unet import build_cervix_unet, build_lesion_unet
from cervixbatch.segmentation.scores import dice
from cervixbatch.segmentation.two_stage import cervix_input, lesion_input

pytestmark = pytest.mark.skipif(
    not openvino_available() and os.environ.get("CI") != "true",
    reason="OpenVINO is not installed: pip install -e '.[openvino]' (CI installs it)",
)


def _options(cache: Path | None, precision: Precision = Precision.FLOAT32) -> LoadOptions:
    return LoadOptions(runtime=Runtime.OPENVINO, precision=precision, batch_size=4, cache=cache)


def _save_tiny(path: Path, stage: Stage, seed: int) -> Path:
    import keras

    keras.utils.set_random_seed(seed)
    if stage is Stage.CERVIX:
        model = build_cervix_unet(32, base_filters=4, depth=2)
    else:
        model = build_lesion_unet(64, n_filters=4, depth=2)
    path.parent.mkdir(parents=True, exist_ok=True)
    model.save(path)
    return path


@pytest.fixture(scope="module")
def tiny_models(tmp_path_factory: pytest.TempPathFactory) -> dict[Stage, Path]:
    folder = tmp_path_factory.mktemp("tiny")
    return {
        Stage.CERVIX: _save_tiny(folder / "cervix.keras", Stage.CERVIX, 0),
        Stage.LESION: _save_tiny(folder / "lesion.keras", Stage.LESION, 0),
    }


def _photo_inputs(stage: Any, count: int) -> np.ndarray:
    """Stage inputs made the pipeline's way from test photos (different each)."""
    make = cervix_input if stage.input_channels == 3 else lesion_input
    return np.stack(
        [
            make(draw_photo(160, 120, seed=i), stage.input_size, stage.input_channels)
            for i in range(count)
        ]
    )


# -- which runtime ---------------------------------------------------------------------------


def test_auto_takes_openvino_on_a_cpu_and_tensorflow_on_a_gpu() -> None:
    """``auto`` is OpenVINO on a CPU and TensorFlow where there is a GPU; INT8 always runs
    on OpenVINO; INT8 with ``runtime = "tensorflow"`` is a configuration error."""
    assert resolve_runtime(Runtime.AUTO, Precision.AUTO, gpus=0) is Runtime.OPENVINO
    assert resolve_runtime(Runtime.AUTO, Precision.AUTO, gpus=1) is Runtime.TENSORFLOW
    assert resolve_runtime(Runtime.AUTO, Precision.INT8, gpus=1) is Runtime.OPENVINO
    assert resolve_runtime(Runtime.TENSORFLOW, Precision.AUTO, gpus=0) is Runtime.TENSORFLOW
    assert resolve_runtime(Runtime.OPENVINO, Precision.FLOAT32, gpus=1) is Runtime.OPENVINO
    with pytest.raises(ConfigError, match=r"models\.precision"):
        resolve_runtime(Runtime.TENSORFLOW, Precision.INT8, gpus=0)


def test_without_openvino_auto_is_tensorflow_and_openvino_is_a_clear_error() -> None:
    """Where OpenVINO is not installed, ``auto`` falls back to TensorFlow and an explicit
    ``openvino`` names the extra to install (checked in a process that cannot import it)."""
    code = (
        "import sys; sys.modules['openvino'] = None\n"
        "from cervixbatch.config import Precision, Runtime\n"
        "from cervixbatch.errors import ModelError\n"
        "from cervixbatch.model.runtime import resolve_runtime\n"
        "print(resolve_runtime(Runtime.AUTO, Precision.AUTO, gpus=0).value)\n"
        "try:\n"
        "    resolve_runtime(Runtime.OPENVINO, Precision.AUTO, gpus=0)\n"
        "except ModelError as exc:\n"
        "    print(exc)\n"
    )
    env = {**os.environ, "PYTHONPATH": f"{REPO}{os.pathsep}{REPO / 'daemon'}"}
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True
    ).stdout.splitlines()
    assert out[0] == "tensorflow"
    assert "cervixbatch[openvino]" in out[1]


def test_configured_runtime_is_what_loads_and_what_results_record(
    make_config: Callable[..., Path],
) -> None:
    """``models.runtime`` decides which runtime loads the stages, and the loaded pair says
    which runtime and precision made its results."""
    from cervixbatch.config import load_config
    from cervixbatch.model.openvino_rt import OpenVinoStage
    from cervixbatch.model.pair import load_stages
    from cervixbatch.model.stage import StageModel

    on_openvino = load_stages(
        load_config(make_config(models__runtime="openvino", models__precision="float32"))
    )
    assert isinstance(on_openvino.cervix, OpenVinoStage)
    assert (on_openvino.runtime, on_openvino.precision) == ("openvino", "float32")
    on_tensorflow = load_stages(
        load_config(make_config(models__runtime="tensorflow", models__precision="float32"))
    )
    assert isinstance(on_tensorflow.lesion, StageModel)
    assert (on_tensorflow.runtime, on_tensorflow.precision) == ("tensorflow", "float32")
    assert on_openvino.cervix_version == on_tensorflow.cervix_version


# -- same outputs ------------------------------------------------------------------------------


@pytest.mark.parametrize("stage", [Stage.CERVIX, Stage.LESION])
def test_openvino_float32_masks_equal_tensorflows(
    tiny_models: dict[Stage, Path], stage: Stage
) -> None:
    """OpenVINO float32 gives the masks TensorFlow float32 gives (Dice ≥ 0.999 on every
    image), across a padded last batch."""
    from cervixbatch.model.openvino_rt import load_openvino_stage

    ref = str(tiny_models[stage])
    tensorflow = load_stage(ref, stage, batch_size=4, precision=Precision.FLOAT32)
    openvino = load_openvino_stage(ref, stage, _options(None))
    assert openvino.version == tensorflow.version
    images = _photo_inputs(tensorflow, 7)
    expected, got = tensorflow.predict_batch(images), openvino.predict_batch(images)
    assert got.shape == expected.shape == (7, *tensorflow.input_size)
    assert np.abs(got - expected).max() < 1e-3
    for a, b in zip(expected > 0.5, got > 0.5, strict=True):
        assert dice(a, b) >= 0.999


# -- the IR cache ------------------------------------------------------------------------------


def _events(logs: list[dict[str, Any]]) -> list[str]:
    return [entry["event"] for entry in logs]


def test_cached_ir_is_reused_and_replaced_when_the_model_file_changes(tmp_path: Path) -> None:
    """The converted model is written once per model version and read back on the next
    load; a changed model file (new sha256) is converted again, and runs the new weights."""
    from cervixbatch.model.openvino_rt import load_openvino_stage

    model = _save_tiny(tmp_path / "m" / "cervix.keras", Stage.CERVIX, 1)
    cache = tmp_path / "cache"
    with capture_logs() as logs:
        first = load_openvino_stage(str(model), Stage.CERVIX, _options(cache))
    assert "ir_cache_written" in _events(logs)
    entry = cache / f"cervix-{file_sha256(model)}"
    assert (entry / "model.xml").is_file()
    assert (entry / "model.bin").is_file()
    written = (entry / "model.bin").stat().st_mtime_ns

    with capture_logs() as logs:
        again = load_openvino_stage(str(model), Stage.CERVIX, _options(cache))
    assert "ir_cache_hit" in _events(logs)
    assert "ir_cache_written" not in _events(logs)
    assert (entry / "model.bin").stat().st_mtime_ns == written
    images = _photo_inputs(first, 3)
    np.testing.assert_array_equal(first.predict_batch(images), again.predict_batch(images))

    _save_tiny(model, Stage.CERVIX, 2)  # same path, other weights
    with capture_logs() as logs:
        changed = load_openvino_stage(str(model), Stage.CERVIX, _options(cache))
    assert "ir_cache_written" in _events(logs)
    assert changed.version == file_sha256(model) != first.version
    assert (cache / f"cervix-{changed.version}" / "model.xml").is_file()
    tensorflow = load_stage(str(model), Stage.CERVIX, batch_size=4, precision=Precision.FLOAT32)
    np.testing.assert_allclose(
        changed.predict_batch(images), tensorflow.predict_batch(images), atol=1e-3
    )
    assert not np.allclose(changed.predict_batch(images), first.predict_batch(images))
    assert not [p for p in cache.iterdir() if p.name.startswith(".")]  # no temp left


def test_a_damaged_cache_entry_is_converted_again(tmp_path: Path) -> None:
    """An unreadable cached IR is not fatal: the model is converted and the entry replaced."""
    from cervixbatch.model.openvino_rt import load_openvino_stage

    model = _save_tiny(tmp_path / "cervix.keras", Stage.CERVIX, 3)
    cache = tmp_path / "cache"
    load_openvino_stage(str(model), Stage.CERVIX, _options(cache))
    xml = cache / f"cervix-{file_sha256(model)}" / "model.xml"
    xml.write_text("<net>truncated", encoding="utf-8")
    with capture_logs() as logs:
        load_openvino_stage(str(model), Stage.CERVIX, _options(cache))
    assert {"ir_cache_unreadable", "ir_cache_written"} <= set(_events(logs))
    assert xml.read_text(encoding="utf-8").startswith("<?xml")


def test_without_a_cache_folder_nothing_is_written(tmp_path: Path) -> None:
    """With no cache folder (a non-SQLite database and no ``models.cache``) the model is
    converted in memory: nothing lands beside the model or anywhere else."""
    from cervixbatch.model.openvino_rt import load_openvino_stage

    model = _save_tiny(tmp_path / "cervix.keras", Stage.CERVIX, 4)
    load_openvino_stage(str(model), Stage.CERVIX, _options(None))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cervix.keras"]


# -- INT8: quantize, the card, the gate ------------------------------------------------------


@pytest.fixture(scope="module")
def quantized(tmp_path_factory: pytest.TempPathFactory, analytic_models: dict[str, Path]) -> Path:
    """A folder with copies of the analytic models, INT8 models quantized beside them by
    `cervixbatch quantize` on 10 test photos, and a config.toml using them."""
    root = tmp_path_factory.mktemp("int8")
    for name, path in analytic_models.items():
        shutil.copy(path, root / f"{name}.keras")
    for i in range(10):
        write_photo(root / "photos" / f"p{i:02d}.jpg", draw_photo(320, 240, seed=i))
    config = root / "config.toml"
    config.write_text(
        '[paths]\ninbox = "inbox"\noutbox = "outbox"\n'
        '[database]\nurl = "sqlite:///state/cervixbatch.db"\n'
        "[batch]\nsize = 4\n[watch]\nsettle_seconds = 0.3\n"
        '[models]\ncervix = "cervix.keras"\nlesion = "lesion.keras"\n'
        'runtime = "openvino"\nprecision = "int8"\n'
        '[logging]\nformat = "json"\n',
        encoding="utf-8",
    )
    (root / "inbox").mkdir()
    result = CliRunner().invoke(
        main,
        ["--config", str(config), "quantize", "--images", str(root / "photos"), "--count", "8"],
    )
    assert result.exit_code == 0, result.output
    assert "mean Dice" in result.stdout
    return root


def test_quantize_writes_int8_models_beside_the_models_with_cards(quantized: Path) -> None:
    """Each stage gets NAME.int8.xml/.bin and a card naming the float model's sha256, the
    calibration set, and the float-vs-INT8 agreement on photos it was not calibrated on."""
    for stage in ("cervix", "lesion"):
        card = json.loads((quantized / f"{stage}.int8.card.json").read_text(encoding="utf-8"))
        assert (quantized / f"{stage}.int8.xml").is_file()
        assert (quantized / f"{stage}.int8.bin").is_file()
        assert card["float_model"]["sha256"] == file_sha256(quantized / f"{stage}.keras")
        assert card["calibration"]["source"] == "folder"
        assert card["calibration"]["inputs"] == 7  # 1 of the 8 checks the search's tries
        assert card["selection"][0]["selection"]["held_out"] == 1
        agreement = card["agreement"]
        assert agreement["held_out"] == 2
        assert 0.98 <= agreement["mean_dice"] <= 1.0
        assert agreement["min_dice"] <= agreement["mean_dice"]
        assert agreement["largest_disagreement"]["image"].startswith("p")
        assert agreement["decision_flip_share"] == 0.0
        assert 0.0 <= agreement["max_lesion_fraction_change"] < 0.05


def _process(config: Path, photo: Path) -> dict[str, Any]:
    result = CliRunner().invoke(main, ["--config", str(config), "process", str(photo)])
    assert result.exit_code == 0, result.output
    report = CliRunner().invoke(main, ["--config", str(config), "report", "--format", "json"])
    return json.loads(report.stdout)


def test_int8_results_record_runtime_and_precision(quantized: Path, tmp_path: Path) -> None:
    """An INT8 model that passes its card segments, and each result says it was made by
    OpenVINO in INT8."""
    photo = write_photo(tmp_path / "new.jpg", draw_photo(320, 240, seed=42))
    report = _process(quantized / "config.toml", photo)
    result = report["items"][0]["results"][0]
    assert (result["runtime"], result["precision"]) == ("openvino", "int8")
    assert result["cervix_found"] is True


def _copy_with_card(quantized: Path, tmp_path: Path, mean_dice: float, extra: str = "") -> Path:
    folder = tmp_path / "set"
    shutil.copytree(quantized, folder, ignore=shutil.ignore_patterns("state", "outbox"))
    card_path = folder / "lesion.int8.card.json"
    card = json.loads(card_path.read_text(encoding="utf-8"))
    card["agreement"]["mean_dice"] = mean_dice
    card_path.write_text(json.dumps(card), encoding="utf-8")
    config = folder / "config.toml"
    config.write_text(
        config.read_text(encoding="utf-8").replace(
            'precision = "int8"\n', f'precision = "int8"\n{extra}'
        ),
        encoding="utf-8",
    )
    return config


def test_daemon_refuses_an_int8_model_whose_card_shows_low_agreement(
    quantized: Path, tmp_path: Path
) -> None:
    """The daemon does not start on an INT8 stage whose card shows agreement below
    ``models.min_agreement_dice``: it exits 1 and its log names the figure and the key."""
    config = _copy_with_card(quantized, tmp_path, 0.9123)
    done = subprocess.run(
        [sys.executable, "-m", "cervixbatchd", "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=240,
        env={**os.environ, "PYTHONPATH": f"{REPO}{os.pathsep}{REPO / 'daemon'}"},
        check=False,
    )
    assert done.returncode == 1, done.stdout + done.stderr
    fatal = [
        json.loads(line)
        for line in done.stdout.splitlines()
        if line.startswith("{") and '"fatal_error"' in line
    ]
    assert fatal, done.stdout + done.stderr
    assert "0.9123" in fatal[0]["detail"]
    assert "min_agreement_dice" in fatal[0]["detail"]
    assert "lesion" in fatal[0]["detail"]
    assert "ready" not in done.stdout


def test_a_lower_min_agreement_accepts_the_same_card(quantized: Path, tmp_path: Path) -> None:
    """The gate is the configured figure: with ``min_agreement_dice`` below the card's
    agreement, the same INT8 model is used."""
    config = _copy_with_card(quantized, tmp_path, 0.9123, "min_agreement_dice = 0.9\n")
    photo = write_photo(tmp_path / "one.png", draw_photo(320, 240, seed=5))
    report = _process(config, photo)
    assert report["items"][0]["results"][0]["precision"] == "int8"


def test_an_int8_model_of_an_older_float_model_is_refused(quantized: Path, tmp_path: Path) -> None:
    """When the float model file changed after quantizing, its INT8 model is stale: refused
    with a message that says to quantize again."""
    from cervixbatch.model.openvino_rt import load_openvino_stage

    config = _copy_with_card(quantized, tmp_path, 0.999)
    model = config.parent / "cervix.keras"
    _save_tiny(model, Stage.CERVIX, 5)
    with pytest.raises(ModelError, match="quantize"):
        load_openvino_stage(str(model), Stage.CERVIX, _options(None, Precision.INT8))


def test_int8_needs_a_quantized_model(tiny_models: dict[Stage, Path]) -> None:
    """Asking for INT8 of a model never quantized is a clear error naming the command."""
    from cervixbatch.model.openvino_rt import load_openvino_stage

    with pytest.raises(ModelError, match="cervixbatch quantize"):
        load_openvino_stage(
            str(tiny_models[Stage.LESION]), Stage.LESION, _options(None, Precision.INT8)
        )


def test_evaluate_runs_on_every_runtime(make_config: Callable[..., Path], tmp_path: Path) -> None:
    """``evaluate`` scores the same labelled photos on TensorFlow and on OpenVINO float32,
    says which made the figures, and the two runtimes give the same Dice."""
    data = tmp_path / "data"
    made = CliRunner().invoke(
        main, ["synth", "--count", "3", "--out", str(data), "--size", "320x240", "--seed", "3"]
    )
    assert made.exit_code == 0, made.output
    config = make_config(models__precision="float32")
    scores = {}
    for runtime in ("tensorflow", "openvino"):
        result = CliRunner().invoke(
            main,
            [
                "--config",
                str(config),
                "evaluate",
                "--images",
                str(data / "images"),
                "--cervix-masks",
                str(data / "cervix"),
                "--lesion-masks",
                str(data / "lesion"),
                "--runtime",
                runtime,
                "--format",
                "json",
            ],
        )
        assert result.exit_code == 0, result.output
        report = json.loads(result.stdout)
        assert (report["runtime"], report["precision"]) == (runtime, "float32")
        assert report["images"] == 3
        scores[runtime] = report["stages"]
    for stage in ("cervix", "lesion"):
        assert scores["openvino"][stage]["mean_dice"] == pytest.approx(
            scores["tensorflow"][stage]["mean_dice"], abs=1e-3
        )


def test_accuracy_control_keeps_the_sensitive_layers_in_float(tmp_path: Path) -> None:
    """Where plain INT8 moves the cleaned masks by more than ``max_drop`` on the validation
    inputs, accuracy-controlled quantization returns the most sensitive convolutions to
    float until it does not, and says how many stayed in INT8."""
    import keras

    from cervixbatch.model.openvino_rt import OpenVinoStage, compile_stage, float_ir
    from cervixbatch.segmentation.two_stage import PipelineSettings
    from cervixbatch.tools.quantize.search import (
        ValidationItem,
        grid_mask,
        quantize_stage,
        quantized_operations,
    )

    keras.utils.set_random_seed(0)
    model = build_lesion_unet(64, n_filters=4, depth=2)
    head = model.layers[-1]
    kernel, *rest = head.get_weights()
    head.set_weights([kernel * 40.0, *rest])  # ragged regions: INT8 moves their borders
    path = tmp_path / "lesion.keras"
    model.save(path)
    float_model = float_ir(str(path), Stage.LESION, file_sha256(path), None)
    settings = PipelineSettings()

    def compiled(ir: Any, precision: Precision) -> OpenVinoStage:
        return OpenVinoStage(
            compile_stage(ir, 4, precision),
            stage=Stage.LESION,
            version="test",
            source=str(path),
            batch_size=4,
            precision=precision,
        )

    inputs = [lesion_input(draw_photo(160, 120, seed=i), (64, 64), 1) for i in range(24)]
    probs = compiled(float_model, Precision.FLOAT32).predict_batch(np.stack(inputs))
    validation = [
        ValidationItem(x, grid_mask("lesion", p, settings))
        for x, p in zip(inputs, probs, strict=True)
    ]

    def agreement(ir: Any) -> float:
        out = compiled(ir, Precision.INT8).predict_batch(np.stack(inputs))
        return float(
            np.mean(
                [
                    dice(v.reference, grid_mask("lesion", o, settings))
                    for v, o in zip(validation, out, strict=True)
                ]
            )
        )

    plain = quantize_stage(float_model, "lesion", inputs[:16], validation, settings, max_drop=0.0)
    controlled = quantize_stage(
        float_model, "lesion", inputs[:16], validation, settings, max_drop=0.001
    )
    all_int8 = quantized_operations(float_model, plain)
    kept = quantized_operations(float_model, controlled)
    assert all_int8["convolutions_in_int8"] == all_int8["convolutions"] == 13
    assert agreement(plain) < 0.999, "plain INT8 already agrees: the test needs a harder model"
    assert agreement(controlled) >= 0.999
    assert kept["convolutions_in_int8"] < all_int8["convolutions_in_int8"]
