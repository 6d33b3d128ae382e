"""The two UNet builders, loading .keras files, and the compiled batched call."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from cervixbatch.config import Precision
from cervixbatch.errors import ModelError
from cervixbatch.model.loading import file_sha256
from cervixbatch.model.stage import load_stage, pack_builtin, with_precision
from cervixbatch.model.stage_names import Stage
from cervixbatch.model.unet import build_cervix_unet, build_lesion_unet


def test_full_size_seed_architectures_have_the_seed_parameter_counts() -> None:
    """Stage 1 at 128×128×3 (32→512, UpSampling2D) and stage 2 at 512×512×1
    (n_filters=16, BatchNorm, Conv2DTranspose) match the seeds' parameter counts."""
    seed_head = build_cervix_unet(output_channels=3)
    assert seed_head.count_params() == 7_846_723
    assert seed_head.input_shape == (None, 128, 128, 3)
    ours = build_cervix_unet()  # one-channel head: 2 × 33 weights fewer
    assert ours.count_params() == 7_846_657
    lesion = build_lesion_unet()
    assert lesion.count_params() == 2_164_305
    assert lesion.input_shape == (None, 512, 512, 1)
    layer_types = {type(layer).__name__ for layer in lesion.layers}
    assert {"BatchNormalization", "Dropout", "Conv2DTranspose"} <= layer_types
    assert "UpSampling2D" in {type(layer).__name__ for layer in ours.layers}


def test_sizes_are_parameters() -> None:
    """Input size, width and depth are hyperparameters; bad sizes are refused."""
    small = build_lesion_unet(64, n_filters=4, depth=3)
    assert small.input_shape == (None, 64, 64, 1)
    assert small.output_shape == (None, 64, 64, 1)
    with pytest.raises(ValueError, match="divisible"):
        build_cervix_unet(100)


@pytest.fixture(scope="module")
def tiny_cervix_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("m") / "cervix.keras"
    build_cervix_unet(32, base_filters=4, depth=2, output_channels=3).save(path)
    return path


def test_loaded_stage_knows_its_size_and_version(tiny_cervix_file: Path) -> None:
    """A .keras file's input shape sets the stage size; its sha256 is its version."""
    stage = load_stage(
        str(tiny_cervix_file), Stage.CERVIX, batch_size=4, precision=Precision.FLOAT32
    )
    assert stage.input_size == (32, 32)
    assert stage.input_channels == 3
    assert stage.version == file_sha256(tiny_cervix_file)


def test_batched_call_pads_and_averages_channels(tiny_cervix_file: Path) -> None:
    """Any number of images goes through fixed-size batches; a 3-channel head is averaged
    and the result equals the model's own output per image."""
    stage = load_stage(
        str(tiny_cervix_file), Stage.CERVIX, batch_size=4, precision=Precision.FLOAT32
    )
    images = np.random.default_rng(0).random((6, 32, 32, 3), dtype=np.float32)
    probs = stage.predict_batch(images)
    assert probs.shape == (6, 32, 32)
    direct = stage.model(images[:1], training=False).numpy().mean(axis=-1)
    np.testing.assert_allclose(probs[0], direct[0], atol=1e-5)
    assert stage.predict_batch(images[:0]).shape == (0, 32, 32)
    # one trace only: the padded last batch reuses the graph
    assert stage._call.experimental_get_tracing_count() == 1


def test_bfloat16_copy_stays_close(tiny_cervix_file: Path) -> None:
    """The mixed_bfloat16 copy computes in bf16 and stays close to float32."""
    f32 = load_stage(str(tiny_cervix_file), Stage.CERVIX, batch_size=2, precision=Precision.FLOAT32)
    bf16 = with_precision(f32.model, Precision.MIXED_BFLOAT16)
    x = np.random.default_rng(1).random((2, 32, 32, 3), dtype=np.float32)
    a = f32.model(x, training=False).numpy()
    b = np.asarray(bf16(x, training=False), dtype=np.float32)
    assert np.abs(a - b).max() < 0.05


def test_model_with_wrong_output_shape_is_refused(tmp_path: Path) -> None:
    """A model whose output is not a mask of its input's size is a clear ModelError."""
    import keras

    inputs = keras.Input((32, 32, 3))
    outputs = keras.layers.Dense(1, activation="sigmoid")(keras.layers.Flatten()(inputs))
    path = tmp_path / "bad.keras"
    keras.Model(inputs, outputs).save(path)
    with pytest.raises(ModelError, match="must output a mask"):
        load_stage(str(path), Stage.CERVIX, batch_size=1, precision=Precision.FLOAT32)


def test_missing_and_corrupt_model_files_are_model_errors(tmp_path: Path) -> None:
    """A missing or unreadable model file names the stage and the file."""
    with pytest.raises(ModelError, match="does not exist"):
        load_stage(
            str(tmp_path / "none.keras"), Stage.LESION, batch_size=1, precision=Precision.FLOAT32
        )
    junk = tmp_path / "junk.keras"
    junk.write_bytes(b"not a zip")
    with pytest.raises(ModelError, match="cannot be loaded"):
        load_stage(str(junk), Stage.LESION, batch_size=1, precision=Precision.FLOAT32)


def test_packed_float16_weights_round_trip(tmp_path: Path) -> None:
    """The shipped form (JSON + float16 weights) rebuilds a model with the same outputs."""
    import json

    import keras

    model = build_lesion_unet(32, n_filters=4, depth=2)
    version = pack_builtin(model, tmp_path, Stage.LESION)
    assert len(version) == 64
    rebuilt = keras.Model.from_config(json.loads((tmp_path / "lesion.json").read_text()))
    with np.load(tmp_path / "lesion.weights.npz") as packed:
        rebuilt.set_weights([packed[f"w{i}"].astype(np.float32) for i in range(len(packed.files))])
    x = np.random.default_rng(2).random((1, 32, 32, 1), dtype=np.float32)
    a = model(x, training=False).numpy()
    b = rebuilt(x, training=False).numpy()
    assert np.abs(a - b).max() < 1e-2
