"""``models.precision = "auto"`` on OpenVINO picks, per stage, the fastest precision whose
agreement card passes the gate: INT8, else bfloat16 where the CPU has it, else float32 —
with real cards written by `cervixbatch quantize` on tiny models, then made to fail."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from support.photos import draw_photo, write_photo

from cervixbatch.cli import main
from cervixbatch.config import load_config
from cervixbatch.model.runtime import auto_choices, openvino_available

pytestmark = pytest.mark.skipif(
    not openvino_available() and os.environ.get("CI") != "true",
    reason="OpenVINO is not installed: pip install -e '.[openvino]' (CI installs it)",
)


@pytest.fixture(scope="module")
def quantized(tmp_path_factory: pytest.TempPathFactory, analytic_models: dict[str, Path]) -> Path:
    """A folder with the analytic models, their INT8 models and cards written by
    `cervixbatch quantize` on 8 test photos, and a config.toml with precision "auto"."""
    root = tmp_path_factory.mktemp("auto")
    for name, path in analytic_models.items():
        shutil.copy(path, root / f"{name}.keras")
    for i in range(8):
        write_photo(root / "photos" / f"p{i}.jpg", draw_photo(320, 240, seed=i))
    (root / "config.toml").write_text(
        '[paths]\ninbox = "inbox"\noutbox = "outbox"\n'
        '[database]\nurl = "sqlite:///state/cervixbatch.db"\n'
        "[batch]\nsize = 4\n"
        '[models]\ncervix = "cervix.keras"\nlesion = "lesion.keras"\n'
        'runtime = "openvino"\nprecision = "auto"\n',
        encoding="utf-8",
    )
    made = CliRunner().invoke(
        main,
        ["--config", str(root / "config.toml"), "quantize", "--images", str(root / "photos")],
    )
    assert made.exit_code == 0, made.output
    return root


def _edit_card(path: Path, **agreement: Any) -> None:
    card = json.loads(path.read_text(encoding="utf-8"))
    card["agreement"].update(agreement)
    path.write_text(json.dumps(card), encoding="utf-8")


def _load(config: Path) -> Any:
    from cervixbatch.model.pair import load_stages

    return load_stages(load_config(config))


def test_auto_runs_int8_where_the_card_passes(quantized: Path) -> None:
    """With both cards passing, both stages run INT8, the results record "int8", and
    `status`'s figures say why."""
    stages = _load(quantized / "config.toml")
    assert (stages.cervix.precision.value, stages.lesion.precision.value) == ("int8", "int8")
    assert stages.precision == "int8"
    why = auto_choices(load_config(quantized / "config.toml"))
    assert why["lesion"].startswith("int8, its card passes")


def test_the_reports_say_which_precision_and_why(quantized: Path, tmp_path: Path) -> None:
    """After a photo was processed, the JSON and HTML reports (like the table) say per
    stage which precision the configuration gives now and why (the card's figures)."""
    folder = tmp_path / "set"
    shutil.copytree(quantized, folder, ignore=shutil.ignore_patterns("state", "outbox"))
    photo = folder / "inbox" / "one.jpg"
    write_photo(photo, draw_photo(320, 240, seed=40))
    config = str(folder / "config.toml")
    done = CliRunner().invoke(main, ["--config", config, "process", str(photo)])
    assert done.exit_code == 0, done.output
    shown = CliRunner().invoke(main, ["--config", config, "report", "--format", "json"])
    assert shown.exit_code == 0, shown.output
    now = json.loads(shown.stdout)["precision_now"]
    assert set(now) == {"cervix", "lesion"}
    assert now["lesion"].startswith("int8, its card passes")
    assert "held-out photos" in now["lesion"]
    page = folder / "report.html"
    made = CliRunner().invoke(
        main, ["--config", config, "report", "--format", "html", "--output", str(page)]
    )
    assert made.exit_code == 0, made.output
    html = page.read_text(encoding="utf-8")
    assert "Precision now, and why" in html
    assert "<b>lesion</b>: int8, its card passes" in html


def test_auto_never_chooses_an_int8_model_whose_card_fails(quantized: Path, tmp_path: Path) -> None:
    """A real INT8 card that fails the gate (its lesion decisions flip on 10 % of the
    held-out photos, its Dice still high) is passed over: that stage falls back to
    bfloat16 where the CPU has it and its own card passes, else float32, the other stage
    keeps INT8, and the reason names the refusal."""
    from cervixbatch.model.openvino_rt import auto_bf16

    folder = tmp_path / "set"
    shutil.copytree(quantized, folder, ignore=shutil.ignore_patterns("state", "outbox"))
    _edit_card(folder / "lesion.int8.card.json", decision_flip_share=0.1, decision_flips=1)
    stages = _load(folder / "config.toml")
    assert stages.cervix.precision.value == "int8"
    fallback = "mixed_bfloat16" if auto_bf16() else "float32"
    assert stages.lesion.precision.value == fallback
    assert stages.precision == ("int8/bf16" if auto_bf16() else "int8/f32")
    assert "int8 refused" in stages.lesion.precision_reason
    assert "flipped on 10.0%" in stages.lesion.precision_reason
    if auto_bf16():  # its bfloat16 card failing too leaves float32
        _edit_card(folder / "lesion.bf16.card.json", mean_dice=0.5)
        assert _load(folder / "config.toml").lesion.precision.value == "float32"
        why = auto_choices(load_config(folder / "config.toml"))["lesion"]
        assert why.startswith("float32:") and "bfloat16 refused" in why


def test_auto_passes_over_an_int8_model_with_no_int8_layer(quantized: Path, tmp_path: Path) -> None:
    """Accuracy control can return every convolution to float (seen on a 350-photo
    synthetic set): that model passes the gate trivially but is float32 by another name,
    so `auto` does not call it INT8 — the stage falls back as from a failing card, saying
    why, and the other stage keeps INT8."""
    from cervixbatch.model.openvino_rt import auto_bf16

    folder = tmp_path / "set"
    shutil.copytree(quantized, folder, ignore=shutil.ignore_patterns("state", "outbox"))
    card_path = folder / "lesion.int8.card.json"
    card = json.loads(card_path.read_text(encoding="utf-8"))
    assert card["calibration"]["convolutions_in_int8"] > 0  # the real card counted them
    card["calibration"]["convolutions_in_int8"] = 0
    card_path.write_text(json.dumps(card), encoding="utf-8")
    stages = _load(folder / "config.toml")
    assert stages.cervix.precision.value == "int8"
    assert stages.lesion.precision.value != "int8"
    assert stages.lesion.precision.value == ("mixed_bfloat16" if auto_bf16() else "float32")
    assert "kept every convolution in float" in stages.lesion.precision_reason


def test_layers_kept_in_float_run_in_float32(analytic_models: dict[str, Path]) -> None:
    """An INT8 model is compiled with float32 as the inference precision: the layers
    quantize kept in float for agreement must not run in bfloat16, which the CPU would
    otherwise choose where it has AMX or AVX512_BF16."""
    from cervixbatch.config import Precision
    from cervixbatch.model.openvino_rt import compile_stage, float_ir
    from cervixbatch.model.stage import Stage, file_sha256

    path = analytic_models["lesion"]
    model = float_ir(str(path), Stage.LESION, file_sha256(path), None)
    compiled = compile_stage(model, 4, Precision.INT8)
    assert str(compiled.get_property("INFERENCE_PRECISION_HINT")) == "<Type: 'float32'>"
