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
from cervixbatch.segmentation.roi import (
    Box,
    binarise,
    clean_largest_component,
    drop_small_regions,
    mask_box,
    seed_box,
    seed_morphology,
)
from cervixbatch.segmentation.steps import Step

__all__ = [
    "FrameResult",
    "Located",
    "MaskSource",
    "Pipeline",
    "PipelineSettings",
    "Predictor",
    "cervix_component",
    "cervix_input",
    "crop_region",
    "downscale",
    "lesion_cut",
    "lesion_input",
    "min_lesion_cells",
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


_MODELS = ModelsConfig()


@dataclasses.dataclass(frozen=True, slots=True)
class PipelineSettings:
    """Thresholds and geometry of the two stages; the defaults are ``[models]``'s."""

    cervix_threshold: float | str = _MODELS.cervix_threshold  # or "otsu" (seed 001's)
    lesion_threshold: float = _MODELS.lesion_threshold
    margin: float = _MODELS.margin
    min_cervix_fraction: float = _MODELS.min_cervix_fraction
    min_lesion_fraction: float = _MODELS.min_lesion_fraction
    cervix_resize: Resize = _MODELS.cervix_resize
    lesion_resize: Resize = _MODELS.lesion_resize
    cervix_channel_order: ChannelOrder = _MODELS.cervix_channel_order
    cervix_region: CervixRegion = _MODELS.cervix_region

    @classmethod
    def from_config(cls, models: ModelsConfig) -> PipelineSettings:
        """The settings ``[models]`` gives: the one place they are read for a pipeline."""
        return cls(
            cervix_threshold=models.cervix_threshold,
            lesion_threshold=models.lesion_threshold,
            margin=models.margin,
            min_cervix_fraction=models.min_cervix_fraction,
            min_lesion_fraction=models.min_lesion_fraction,
            cervix_resize=models.cervix_resize,
            lesion_resize=models.lesion_resize,
            cervix_channel_order=models.cervix_channel_order,
            cervix_region=models.cervix_region,
        )


@dataclasses.dataclass(frozen=True, slots=True)
class MaskSource:
    """The small arrays a frame's masks are drawn from, so that they can be drawn at
    another size too: an overlay's outlines drawn at its own size cost a fraction of
    shrinking the two full-resolution masks (12.8 MP each for a 4128x3096 photo)."""

    component: Mask  # the cleaned cervix component on the stage-1 grid, 0/255
    lesion: Mask  # stage-2 probabilities x 255 on the stage-2 grid (crop coordinates)
    box: Box  # the grown cervix box (where stage 2 looked) in full-resolution pixels
    full_size: tuple[int, int]  # (height, width)
    cut: int  # the lesion threshold on the 0..255 scale

    def draw(self, size: tuple[int, int]) -> tuple[Mask, Mask]:
        """The (cervix, lesion) 0/255 masks at (width, height); at the full size these are
        the frame's result masks, bit for bit."""
        width, height = size
        full_h, full_w = self.full_size
        cervix = _smooth_upsample(self.component, (width, height))
        box = self.box
        if (height, width) != (full_h, full_w):
            box = box.scaled(width / full_w, height / full_h, width, height)
        lesion = np.zeros((height, width), dtype=np.uint8)
        region = cv2.resize(self.lesion, (box.width, box.height), interpolation=cv2.INTER_LINEAR)
        # cv2.threshold (255 where > cut) writes uint8 in place; np.where would build an
        # int64 array of the box first, 8x the memory and ~30x the time at 12 MP. Only the
        # box is touched: outside it the lesion mask stays 0.
        cv2.threshold(region, self.cut, 255, cv2.THRESH_BINARY, dst=region)
        inside = lesion[box.y0 : box.y1, box.x0 : box.x1]
        cv2.bitwise_and(region, cervix[box.y0 : box.y1, box.x0 : box.x1], dst=inside)
        return cervix, lesion


@dataclasses.dataclass(frozen=True, slots=True)
class Located:
    """What stage 1 found in one frame, and stage 2's input when there is a cervix."""

    component: Mask  # the cleaned cervix component on the stage-1 grid, 0/255
    box: Box | None  # the grown cervix box in working pixels; None: no cervix
    crop: Image | None  # the working image inside the box
    stage2_input: Floats | None


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
    source: MaskSource | None = None  # draws the masks at other sizes; None: no cervix


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
    """The two-stage segmentation of a batch of frames.

    ``run`` is the whole of it for one batch. Its steps are public so that the pipelined
    runner can keep only the two model calls on the thread that owns the device and run
    the CPU steps in its pools: :meth:`stage1_input` (per frame) → ``cervix.predict_batch``
    → :meth:`locate` (per frame) → ``lesion.predict_batch`` → :meth:`finish` (per frame).
    """

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
        batch1 = np.stack([self.stage1_input(frame) for frame in frames])
        t_pre1 = time.perf_counter()
        probs1 = self.cervix.predict_batch(batch1)
        t_stage1 = time.perf_counter()
        regions = [self._cervix_region(f, p) for f, p in zip(frames, probs1, strict=True)]
        t_roi = time.perf_counter()
        located = [
            self._with_crop(frame, *region) for frame, region in zip(frames, regions, strict=True)
        ]
        t_pre2 = time.perf_counter()
        probs2 = self.stage2(located)
        t_stage2 = time.perf_counter()
        results = [
            self.finish(frame, where, prob)
            for frame, where, prob in zip(frames, located, probs2, strict=True)
        ]
        t_post = time.perf_counter()
        per_frame: dict[str, float] = {
            Step.PREPROCESS: (t_pre1 - clock) * 1000 / count,
            Step.STAGE1: (t_stage1 - t_pre1) * 1000 / count,
            Step.ROI: (t_roi - t_stage1) * 1000 / count,
            Step.PREPROCESS2: (t_pre2 - t_roi) * 1000 / count,
            Step.STAGE2: (t_stage2 - t_pre2) * 1000 / count,
            Step.POSTPROCESS: (t_post - t_stage2) * 1000 / count,
        }
        for result in results:
            result.timings_ms = dict(per_frame)
        return results

    def stage1_input(self, frame: Frame) -> Floats:
        """The stage-1 input of one frame (CPU, any thread)."""
        return cervix_input(
            frame.rgb,
            self.cervix.input_size,
            self.cervix.input_channels,
            resize=self.settings.cervix_resize,
            order=self.settings.cervix_channel_order,
        )

    def locate(self, frame: Frame, prob: Floats) -> Located:
        """The cervix region from stage 1's probabilities, its crop and the stage-2 input
        (CPU, any thread)."""
        return self._with_crop(frame, *self._cervix_region(frame, prob))

    def stage2(self, located: Sequence[Located]) -> list[Floats | None]:
        """Stage 2 in one call on every frame where a cervix was found; None elsewhere."""
        found = [i for i, where in enumerate(located) if where.stage2_input is not None]
        probs: list[Floats | None] = [None] * len(located)
        if found:
            batch = np.stack([located[i].stage2_input for i in found])  # type: ignore[misc]
            for i, prob in zip(found, self.lesion.predict_batch(batch), strict=True):
                probs[i] = prob
        return probs

    def _cervix_region(self, frame: Frame, prob: Floats) -> tuple[Mask, Box | None]:
        """The cleaned stage-1 component (model grid) and the grown box in working pixels."""
        component = cervix_component(prob, self.settings)
        seed = self.settings.cervix_region is CervixRegion.SEED
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

    def _with_crop(self, frame: Frame, component: Mask, box: Box | None) -> Located:
        if box is None:
            return Located(component=component, box=None, crop=None, stage2_input=None)
        crop = frame.rgb[box.y0 : box.y1, box.x0 : box.x1]
        size, channels = self.lesion.input_size, self.lesion.input_channels
        stage2_input = lesion_input(crop, size, channels, resize=self.settings.lesion_resize)
        return Located(component, box, crop, stage2_input)

    def finish(self, frame: Frame, located: Located, lesion_prob: Floats | None) -> FrameResult:
        """Masks at the frame's full resolution and the measures (CPU, any thread)."""
        full_h, full_w = frame.full_size
        if located.box is None or lesion_prob is None:
            empty = np.zeros((full_h, full_w), dtype=np.uint8)
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
        work_h, work_w = frame.rgb.shape[:2]
        source = MaskSource(
            component=located.component,
            lesion=(lesion_prob * 255.0).astype(np.uint8),
            box=located.box.scaled(full_w / work_w, full_h / work_h, full_w, full_h),
            full_size=(full_h, full_w),
            cut=lesion_cut(self.settings),
        )
        self._drop_small_lesions(source)
        cervix, lesion = source.draw((full_w, full_h))
        box = source.box
        # cv2.countNonZero: a third of np.count_nonzero's time on a 12.8 MP mask; the
        # lesion mask is zero outside the box.
        cervix_px = cv2.countNonZero(cervix)
        lesion_px = cv2.countNonZero(lesion[box.y0 : box.y1, box.x0 : box.x1])
        return FrameResult(
            cervix_found=cervix_px > 0,
            cervix_mask=cervix,
            lesion_mask=lesion,
            box=box,
            crop=located.crop,
            cervix_fraction=cervix_px / (full_h * full_w),
            lesion_fraction=lesion_px / cervix_px if cervix_px else 0.0,
            timings_ms={},
            source=source,
        )

    def _drop_small_lesions(self, source: MaskSource) -> None:
        """Lesion regions under ``min_lesion_fraction`` of the cervix area are dropped on
        stage 2's grid (specks on glare and mucus, not acetowhite epithelium)."""
        min_cells = min_lesion_cells(source, self.settings.min_lesion_fraction)
        drop_small_regions(source.lesion, source.cut, min_cells)


def cervix_component(prob: Floats, settings: PipelineSettings) -> Mask:
    """Stage 1's probabilities as the cleaned cervix component on the model grid, 0/255."""
    binary = binarise(prob, settings.cervix_threshold)
    if settings.cervix_region is CervixRegion.SEED:
        return seed_morphology(binary)
    return clean_largest_component(binary)


def lesion_cut(settings: PipelineSettings) -> int:
    """The lesion threshold on the 0..255 scale stage 2's probabilities are kept at."""
    return round(settings.lesion_threshold * 255.0)


def min_lesion_cells(source: MaskSource, min_lesion_fraction: float) -> float:
    """``min_lesion_fraction`` of the frame's cervix area, in cells of stage 2's grid."""
    if min_lesion_fraction <= 0:
        return 0.0
    full_h, full_w = source.full_size
    component = source.component
    cervix_px = cv2.countNonZero(component) * (full_h * full_w) / component.size
    grid_h, grid_w = source.lesion.shape
    px_per_cell = source.box.width * source.box.height / (grid_h * grid_w)
    return min_lesion_fraction * cervix_px / px_per_cell


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
