"""The segmentation outputs as computed before issue 17, frozen here as the reference that
the faster code must match: masks bit for bit, overlays visually.

A copy of the old ``Pipeline.run``/``_finish``/``_smooth_upsample`` (post-processing at
full size, in one thread) and of the old overlay path (the full-size masks shrunk to the
overlay's size). The pre-processing it calls is the package's own, which issue 17 did
not change.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import cv2
import numpy as np
import numpy.typing as npt

from cervixbatch.imaging.frames import Frame
from cervixbatch.segmentation.roi import Box, clean_largest_component, mask_box
from cervixbatch.segmentation.two_stage import PipelineSettings, cervix_input, lesion_input

Mask = npt.NDArray[np.uint8]


@dataclasses.dataclass
class ReferenceResult:
    """The fields of the old ``FrameResult`` that reach the outputs and the database."""

    cervix_found: bool
    cervix_mask: Mask
    lesion_mask: Mask
    box: Box | None
    crop: npt.NDArray[np.uint8] | None
    cervix_fraction: float
    lesion_fraction: float


def reference_run(
    cervix: Any, lesion: Any, settings: PipelineSettings, frames: Sequence[Frame]
) -> list[ReferenceResult]:
    """The old ``Pipeline.run``: both stages on the batch, masks at full size."""
    size1, channels1 = cervix.input_size, cervix.input_channels
    probs1 = cervix.predict_batch(np.stack([cervix_input(f.rgb, size1, channels1) for f in frames]))
    regions = [_cervix_region(settings, f, p) for f, p in zip(frames, probs1, strict=True)]
    crops = [
        f.rgb[box.y0 : box.y1, box.x0 : box.x1] if box else None
        for f, (_, box) in zip(frames, regions, strict=True)
    ]
    found = [i for i, crop in enumerate(crops) if crop is not None]
    size2, channels2 = lesion.input_size, lesion.input_channels
    probs2: Any = []
    if found:
        batch2 = np.stack([lesion_input(crops[i], size2, channels2) for i in found])  # type: ignore[arg-type]
        probs2 = lesion.predict_batch(batch2)
    lesion_probs = dict(zip(found, probs2, strict=True))
    return [
        _finish(settings, frame, mask, box, crops[i], lesion_probs.get(i))
        for i, (frame, (mask, box)) in enumerate(zip(frames, regions, strict=True))
    ]


def reference_overlay_masks(cervix: Mask, lesion: Mask, size: tuple[int, int]) -> list[Mask]:
    """The old overlay path: each full-size mask shrunk to (width, height), thresholded."""
    out = []
    for mask in (cervix, lesion):
        small = cv2.resize(mask, size, interpolation=cv2.INTER_LINEAR)
        _, small = cv2.threshold(small, 127, 255, cv2.THRESH_BINARY)
        out.append(small)
    return out


def _cervix_region(
    settings: PipelineSettings, frame: Frame, prob: npt.NDArray[np.float32]
) -> tuple[Mask, Box | None]:
    component = clean_largest_component((prob > settings.cervix_threshold).astype(np.uint8))
    area = np.count_nonzero(component) / component.size
    if area < settings.min_cervix_fraction:
        return np.zeros_like(component), None
    box = mask_box(component)
    assert box is not None
    height, width = frame.rgb.shape[:2]
    grid_h, grid_w = component.shape
    working = box.scaled(width / grid_w, height / grid_h, width, height)
    return component, working.grown(settings.margin, width, height)


def _finish(
    settings: PipelineSettings,
    frame: Frame,
    component: Mask,
    working_box: Box | None,
    crop: npt.NDArray[np.uint8] | None,
    lesion_prob: npt.NDArray[np.float32] | None,
) -> ReferenceResult:
    full_h, full_w = frame.full_size
    empty = np.zeros((full_h, full_w), dtype=np.uint8)
    if working_box is None or lesion_prob is None:
        return ReferenceResult(False, empty, empty.copy(), None, None, 0.0, 0.0)
    cervix = _smooth_upsample(component, (full_w, full_h))
    work_h, work_w = frame.rgb.shape[:2]
    box = working_box.scaled(full_w / work_w, full_h / work_h, full_w, full_h)
    scaled_prob = (lesion_prob * 255.0).astype(np.uint8)
    region = cv2.resize(scaled_prob, (box.width, box.height), interpolation=cv2.INTER_LINEAR)
    lesion = empty
    cut = round(settings.lesion_threshold * 255.0)
    cv2.threshold(region, cut, 255, cv2.THRESH_BINARY, dst=region)
    inside = lesion[box.y0 : box.y1, box.x0 : box.x1]
    cv2.bitwise_and(region, cervix[box.y0 : box.y1, box.x0 : box.x1], dst=inside)
    cervix_px = int(np.count_nonzero(cervix))
    lesion_px = int(np.count_nonzero(inside))
    return ReferenceResult(
        cervix_found=cervix_px > 0,
        cervix_mask=cervix,
        lesion_mask=lesion,
        box=box,
        crop=crop,
        cervix_fraction=cervix_px / (full_h * full_w),
        lesion_fraction=lesion_px / cervix_px if cervix_px else 0.0,
    )


def _smooth_upsample(mask: Mask, size: tuple[int, int]) -> Mask:
    grid_h, grid_w = mask.shape
    fine = cv2.resize(mask, (grid_w * 4, grid_h * 4), interpolation=cv2.INTER_LINEAR)
    fine = cv2.GaussianBlur(fine, (0, 0), sigmaX=2.0)
    full = cv2.resize(fine, size, interpolation=cv2.INTER_LINEAR)
    cv2.threshold(full, 127, 255, cv2.THRESH_BINARY, dst=full)
    return full
