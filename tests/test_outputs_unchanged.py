"""Issue 17 made the outputs cheaper, not different: masks bit for bit as before, overlay
outlines within a pixel of where they were, PNG masks that decode to the same array."""

from __future__ import annotations

import io
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image
from support.photos import write_photo
from support.reference_outputs import reference_overlay_masks, reference_run

from cervixbatch.config import Precision
from cervixbatch.imaging.frames import Frame, ReadLimits
from cervixbatch.imaging.reader import read_input
from cervixbatch.model.stage import StageModel, load_stage
from cervixbatch.model.stage_names import Stage
from cervixbatch.outputs.overlay import overlay_size
from cervixbatch.outputs.png import encode_mask_png, fast_png_available
from cervixbatch.segmentation.two_stage import Pipeline, PipelineSettings
from cervixbatch.tools.synth.v1 import make_sample


def _stages(paths: dict[str, Path]) -> tuple[StageModel, StageModel]:
    return (
        load_stage(str(paths["cervix"]), Stage.CERVIX, batch_size=4, precision=Precision.FLOAT32),
        load_stage(str(paths["lesion"]), Stage.LESION, batch_size=4, precision=Precision.FLOAT32),
    )


@pytest.fixture(scope="module")
def noisy_models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Tiny UNets with random weights: probabilities near 0.5 everywhere, so thresholds
    cut through ragged, noisy regions (the hard case for bit-identical masks)."""
    import keras

    from cervixbatch.model.unet import build_cervix_unet, build_lesion_unet

    keras.utils.set_random_seed(7)
    folder = tmp_path_factory.mktemp("noisy_models")
    paths = {"cervix": folder / "cervix.keras", "lesion": folder / "lesion.keras"}
    cervix = build_cervix_unet(32, base_filters=4, depth=2)
    head = cervix.get_layer("mask")
    kernel, bias = head.get_weights()
    head.set_weights([kernel * 40.0, bias + 0.3])  # ragged cervix regions of varied size
    cervix.save(paths["cervix"])
    lesion = build_lesion_unet(64, n_filters=4, depth=2)
    lesion_head = lesion.layers[-1]
    weights = lesion_head.get_weights()
    lesion_head.set_weights([weights[0] * 40.0, *weights[1:]])
    lesion.save(paths["lesion"])
    return paths


@pytest.fixture(scope="module")
def photo_frames(tmp_path_factory: pytest.TempPathFactory) -> list[Frame]:
    """Synthetic photos of odd sizes, read as the runner reads them: some decoded at a
    reduced scale (working image smaller than the full size), some at full size."""
    folder = tmp_path_factory.mktemp("photos")
    rng = np.random.default_rng(17)
    frames = []
    for index, (size, working_side) in enumerate(
        [((1203, 901), 300), ((998, 1331), 400), ((1600, 1200), None), ((640, 479), None)]
    ):
        sample = make_sample(rng, size)
        path = write_photo(folder / f"p{index}.jpg", sample.rgb)
        (frame,) = read_input(path, ReadLimits(), min_working_side=working_side).frames
        frames.append(frame)
    assert frames[0].rgb.shape[0] < frames[0].full_size[0]  # reduced decode is exercised
    return frames


@pytest.mark.parametrize("models", ["analytic_models", "noisy_models"])
@pytest.mark.parametrize("lesion_threshold", [0.5, 0.43])
def test_masks_are_bit_identical_to_the_previous_pipeline(
    request: pytest.FixtureRequest,
    models: str,
    lesion_threshold: float,
    photo_frames: list[Frame],
) -> None:
    """Masks, boxes, crops and fractions equal those of the pre-issue-17 code exactly."""
    cervix, lesion = _stages(request.getfixturevalue(models))
    # the reference predates min_lesion_fraction (tested in test_pipeline.py)
    settings = PipelineSettings(lesion_threshold=lesion_threshold, min_lesion_fraction=0.0)
    new = Pipeline(cervix, lesion, settings).run(photo_frames)
    old = reference_run(cervix, lesion, settings, photo_frames)
    assert sum(r.cervix_found for r in old) >= 2  # the comparison covers found cervixes
    for ours, theirs in zip(new, old, strict=True):
        assert ours.cervix_found == theirs.cervix_found
        assert np.array_equal(ours.cervix_mask, theirs.cervix_mask)
        assert np.array_equal(ours.lesion_mask, theirs.lesion_mask)
        assert ours.box == theirs.box
        assert (ours.crop is None) == (theirs.crop is None)
        if ours.crop is not None:
            assert np.array_equal(ours.crop, theirs.crop)
        assert ours.cervix_fraction == theirs.cervix_fraction
        assert ours.lesion_fraction == theirs.lesion_fraction


def test_overlay_outlines_stay_within_a_pixel(
    analytic_models: dict[str, Path], photo_frames: list[Frame]
) -> None:
    """Masks drawn at the overlay's size differ from the shrunk full-size masks (the old
    overlay path) only within one pixel of the old outline, or in specks of a few pixels
    (a lesion too small to survive one of the two shrinks). Smooth regions, as real
    models give; the noise-level masks of random weights differ in finer detail."""
    cervix, lesion = _stages(analytic_models)
    results = Pipeline(cervix, lesion, PipelineSettings()).run(photo_frames)
    compared = 0
    for frame, result in zip(photo_frames, results, strict=True):
        if result.source is None:
            continue
        size = overlay_size(*frame.rgb.shape[:2], 512)
        drawn = result.source.draw(size)
        shrunk = reference_overlay_masks(result.cervix_mask, result.lesion_mask, size)
        ring = np.ones((3, 3), np.uint8)
        for new, old in zip(drawn, shrunk, strict=True):
            assert new.shape == old.shape == (size[1], size[0])
            near_outline = cv2.dilate(old, ring) != cv2.erode(old, ring)
            elsewhere = ((new != old) & ~near_outline).astype(np.uint8)
            _, _, stats, _ = cv2.connectedComponentsWithStats(elsewhere, connectivity=8)
            assert (stats[1:, cv2.CC_STAT_AREA] <= 4).all()
            # and most of the outline stays put: fewer changes than half the outline band
            assert np.count_nonzero(new != old) <= np.count_nonzero(near_outline) // 2
        compared += 1
    assert compared >= 2


def test_mask_png_decodes_to_the_same_mask() -> None:
    """The mask PNG is 8-bit greyscale and decodes, with OpenCV and Pillow alike, to
    exactly the mask it was made from (odd widths, all-zero, all-255, noise)."""
    rng = np.random.default_rng(3)
    ellipse = np.zeros((301, 417), np.uint8)
    cv2.ellipse(ellipse, (200, 150), (150, 90), 0, 0, 360, 255, -1)
    masks = [
        ellipse,
        np.zeros((17, 1), np.uint8),
        np.full((33, 65), 255, np.uint8),
        (rng.random((97, 131)) > 0.5).astype(np.uint8) * 255,
        rng.integers(0, 256, (40, 23), dtype=np.uint8),
        ellipse[:, ::2],  # not C-contiguous
    ]
    for mask in masks:
        data = encode_mask_png(mask)
        decoded = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
        assert decoded.dtype == np.uint8 and np.array_equal(decoded, mask)
        with Image.open(io.BytesIO(data)) as image:
            image.load()
            assert image.mode == "L"
            assert np.array_equal(np.asarray(image), mask)


def test_mask_png_is_small_for_a_binary_mask() -> None:
    """A 12.8 MP 0/255 mask compresses to tens of kilobytes, as OpenCV's encoder did."""
    mask = np.zeros((3096, 4128), np.uint8)
    cv2.ellipse(mask, (2064, 1548), (1500, 1100), 0, 0, 360, 255, -1)
    data = encode_mask_png(mask)
    assert len(data) < 64 * 1024
    assert fast_png_available()  # isal is a dependency: the fast encoder is in use


def test_an_overlay_shrunk_by_a_few_percent_looks_like_the_linear_shrink() -> None:
    """A photo decoded at half size (2064 px) makes a 2048 px overlay by nearest-exact
    sampling (one column in 129 dropped): against the linear shrink it draws over, the
    photo part stays above 45 dB PSNR, and no pixel is off by more than the image's own
    neighbour-to-neighbour differences allow."""
    from cervixbatch.outputs.overlay import draw_overlay

    rng = np.random.default_rng(5)
    photo = cv2.GaussianBlur(rng.integers(0, 255, (1548, 2064, 3), dtype=np.uint8), (0, 0), 3)
    empty = np.zeros((1536, 2048), np.uint8)
    overlay = draw_overlay(photo, empty, empty, max_side=2048)
    linear = cv2.resize(photo, (2048, 1536), interpolation=cv2.INTER_LINEAR)
    assert overlay.shape == linear.shape
    error = (overlay.astype(np.float64) - linear) ** 2
    psnr = 10 * np.log10(255.0**2 / error.mean())
    assert psnr > 45.0
    neighbour = np.abs(np.diff(photo.astype(np.int16), axis=1)).max()
    assert np.abs(overlay.astype(np.int16) - linear).max() <= neighbour


def test_simplified_outlines_stay_within_a_pixel_of_the_traced_ones() -> None:
    """The overlay draws each outline simplified to within a pixel of the mask's edge: every
    pixel that differs from a drawing of the fully traced outline lies within two pixels
    of the line (its 6-pixel width plus the tolerance), and the overlay stays above 35 dB."""
    from cervixbatch.outputs.overlay import CERVIX_COLOUR, draw_overlay

    photo = np.full((768, 1024, 3), 120, np.uint8)
    cervix = np.zeros((768, 1024), np.uint8)
    cv2.ellipse(cervix, (512, 384), (300, 250), 15, 0, 360, 255, -1)
    empty = np.zeros_like(cervix)
    overlay = draw_overlay(photo, cervix, empty)
    traced, _ = cv2.findContours(cervix, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    reference = photo.copy()
    thickness = max(2, round(1024 / 350))
    cv2.drawContours(reference, traced, -1, (0, 0, 0), thickness + 2, cv2.LINE_AA)
    cv2.drawContours(reference, traced, -1, CERVIX_COLOUR, thickness, cv2.LINE_AA)
    differs = np.abs(overlay.astype(np.int16) - reference).max(axis=2) > 0
    line = np.zeros_like(cervix)
    cv2.drawContours(line, traced, -1, 255, thickness + 2 + 4)  # the line, 2 px wider each side
    assert differs.any()  # the outline is simplified, not traced pixel by pixel
    assert not (differs & (line == 0)).any()
    error = (overlay.astype(np.float64) - reference) ** 2
    assert 10 * np.log10(255.0**2 / error.mean()) > 35.0
