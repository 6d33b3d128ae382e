"""The seeds' model files as Keras 2 wrote them: loading, equality with Keras 2's own
predictions, and `process` against the seeds' own predict steps."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import pytest
from click.testing import CliRunner
from support.photos import draw_photo, write_photo
from support.tools import tool_missing

from cervixbatch.cli import main
from cervixbatch.config import Precision
from cervixbatch.errors import ModelError
from cervixbatch.model.stage import load_stage
from cervixbatch.model.stage_names import Stage
from cervixbatch.segmentation.scores import dice

pytestmark = pytest.mark.slow

WRITER = Path(__file__).with_name("keras2_seeds.py")
TINY = 128  # the seeds' stage-1 size; narrow (4 filters) so that Keras 2 writes it fast


def _require_tf_keras() -> None:
    if importlib.util.find_spec("tf_keras") is None:
        tool_missing(
            "tf-keras is not installed (pip install -e '.[test]'): no Keras 2 to write with"
        )


def _write_with_keras2(folder: Path, spec: dict[str, object]) -> dict[str, int]:
    _require_tf_keras()
    spec_file = folder / "spec.json"
    spec_file.write_text(json.dumps({"out": str(folder), **spec}))
    env = {**os.environ, "TF_USE_LEGACY_KERAS": "1", "TF_CPP_MIN_LOG_LEVEL": "2"}
    done = subprocess.run(
        [sys.executable, str(WRITER), str(spec_file)],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads((folder / "report.json").read_text())


@pytest.fixture(scope="module")
def tiny_seed_files(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Seed-architecture models (narrow) written by Keras 2, and the seeds' own masks."""
    folder = tmp_path_factory.mktemp("keras2_tiny")
    photo = write_photo(folder / "photo.png", draw_photo(640, 480))
    _write_with_keras2(
        folder,
        {
            "cervix": {"size": TINY, "filters": 4, "analytic": True, "file": "weights.h5"},
            "lesion": {"size": TINY, "filters": 4, "analytic": True, "file": "model-unet.h5"},
            "photo": str(photo),
        },
    )
    return folder


def test_seed_001_full_model_written_by_keras2_loads_and_predicts_the_same(
    tiny_seed_files: Path,
) -> None:
    """Seed 001's ModelCheckpoint file (compiled with its custom dice loss) loads without
    the seed's code and predicts what Keras 2 predicted."""
    stage = load_stage(
        str(tiny_seed_files / "weights.h5"),
        Stage.CERVIX,
        batch_size=1,
        precision=Precision.FLOAT32,
    )
    assert stage.format == "keras2-h5"
    assert "written by Keras 2." in stage.architecture
    assert stage.input_size == (TINY, TINY)
    x = np.load(tiny_seed_files / "cervix_probe_x.npy")
    expected = np.load(tiny_seed_files / "cervix_probe_y.npy")
    np.testing.assert_allclose(stage.model(x, training=False).numpy(), expected, atol=1e-5)


def test_seed_000_weights_only_file_loads_into_the_seed_architecture(
    tiny_seed_files: Path,
) -> None:
    """Seed 000's save_weights_only file loads into the built-in lesion UNet, its width and
    depth read from the weight shapes, and predicts what Keras 2 predicted."""
    stage = load_stage(
        str(tiny_seed_files / "model-unet.h5"),
        Stage.LESION,
        batch_size=1,
        precision=Precision.FLOAT32,
        input_size=TINY,
    )
    assert stage.format == "keras2-h5-weights"
    assert "n_filters=4, depth=4, batchnorm=True" in stage.architecture
    assert stage.input_size == (TINY, TINY)
    x = np.load(tiny_seed_files / "lesion_probe_x.npy")
    expected = np.load(tiny_seed_files / "lesion_probe_y.npy")
    np.testing.assert_allclose(stage.model(x, training=False).numpy(), expected, atol=1e-4)


def test_process_with_seed_files_matches_the_seeds_own_predict(
    tiny_seed_files: Path, tmp_path: Path, make_config: Callable[..., Path]
) -> None:
    """With the seed-faithful settings, `process` gives the masks that the Keras 2 models
    give through the seeds' own preprocessing, binarisation and cropping (Dice ≥ 0.99),
    and the report names the format and architecture of the models in use."""
    config = make_config(
        models__cervix=str(tiny_seed_files / "weights.h5"),
        models__lesion=str(tiny_seed_files / "model-unet.h5"),
        models__lesion_input_size=TINY,
        models__cervix_threshold="otsu",
        models__cervix_region="seed",
        models__cervix_channel_order="bgr",
        models__cervix_resize="cubic",
        models__lesion_resize="cubic",
        models__min_lesion_fraction=0.0,
    )
    inbox = tmp_path / "drop"
    inbox.mkdir()
    (inbox / "photo.png").write_bytes((tiny_seed_files / "photo.png").read_bytes())
    runner = CliRunner()
    result = runner.invoke(main, ["--config", str(config), "process", str(inbox)])
    assert result.exit_code == 0, result.output
    report = json.loads(
        runner.invoke(main, ["--config", str(config), "report", "--format", "json"]).stdout
    )
    outputs = report["items"][0]["results"][0]["outputs"]
    for ours, seeds in (("cervix_mask", "seed_cervix.png"), ("lesion_mask", "seed_lesion.png")):
        mine = cv2.imread(outputs[ours], cv2.IMREAD_GRAYSCALE) > 0
        theirs = cv2.imread(str(tiny_seed_files / seeds), cv2.IMREAD_GRAYSCALE) > 0
        assert theirs.sum() > 1000, seeds  # the seed found something to compare with
        assert dice(theirs, mine) >= 0.99, (ours, dice(theirs, mine))
    # the report's "models in use" says what each recorded sha256 was loaded as
    table = runner.invoke(main, ["--config", str(config), "report"]).stdout
    assert "= keras2-h5: " in table and "written by Keras 2." in table
    assert "= keras2-h5-weights: seed lesion UNet (n_filters=4" in table


def test_full_size_seed_files_written_by_keras2_have_the_seed_parameter_counts(
    tmp_path: Path,
) -> None:
    """At the seeds' own sizes (stage 1: 128×128×3, 32→512, 3-channel head; stage 2:
    512×512×1, n_filters=16), Keras 2's files load with the seeds' parameter counts, the
    weights-only one at the seed's 512 by default, and predict what Keras 2 predicted."""
    counts = _write_with_keras2(
        tmp_path,
        {
            "cervix": {"size": 128, "filters": 32, "file": "weights.h5"},
            "lesion": {"size": 512, "filters": 16, "file": "model-unet.h5"},
        },
    )
    assert counts["cervix_params"] == 7_846_723
    assert counts["lesion_params"] == 2_164_305
    for stage_name, file, params in (
        (Stage.CERVIX, "weights.h5", 7_846_723),
        (Stage.LESION, "model-unet.h5", 2_164_305),
    ):
        stage = load_stage(
            str(tmp_path / file), stage_name, batch_size=1, precision=Precision.FLOAT32
        )
        assert stage.model.count_params() == params
        x = np.load(tmp_path / f"{stage_name}_probe_x.npy")
        expected = np.load(tmp_path / f"{stage_name}_probe_y.npy")
        np.testing.assert_allclose(stage.model(x, training=False).numpy(), expected, atol=1e-4)
    assert stage.input_size == (512, 512)


def test_a_file_that_fits_no_loader_names_each_and_why(
    tiny_seed_files: Path, tmp_path: Path
) -> None:
    """A model file no loader takes gets one error naming every loader and its reason."""
    junk = tmp_path / "model.h5"
    junk.write_bytes(b"not a model at all")
    with pytest.raises(ModelError) as caught:
        load_stage(str(junk), Stage.CERVIX, batch_size=1, precision=Precision.FLOAT32)
    message = str(caught.value)
    assert ".keras archive: not a .keras archive" in message
    assert "Keras 2 HDF5 full model: not an HDF5 file" in message
    assert "Keras 2 HDF5 weights into the seed architecture: not an HDF5 file" in message
    # seed 000's lesion weights offered as the cervix model: the error says what they are
    with pytest.raises(ModelError, match="look like the seed lesion UNet"):
        load_stage(
            str(tiny_seed_files / "model-unet.h5"),
            Stage.CERVIX,
            batch_size=1,
            precision=Precision.FLOAT32,
        )


def test_train_init_fine_tunes_from_the_seed_file(
    tiny_seed_files: Path, tmp_path: Path, make_config: Callable[..., Path]
) -> None:
    """`train --init` starts from seed 001's Keras 2 file (its 3-channel head and input
    size) at a tenth of the seed's rate, and the card records what it started from."""
    runner = CliRunner()
    data = tmp_path / "set"
    made = runner.invoke(
        main, ["synth", "--count", "6", "--out", str(data), "--seed", "4", "--size", "320x240"]
    )
    assert made.exit_code == 0
    out = tmp_path / "tuned.keras"
    result = runner.invoke(
        main,
        [
            "--config",
            str(make_config()),
            "train",
            "--stage",
            "cervix",
            "--images",
            str(data / "images"),
            "--masks",
            str(data / "cervix"),
            "--init",
            str(tiny_seed_files / "weights.h5"),
            "--epochs",
            "1",
            "--out",
            str(out),
        ],
    )
    assert result.exit_code == 0, result.output
    card = json.loads(out.with_name("tuned.card.json").read_text())
    assert card["init"]["format"] == "keras2-h5"
    assert card["init"]["file"] == str(tiny_seed_files / "weights.h5")
    assert card["training"]["learning_rate"] == pytest.approx(1e-5)
    assert card["input_shape"] == [TINY, TINY, 3]
    tuned = load_stage(str(out), Stage.CERVIX, batch_size=1, precision=Precision.FLOAT32)
    seed = load_stage(
        str(tiny_seed_files / "weights.h5"), Stage.CERVIX, batch_size=1, precision=Precision.FLOAT32
    )
    assert tuned.model.output_shape[-1] == 3
    first_tuned, first_seed = tuned.model.get_weights()[0], seed.model.get_weights()[0]
    assert np.abs(first_tuned - first_seed).max() < 0.01  # fine-tuned, not trained anew
