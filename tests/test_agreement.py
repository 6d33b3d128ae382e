"""The INT8 gate's figure: agreement of the masks ``process`` writes, one stage swapped."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
from support.fixed_maps import FixedMaps

from cervixbatch.segmentation.two_stage import Pipeline, PipelineSettings
from cervixbatch.tools.quantize.agreement import mask_agreement


def _cervix(speck: bool = False) -> FixedMaps:
    prob = np.zeros((128, 128), np.float32)
    cv2.ellipse(prob, (64, 64), (40, 34), 0, 0, 360, 0.9, -1)
    if speck:  # a second, small component in a corner: not the cervix
        prob[4:9, 4:9] = 0.9
    return FixedMaps(prob, 3)


def _lesion(shift: int = 0, speck: bool = False) -> FixedMaps:
    prob = np.zeros((64, 64), np.float32)
    cv2.circle(prob, (32 + shift, 32), 10, 0.9, -1)
    if speck:  # ~0.1 % of the cervix, inside it
        prob[14:16, 31:33] = 0.9
    return FixedMaps(prob, 1)


def _photos(tmp_path: Path, count: int = 3) -> list[Path]:
    rng = np.random.default_rng(3)
    paths = []
    for index in range(count):
        path = tmp_path / f"p{index}.png"
        cv2.imwrite(str(path), rng.integers(0, 255, (300, 400, 3), dtype=np.uint8))
        paths.append(path)
    return paths


def test_flips_that_never_reach_a_written_mask_do_not_count(tmp_path: Path) -> None:
    """A candidate that differs from the reference only by a stray cervix component and a
    lesion speck under min_lesion_fraction writes the same masks: agreement 1.0 for both
    stages, though the model grids differ."""
    reference = Pipeline(_cervix(), _lesion(), PipelineSettings(min_lesion_fraction=0.005))
    agreed = mask_agreement(
        reference, _cervix(speck=True), _lesion(speck=True), _photos(tmp_path), batch_size=2
    )
    assert agreed["cervix"].scores == [1.0, 1.0, 1.0]
    assert agreed["lesion"].scores == [1.0, 1.0, 1.0]


def test_flips_in_written_masks_count_for_their_own_stage_only(tmp_path: Path) -> None:
    """Where the masks differ, the figure is the Dice of the written masks; with the
    minimum at 0 the lesion speck counts too, and a moved lesion lowers only the lesion
    stage's figure. The summary names the worst photo."""
    photos = _photos(tmp_path)
    reference = Pipeline(_cervix(), _lesion(), PipelineSettings(min_lesion_fraction=0.0))
    speck = mask_agreement(reference, _cervix(), _lesion(speck=True), photos, batch_size=2)
    assert all(0.97 < score < 1.0 for score in speck["lesion"].scores)
    moved = mask_agreement(reference, _cervix(), _lesion(shift=5), photos, batch_size=2)
    assert moved["cervix"].scores == [1.0, 1.0, 1.0]
    summary = moved["lesion"].summary()
    assert summary["images"] == 3
    assert 0.5 < summary["mean_dice"] < 0.9
    assert summary["worst_image"] in {"p0.png", "p1.png", "p2.png"}
