"""The two-stage pipeline on arrays: masks at full resolution, fractions, no-cervix case."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
from support.fixed_maps import FixedMaps
from support.photos import draw_photo

from cervixbatch.config import Precision
from cervixbatch.imaging.frames import Frame
from cervixbatch.model.stage import load_stage
from cervixbatch.model.stage_names import Stage
from cervixbatch.segmentation.two_stage import Pipeline, PipelineSettings, downscale


class CountingPredictor:
    """Wraps a stage to count how many images it was asked about."""

    def __init__(self, inner: object) -> None:
        self.inner = inner
        self.seen = 0

    @property
    def input_size(self) -> tuple[int, int]:
        return self.inner.input_size  # type: ignore[attr-defined,no-any-return]

    @property
    def input_channels(self) -> int:
        return self.inner.input_channels  # type: ignore[attr-defined,no-any-return]

    def predict_batch(self, images: np.ndarray) -> np.ndarray:
        self.seen += images.shape[0]
        return self.inner.predict_batch(images)  # type: ignore[attr-defined,no-any-return]


@pytest.fixture(scope="module")
def pipeline_parts(analytic_models: dict[str, Path]) -> tuple[CountingPredictor, CountingPredictor]:
    cervix = load_stage(
        str(analytic_models["cervix"]), Stage.CERVIX, batch_size=4, precision=Precision.FLOAT32
    )
    lesion = load_stage(
        str(analytic_models["lesion"]), Stage.LESION, batch_size=4, precision=Precision.FLOAT32
    )
    return CountingPredictor(cervix), CountingPredictor(lesion)


def _truth(rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    cervix = rgb[..., 0] > 128
    lesion = rgb.min(axis=-1) > 240
    return cervix, lesion


def test_masks_match_the_drawn_regions(
    pipeline_parts: tuple[CountingPredictor, CountingPredictor],
) -> None:
    """On a photo with a pink disc and a white patch, both masks overlay the drawn regions
    at the photo's own resolution and the fractions follow the contract's definitions."""
    cervix_model, lesion_model = pipeline_parts
    rgb = draw_photo(640, 480)
    frame = Frame(index=0, rgb=rgb, full_size=(480, 640))
    (result,) = Pipeline(cervix_model, lesion_model, PipelineSettings()).run([frame])
    assert result.cervix_found
    assert result.cervix_mask.shape == (480, 640) == result.lesion_mask.shape
    true_cervix, true_lesion = _truth(rgb)
    found_cervix = result.cervix_mask > 0
    overlap = (found_cervix & true_cervix).sum() / (found_cervix | true_cervix).sum()
    assert overlap > 0.9
    lesion_overlap = ((result.lesion_mask > 0) & true_lesion).sum() / true_lesion.sum()
    assert lesion_overlap > 0.8
    assert result.cervix_fraction == pytest.approx(found_cervix.mean())
    assert result.lesion_fraction == pytest.approx(
        (result.lesion_mask > 0).sum() / found_cervix.sum()
    )
    assert not (result.lesion_mask > 0)[~found_cervix].any()  # lesions lie on the cervix
    assert result.crop is not None and result.box is not None


def test_no_cervix_means_empty_masks_and_no_stage_two(
    pipeline_parts: tuple[CountingPredictor, CountingPredictor],
) -> None:
    """A photo without a cervix gives cervix_found false, empty masks, and stage 2 is not
    run on the whole photo."""
    cervix_model, lesion_model = pipeline_parts
    before = lesion_model.seen
    dark = np.full((300, 400, 3), 15, np.uint8)
    cv2.circle(dark, (200, 150), 40, (40, 250, 250), -1)  # bright, but not red: no cervix
    (result,) = Pipeline(cervix_model, lesion_model, PipelineSettings()).run(
        [Frame(0, dark, (300, 400))]
    )
    assert not result.cervix_found
    assert not result.cervix_mask.any() and not result.lesion_mask.any()
    assert result.cervix_fraction == 0.0 and result.lesion_fraction == 0.0
    assert lesion_model.seen == before


def test_reduced_working_image_still_gives_full_size_masks(
    pipeline_parts: tuple[CountingPredictor, CountingPredictor],
) -> None:
    """A frame decoded at half size yields masks at its full size, in the right place."""
    cervix_model, lesion_model = pipeline_parts
    full = draw_photo(800, 600)
    half = cv2.resize(full, (400, 300), interpolation=cv2.INTER_AREA)
    (result,) = Pipeline(cervix_model, lesion_model, PipelineSettings()).run(
        [Frame(0, half, (600, 800))]
    )
    assert result.cervix_mask.shape == (600, 800)
    true_cervix, _ = _truth(full)
    found = result.cervix_mask > 0
    assert (found & true_cervix).sum() / (found | true_cervix).sum() > 0.9
    assert result.box is not None and result.box.x1 <= 800 and result.box.y1 <= 600


def test_batch_mixes_found_and_not_found(
    pipeline_parts: tuple[CountingPredictor, CountingPredictor],
) -> None:
    """In one batch, frames with and without a cervix each get their own result, in order."""
    cervix_model, lesion_model = pipeline_parts
    frames = [
        Frame(0, draw_photo(320, 240, seed=1), (240, 320)),
        Frame(1, np.zeros((240, 320, 3), np.uint8), (240, 320)),
        Frame(2, draw_photo(320, 240, seed=2, lesion=False), (240, 320)),
    ]
    results = Pipeline(cervix_model, lesion_model, PipelineSettings()).run(frames)
    assert [r.cervix_found for r in results] == [True, False, True]
    assert results[0].lesion_fraction > 0.0
    assert results[2].lesion_fraction == 0.0


def test_downscale_two_step_matches_area_resize() -> None:
    """The two-step shrink is close to a single INTER_AREA pass at the target size."""
    rng = np.random.default_rng(0)
    big = cv2.GaussianBlur(rng.integers(0, 255, (2000, 2600, 3), dtype=np.uint8), (0, 0), 8)
    fast = downscale(big, (128, 128)).astype(int)
    exact = cv2.resize(big, (128, 128), interpolation=cv2.INTER_AREA).astype(int)
    assert np.abs(fast - exact).mean() < 2.0


def _lesion_regions(min_lesion_fraction: float) -> tuple[int, float]:
    cervix_prob = np.zeros((128, 128), np.float32)
    cv2.ellipse(cervix_prob, (64, 64), (44, 36), 0, 0, 360, 1.0, -1)
    lesion_prob = np.zeros((64, 64), np.float32)
    cv2.circle(lesion_prob, (32, 32), 12, 0.9, -1)  # a lesion: ~15 % of the crop
    lesion_prob[13:15, 31:33] = 0.9  # a speck: 4 cells, ~0.1 % of the cervix
    pipeline = Pipeline(
        FixedMaps(cervix_prob, 3),
        FixedMaps(lesion_prob, 1),
        PipelineSettings(min_lesion_fraction=min_lesion_fraction),
    )
    rgb = np.full((600, 800, 3), 128, np.uint8)
    (result,) = pipeline.run([Frame(index=0, rgb=rgb, full_size=(600, 800))])
    count, _ = cv2.connectedComponents(result.lesion_mask)
    return count - 1, result.lesion_fraction


def test_lesion_regions_below_the_minimum_share_of_the_cervix_are_dropped() -> None:
    """A speck of 0.1 % of the cervix is dropped at min_lesion_fraction 0.005 and kept at
    0; the real lesion is kept either way, and the fraction counts what is drawn."""
    kept_regions, kept_fraction = _lesion_regions(0.0)
    regions, fraction = _lesion_regions(0.005)
    assert kept_regions == 2
    assert regions == 1
    assert 0.05 < fraction < kept_fraction
