"""Tests of the colposcopy augmentation (`train --augment colposcopy`)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from cervixbatch.cli import main
from cervixbatch.tools.training.augment import ColposcopyAugmenter


def _pair(channels: int, size: int = 64) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    image = rng.uniform(0.2, 0.8, (size, size, channels)).astype(np.float32)
    mask = np.zeros((size, size, 1), np.float32)
    mask[16:48, 16:48] = 1.0
    return image, mask


@pytest.mark.parametrize("channels", [1, 3])
def test_shapes_ranges_and_binary_masks(channels: int):
    """Every variant keeps the input's shape and dtype, stays in 0..1, masks stay 0/1."""
    augment = ColposcopyAugmenter(1)
    image, mask = _pair(channels)
    for _ in range(25):
        out, out_mask = augment(image, mask)
        assert out.shape == image.shape and out.dtype == np.float32
        assert out_mask.shape == mask.shape and out_mask.dtype == np.float32
        assert out.min() >= 0.0 and out.max() <= 1.0
        assert set(np.unique(out_mask)) <= {0.0, 1.0}


def test_same_seed_same_variants():
    """Two augmenters with one seed give the same sequence of variants."""
    image, mask = _pair(3)
    a, b = ColposcopyAugmenter(7), ColposcopyAugmenter(7)
    for _ in range(5):
        (xa, ya), (xb, yb) = a(image, mask), b(image, mask)
        assert np.array_equal(xa, xb) and np.array_equal(ya, yb)


def test_zooming_out_shrinks_the_scene_into_a_dark_border():
    """Scale below 1 (towards a full view) shrinks image and mask alike, the border dark."""
    augment = ColposcopyAugmenter(3, zoom_out=0.5, zoom_in=0.5)
    image, mask = _pair(3)
    for _ in range(5):
        out, out_mask = augment(image, mask)
        assert out[:2, :2].max() < 0.05 and not out_mask[:2, :2].any()
        assert 0.1 * mask.sum() < out_mask.sum() < 0.5 * mask.sum()


def test_colour_casts_and_grey_renderings_vary_the_colour_balance():
    """Red-to-blue balance varies from variant to variant; with grey_chance 1 every variant
    is a tinted grey (all channels proportional)."""
    image = np.full((32, 32, 3), 0.5, np.float32)
    mask = np.zeros((32, 32, 1), np.float32)
    augment = ColposcopyAugmenter(5, zoom_out=1.0, zoom_in=1.0)
    ratios = []
    for _ in range(40):
        out = augment(image, mask)[0]
        ratios.append(float(out[..., 0].mean() / max(float(out[..., 2].mean()), 1e-3)))
    assert np.std(ratios) > 0.05
    rng = np.random.default_rng(2)
    textured = rng.uniform(0.2, 0.8, (32, 32, 3)).astype(np.float32)
    grey = ColposcopyAugmenter(5, zoom_out=1.0, zoom_in=1.0, grey_chance=1.0)
    for _ in range(10):
        out = grey(textured, mask)[0].reshape(-1, 3).astype(np.float64)
        # one luma times one tint: the channel columns are proportional (rank one)
        singular = np.linalg.svd(out, compute_uv=False)
        assert singular[1] < 0.08 * singular[0]


@pytest.mark.slow
def test_train_with_colposcopy_augmentation_records_it_in_the_card(
    tmp_path: Path, make_config: Callable[..., Path]
):
    """`train --augment colposcopy` trains a (tiny) model and its card says so."""
    runner = CliRunner()
    data = tmp_path / "data"
    result = runner.invoke(
        main, ["synth", "--count", "6", "--out", str(data), "--seed", "3", "--size", "160x120"]
    )
    assert result.exit_code == 0, result.output
    out = tmp_path / "cervix.keras"
    result = runner.invoke(
        main,
        [
            "--config", str(make_config()), "train", "--stage", "cervix",
            "--images", str(data / "images"), "--masks", str(data / "cervix"),
            "--out", str(out), "--input-size", "32", "--filters", "4", "--epochs", "1",
            "--batch-size", "2", "--augment", "colposcopy",
        ],
        catch_exceptions=False,
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    card = json.loads(out.with_name("cervix.card.json").read_text())
    assert card["training"]["augment"] == "colposcopy"
