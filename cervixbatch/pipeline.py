"""Frames in, masks and measures out: the two stages, batched. No files, no database.

Each stage is pure around its model: preprocess (numpy/OpenCV) → predict (one batched,
compiled call) → postprocess (numpy/OpenCV). The preprocessing functions here are also
what training uses, so a model sees the same kind of input in both.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Sequence
from typing import Protocol

import cv2
import numpy as np
import numpy.typing as npt

from cervixbatch.config import CervixRegion, ChannelOrder, ModelsConfig, Resize
from cervixbatch.imaging.frames import Frame
from cervixbatch.roi import (
    Box,
    binarise,
    clean_largest_component,
    mask_box,
    seed_box,
    seed_morphology,
)

__all__ = [
    "FrameResult",
    "Pipeline",
    "PipelineSettings",
    "Predictor",
    "cervix_input",
    "crop_region",
    "downscale",
    "lesion_input",
]

Mask = npt.NDArray[np.uint8]
Image = npt.NDArray[np.uint8]
Floats = npt.NDArray[np.float32]


class Predictor(Protocol):
    """What the pipeline needs of a stage model (``model.stage.StageModel`` is one)."""

    @property
    def input_size(self) -> tuple[int, int]: ...  # noqa: D102

    @property
    def input_channels(self) -> int: ...  # noqa: D102

    def predict_batch(self, images: Floats) -> Floats: ...  # noqa: D102


@dataclasses.dataclass(frozen=True, slots=True)
class PipelineSettings:
    """Thresholds and geometry of the two stages."""

    cervix_threshold: float | str = 0.5  # or "otsu" (seed 001's to_binary_mask)
    lesion_threshold: float = 0.5
    margin: float = 0.15
    min_cervix_fraction: float = 0.002
    cervix_resize: Resize = Resize.AREA
    lesion_resize: Resize = Resize.AREA
    cervix_channel_order: ChannelOrder = ChannelOrder.RGB
    cervix_region: CervixRegion = CervixRegion.LARGEST

    @classmethod
    def from_config(cls, models: ModelsConfig) -> PipelineSettings:
        """The settings ``[models]`` gives: the one place they are read for a pipeline."""
        return cls(
            cervix_threshold=models.cervix_threshold,
            lesion_threshold=models.lesion_threshold,
            margin=models.margin,
            min_cervix_fraction=models.min_cervix_fraction,
            cervix_resize=models.cervix_resize,
            lesion_resize=models.lesion_resize,
            cervix_channel_order=models.cervix_channel_order,
            cervix_region=models.cervix_region,
        )


@dataclasses.dataclass(slots=True)
class FrameResult:
    """What the two stages found in one frame; masks are at the frame's full resolution."""

    cervix_found: bool
    cervix_mask: Mask
    lesion_mask: Mask
    box: Box | None  # the grown cervix box in full-resolution pixels
    crop: Image | None  # the region stage 2 saw, RGB, at working resolution
    cervix_fraction: float
    lesion_fraction: float
    timings_ms: dict[str, float]


_INTERPOLATION = {Resize.LINEAR: cv2.INTER_LINEAR, Resize.CUBIC: cv2.INTER_CUBIC}


def downscale(image: Image, size: tuple[int, int], method: Resize = Resize.AREA) -> Image:
    """Resizes to (width, height) with area averaging, in two steps when shrinking a lot.

    A single INTER_AREA pass from 4128×3096 to 128×128 takes ~10× longer than a cheap
    linear pass to 4× the target followed by INTER_AREA, for the same result at the
    target size. ``method`` linear or cubic is one plain ``cv2.resize``, as the seeds did.
    """
    width, height = size
    if method is not Resize.AREA:
        return cv2.resize(image, (width, height), interpolation=_INTERPOLATION[method])
    src_h, src_w = image.shape[:2]
    if src_w <= width or src_h <= height:
        return cv2.resize(image, (width, height), interpolation=cv2.INTER_LINEAR)
    if src_w > 4 * width and src_h > 4 * height:
        image = cv2.resize(image, (4 * width, 4 * height), interpolation=cv2.INTER_LINEAR)
    return cv2.resize(image, (width, height), interpolation=cv2.INTER_AREA)


def _to_channels(image: Image, channels: int) -> Image:
    if channels == 1:
        return cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)[..., None]
    return image


def cervix_input(
    rgb: Image,
    size: tuple[int, int],
    channels: int,
    *,
    resize: Resize = Resize.AREA,
    order: ChannelOrder = ChannelOrder.RGB,
) -> Floats:
    """Stage-1 input: the whole photo at the model's size, scaled to 0..1."""
    small = _to_channels(downscale(rgb, (size[1], size[0]), resize), channels)
    if order is ChannelOrder.BGR and channels == 3:
        small = small[..., ::-1]
    return small.astype(np.float32) * (1.0 / 255.0)


def crop_region(cervix_mask: Mask, margin: float) -> Box | None:
    """The grown box around a cervix mask, in the mask's own pixels; None when empty."""
    box = mask_box(cervix_mask)
    if box is None:
        return None
    height, width = cervix_mask.shape
    return box.grown(margin, width, height)


def lesion_input(
    crop: Image, size: tuple[int, int], channels: int, *, resize: Resize = Resize.AREA
) -> Floats:
    """Stage-2 input: the cervix crop, grayscale for the seed's model, at the model's size."""
    resized = downscale(_to_channels(crop, 3), (size[1], size[0]), resize)
    return _to_channels(resized, channels).astype(np.float32) * (1.0 / 255.0)


class Pipeline:
    """The two-stage segmentation of a batch of frames."""

    def __init__(self, cervix: Predictor, lesion: Predictor, settings: PipelineSettings) -> None:
        self.cervix = cervix
        self.lesion = lesion
        self.settings = settings

    def run(self, frames: Sequence[Frame]) -> list[FrameResult]:
        """Segments every frame; stage 1 and stage 2 each run once for the whole batch."""
        if not frames:
            return []
        count = len(frames)
        clock = time.perf_counter()
        size1, channels1 = self.cervix.input_size, self.cervix.input_channels
        settings = self.settings
        batch1 = np.stack(
            [
                cervix_input(
                    f.rgb,
                    size1,
                    channels1,
                    resize=settings.cervix_resize,
                    order=settings.cervix_channel_order,
                )
                for f in frames
            ]
        )
        t_pre1 = time.perf_counter()
        probs1 = self.cervix.predict_batch(batch1)
        t_stage1 = time.perf_counter()

        regions = [
            self._cervix_region(frame, prob) for frame, prob in zip(frames, probs1, strict=True)
        ]
        t_roi = time.perf_counter()

        crops = [
            frame.rgb[box.y0 : box.y1, box.x0 : box.x1] if box else None
            for frame, (_, box) in zip(frames, regions, strict=True)
        ]
        found = [i for i, crop in enumerate(crops) if crop is not None]
        size2, channels2 = self.lesion.input_size, self.lesion.input_channels
        probs2: Floats = np.empty((0, *size2), dtype=np.float32)
        batch2: Floats | None = None
        if found:
            batch2 = np.stack(
                [
                    lesion_input(crops[i], size2, channels2, resize=settings.lesion_resize)  # type: ignore[arg-type]
                    for i in found
                ]
            )
        t_pre2 = time.perf_counter()
        if batch2 is not None:
            probs2 = self.lesion.predict_batch(batch2)
        t_stage2 = time.perf_counter()

        lesion_probs = dict(zip(found, probs2, strict=True))
        results = [
            self._finish(frame, mask, box, crops[i], lesion_probs.get(i))
            for i, (frame, (mask, box)) in enumerate(zip(frames, regions, strict=True))
        ]
        t_post = time.perf_counter()
        per_frame = {
            "preprocess": (t_pre1 - clock) * 1000 / count,
            "stage1": (t_stage1 - t_pre1) * 1000 / count,
            "roi": (t_roi - t_stage1) * 1000 / count,
            "preprocess2": (t_pre2 - t_roi) * 1000 / count,
            "stage2": (t_stage2 - t_pre2) * 1000 / count,
            "postprocess": (t_post - t_stage2) * 1000 / count,
        }
        for result in results:
            result.timings_ms = dict(per_frame)
        return results

    def _cervix_region(self, frame: Frame, prob: Floats) -> tuple[Mask, Box | None]:
        """The cleaned stage-1 component (model grid) and the grown box in working pixels."""
        binary = binarise(prob, self.settings.cervix_threshold)
        seed = self.settings.cervix_region is CervixRegion.SEED
        component = seed_morphology(binary) if seed else clean_largest_component(binary)
        area = np.count_nonzero(component) / component.size
        if area < self.settings.min_cervix_fraction:
            return np.zeros_like(component), None
        height, width = frame.rgb.shape[:2]
        if seed:
            return component, seed_box(component, self.settings.margin, width, height)
        box = mask_box(component)
        assert box is not None
        grid_h, grid_w = component.shape
        working = box.scaled(width / grid_w, height / grid_h, width, height)
        return component, working.grown(self.settings.margin, width, height)

    def _finish(
        self,
        frame: Frame,
        component: Mask,
        working_box: Box | None,
        crop: Image | None,
        lesion_prob: Floats | None,
    ) -> FrameResult:
        full_h, full_w = frame.full_size
        empty = np.zeros((full_h, full_w), dtype=np.uint8)
        if working_box is None or lesion_prob is None:
            return FrameResult(
                cervix_found=False,
                cervix_mask=empty,
                lesion_mask=empty.copy(),
                box=None,
                crop=None,
                cervix_fraction=0.0,
                lesion_fraction=0.0,
                timings_ms={},
            )
        cervix = _smooth_upsample(component, (full_w, full_h))
        work_h, work_w = frame.rgb.shape[:2]
        box = working_box.scaled(full_w / work_w, full_h / work_h, full_w, full_h)
        scaled_prob = (lesion_prob * 255.0).astype(np.uint8)
        region = cv2.resize(scaled_prob, (box.width, box.height), interpolation=cv2.INTER_LINEAR)
        lesion = empty
        cut = round(self.settings.lesion_threshold * 255.0)
        # cv2.threshold (255 where > cut) writes uint8 in place; np.where would build an
        # int64 array of the box first, 8x the memory and ~30x the time at 12 MP. Only the
        # box is touched: outside it the lesion mask stays 0.
        cv2.threshold(region, cut, 255, cv2.THRESH_BINARY, dst=region)
        inside = lesion[box.y0 : box.y1, box.x0 : box.x1]
        cv2.bitwise_and(region, cervix[box.y0 : box.y1, box.x0 : box.x1], dst=inside)
        cervix_px = int(np.count_nonzero(cervix))
        lesion_px = int(np.count_nonzero(inside))
        return FrameResult(
            cervix_found=cervix_px > 0,
            cervix_mask=cervix,
            lesion_mask=lesion,
            box=box,
            crop=crop,
            cervix_fraction=cervix_px / (full_h * full_w),
            lesion_fraction=lesion_px / cervix_px if cervix_px else 0.0,
            timings_ms={},
        )


def _smooth_upsample(mask: Mask, size: tuple[int, int]) -> Mask:
    """A 0/255 model-grid mask at (width, height), with smooth outlines.

    Blurring at 4× the grid (cheap) before the linear upsampling and threshold turns the
    grid's staircase into a curve; blurring at full size would cost 10× more.
    """
    grid_h, grid_w = mask.shape
    fine = cv2.resize(mask, (grid_w * 4, grid_h * 4), interpolation=cv2.INTER_LINEAR)
    fine = cv2.GaussianBlur(fine, (0, 0), sigmaX=2.0)
    full = cv2.resize(fine, size, interpolation=cv2.INTER_LINEAR)
    # 255 where > 127, i.e. >= 128, in place: np.where costs ~60 ms at 12 MP, this ~2 ms.
    cv2.threshold(full, 127, 255, cv2.THRESH_BINARY, dst=full)
    return full
