"""Training defaults that learn, and the guard that stops a collapsed run without saving."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
from click.testing import CliRunner

from cervixbatch.cli import main
from cervixbatch.model.stage_names import Stage
from cervixbatch.tools.training.callbacks import CollapseGuard
from cervixbatch.tools.training.train import default_learning_rate


def _model(weights: list[float], bias: float) -> Any:
    """A real 1×1-convolution Keras model with fixed weights (sigmoid(w · rgb + bias))."""
    import keras

    inputs = keras.Input((16, 16, 3))
    conv = keras.layers.Conv2D(1, (1, 1), activation="sigmoid")
    model = keras.Model(inputs, conv(inputs))
    conv.set_weights(
        [np.array(weights, np.float32).reshape(1, 1, 3, 1), np.array([bias], np.float32)]
    )
    return model


def _batches() -> list[tuple[np.ndarray, np.ndarray]]:
    rng = np.random.default_rng(0)
    x = rng.random((4, 16, 16, 3), dtype=np.float32)
    y = (x[..., :1] > 0.5).astype(np.float32)
    return [(x, y)]


@pytest.mark.parametrize(
    ("weights", "bias", "collapses"),
    [
        ([0.0, 0.0, 0.0], 30.0, True),  # every pixel 1, whatever the photo
        ([0.0, 0.0, 0.0], -30.0, True),  # every pixel 0
        ([60.0, 0.0, 0.0], -30.0, False),  # sure of every pixel, and depends on the photo
        ([0.0, 0.0, 0.0], 0.01, False),  # has not started learning: outputs near 0.5
    ],
)
def test_guard_tells_a_collapsed_model_from_a_learning_one(
    weights: list[float], bias: float, collapses: bool
) -> None:
    """A model sure of a mask that does not depend on the photo collapses after the window;
    an input-dependent one or one that has not started learning does not."""
    guard = CollapseGuard(_batches(), window=2)
    model = _model(weights, bias)
    assert guard.check(model, 1) is None  # never before the window is full
    reason = guard.check(model, 2)
    assert (reason is not None) is collapses, reason
    if collapses:
        assert "same mask for every validation image" in reason


def test_default_learning_rates() -> None:
    """Stage 1 at seed 001's 1e-4; stage 2 at seed 000's 1e-3 with or without the seed
    recipe; a tenth when fine-tuning."""
    assert default_learning_rate(Stage.CERVIX, fine_tune=False) == 1e-4
    assert default_learning_rate(Stage.LESION, fine_tune=False) == 1e-3
    assert default_learning_rate(Stage.LESION, fine_tune=False, seed_recipe=True) == 1e-3
    assert default_learning_rate(Stage.CERVIX, fine_tune=True) == pytest.approx(1e-5)


def test_guard_stops_a_run_whose_validation_dice_does_not_move() -> None:
    """A real Keras fit whose model settled on background without being sure of it
    (every pixel 0.12: BCE's answer to small lesions) keeps the same validation Dice, no
    better than a constant mask's; the guard stops the run after its window."""
    import keras

    model = _model([0.0, 0.0, 0.0], -2.0)
    model.compile(optimizer=keras.optimizers.SGD(learning_rate=0.0), loss="binary_crossentropy")
    batches = _batches()
    guard = CollapseGuard(batches, window=3)
    x, y = batches[0]
    history = model.fit(x, y, epochs=10, verbose=0, callbacks=[guard.callback()])
    assert len(history.history["loss"]) == 3
    assert guard.epoch == 3
    assert guard.reason is not None
    assert "has not moved in 3 epochs" in guard.reason
    assert min(guard.doubts) > 0.05  # not saturated: the old rule let this through


@pytest.mark.slow
def test_a_run_built_to_collapse_stops_with_advice_and_saves_nothing(
    tmp_path: Path, make_config: Callable[..., Path]
) -> None:
    """Masks that do not depend on the photo (every pixel cervix) drive the UNet to one
    constant mask: training stops early with a message and a suggestion, exit status 1,
    and neither the model nor its checkpoint is left behind."""
    synth = tmp_path / "set"
    result = CliRunner().invoke(
        main, ["synth", "--count", "20", "--out", str(synth), "--seed", "5", "--size", "160x120"]
    )
    assert result.exit_code == 0
    for mask in (synth / "cervix").iterdir():
        cv2.imwrite(str(mask), np.full((120, 160), 255, np.uint8))
    out = tmp_path / "models" / "cervix.keras"
    result = CliRunner().invoke(
        main,
        [
            "--config",
            str(make_config()),
            "train",
            "--stage",
            "cervix",
            "--images",
            str(synth / "images"),
            "--masks",
            str(synth / "cervix"),
            "--out",
            str(out),
            "--input-size",
            "32",
            "--filters",
            "4",
            "--batch-size",
            "4",
            "--learning-rate",
            "0.01",
            "--epochs",
            "25",
            "--collapse-epochs",
            "2",
        ],
    )
    assert result.exit_code == 1, result.output
    assert "training of the cervix stage stopped at epoch" in result.stderr
    # either sign of the collapse may be seen first: one mask for all, or a flat Dice
    assert (
        "same mask for every validation image" in result.stderr
        or "validation Dice has not moved" in result.stderr
    ), result.stderr
    assert "Nothing was saved" in result.stderr and "--learning-rate" in result.stderr
    assert not out.exists()
    assert not out.with_name("cervix.checkpoint.keras").exists()
    assert not out.with_name("cervix.card.json").exists()
    stopped_at = int(re.search(r"stopped at epoch (\d+)", result.stderr).group(1))  # type: ignore[union-attr]
    assert stopped_at < 25
