"""The weight blend of ``scripts/annocerv_blend.py`` (WiSE-FT) on real Keras lesion UNets."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "scripts"))
from annocerv_blend import blend_weights

from cervixbatch.model.unet import build_lesion_unet


def _tiny(seed: int, n_filters: int = 2) -> object:
    import keras

    keras.utils.set_random_seed(seed)
    return build_lesion_unet(32, n_filters=n_filters, depth=2, dropout=0.0)


def test_a_blend_is_the_weighted_mean_of_every_array_batch_norm_statistics_included() -> None:
    """alpha 0 gives the start, 1 the fine-tune, 0.3 the weighted mean of each array (the
    batch-norm moving statistics too), and the blended model runs."""
    start, tuned = _tiny(0), _tiny(1)
    rng = np.random.default_rng(0)  # every array moved, as a fine-tune moves them
    tuned.set_weights([w + np.abs(rng.normal(0.1, 0.05, w.shape)).astype(w.dtype)
                       for w in tuned.get_weights()])  # fmt: skip
    a, b = start.get_weights(), tuned.get_weights()
    assert all(np.array_equal(x, y) for x, y in zip(blend_weights(a, b, 0.0), a, strict=True))
    assert all(np.array_equal(x, y) for x, y in zip(blend_weights(a, b, 1.0), b, strict=True))
    mixed = blend_weights(a, b, 0.3)
    for x, y, got in zip(a, b, mixed, strict=True):
        np.testing.assert_allclose(got, 0.7 * x + 0.3 * y, rtol=1e-5, atol=1e-6)
    moved = [i for i, (x, y) in enumerate(zip(a, b, strict=True)) if not np.array_equal(x, y)]
    assert len(moved) == len(a)  # every array differs, so every one was blended
    tuned.set_weights(mixed)
    out = np.asarray(tuned(np.zeros((1, 32, 32, 1), np.float32)))
    assert out.shape == (1, 32, 32, 1) and np.isfinite(out).all()


def test_models_of_another_architecture_are_refused() -> None:
    """A fine-tune with other filter counts cannot be averaged with the start: a clear stop."""
    with pytest.raises(SystemExit, match="not the demo's architecture"):
        blend_weights(_tiny(0).get_weights(), _tiny(0, n_filters=4).get_weights(), 0.5)
