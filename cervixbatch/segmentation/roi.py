"""From a stage-1 mask to the cervix region: largest component, its box, the margin."""

from __future__ import annotations

import dataclasses
import math

import cv2
import numpy as np
import numpy.typing as npt

from cervixbatch.config import OTSU

__all__ = [
    "Box",
    "binarise",
    "clean_largest_component",
    "drop_small_regions",
    "mask_box",
    "otsu_binary",
    "seed_box",
    "seed_morphology",
]

Mask = npt.NDArray[np.uint8]


@dataclasses.dataclass(frozen=True, slots=True)
class Box:
    """A pixel rectangle; ``x1`` and ``y1`` are exclusive."""

    x0: int
    y0: int
    x1: int
    y1: int

    @property
    def width(self) -> int:
        """Columns in the box."""
        return self.x1 - self.x0

    @property
    def height(self) -> int:
        """Rows in the box."""
        return self.y1 - self.y0

    def grown(self, margin: float, width: int, height: int) -> Box:
        """The box with ``margin`` × its size added on every side, clipped to the image."""
        dx = round(self.width * margin)
        dy = round(self.height * margin)
        return Box(
            max(0, self.x0 - dx),
            max(0, self.y0 - dy),
            min(width, self.x1 + dx),
            min(height, self.y1 + dy),
        )

    def scaled(self, sx: float, sy: float, width: int, height: int) -> Box:
        """The same region on a grid ``sx`` × wider and ``sy`` × taller, never empty."""
        x0 = min(width - 1, max(0, int(np.floor(self.x0 * sx))))
        y0 = min(height - 1, max(0, int(np.floor(self.y0 * sy))))
        x1 = max(x0 + 1, min(width, int(np.ceil(self.x1 * sx))))
        y1 = max(y0 + 1, min(height, int(np.ceil(self.y1 * sy))))
        return Box(x0, y0, x1, y1)

    def as_tuple(self) -> tuple[int, int, int, int]:
        """(x0, y0, x1, y1)."""
        return (self.x0, self.y0, self.x1, self.y1)


_OPEN_KERNEL = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (3, 3))


def clean_largest_component(binary: Mask) -> Mask:
    """The largest 8-connected component of a 0/1 or 0/255 mask, specks removed, holes filled.

    Returns a 0/255 mask; all zero when there is no foreground.
    """
    mask = (binary > 0).astype(np.uint8)
    opened = cv2.morphologyEx(mask, cv2.MORPH_OPEN, _OPEN_KERNEL)
    if opened.any():  # opening can erase a thin but real region: keep the original then
        mask = opened
    count, labels, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=8)
    if count <= 1:
        return np.zeros_like(mask)
    largest = 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))
    component = np.where(labels == largest, 255, 0).astype(np.uint8)
    return _fill_holes(component)


def drop_small_regions(scores: Mask, cut: int, min_area: float) -> int:
    """Sets to 0, in place, every 8-connected region of ``scores > cut`` (0..255 scores)
    smaller than ``min_area`` pixels; returns how many regions were dropped.

    A dropped region's neighbours are all at or below ``cut``, so a mask drawn from the
    scores by linear upsampling and the same cut simply loses that region.
    """
    if min_area <= 0:
        return 0
    above = np.empty(scores.shape, dtype=np.uint8)
    cv2.threshold(scores, cut, 1, cv2.THRESH_BINARY, dst=above)
    _, labels, stats, _ = cv2.connectedComponentsWithStats(above, connectivity=8)
    small = np.flatnonzero(stats[1:, cv2.CC_STAT_AREA] < min_area) + 1
    if small.size:
        scores[np.isin(labels, small)] = 0
    return int(small.size)


def binarise(scores: npt.NDArray[np.float32], threshold: float | str) -> Mask:
    """0/1 mask of one score map: above a probability, or ``"otsu"`` (seed 001's way)."""
    if threshold == OTSU:
        return (otsu_binary(scores) > 0).astype(np.uint8)
    return (scores > float(threshold)).astype(np.uint8)


def otsu_binary(scores: npt.NDArray[np.float32]) -> Mask:
    """Seed 001's ``to_binary_mask`` after its channel step: min–max normalise the score map
    to 0..255 (8-bit), then Otsu's threshold. Returns 0/255; all zero for a flat map."""
    if float(scores.max()) <= float(scores.min()):
        return np.zeros(scores.shape, dtype=np.uint8)
    gray = cv2.normalize(
        np.ascontiguousarray(scores, dtype=np.float32),
        None,
        alpha=0,
        beta=255,
        norm_type=cv2.NORM_MINMAX,
        dtype=cv2.CV_8UC1,
    )
    _, binary = cv2.threshold(gray, 128, 255, cv2.THRESH_BINARY | cv2.THRESH_OTSU)
    return binary


def _disk(radius: int) -> Mask:
    """skimage.morphology.disk(radius), which seed 001 used, without scikit-image."""
    grid = np.arange(-radius, radius + 1)
    return (grid[:, None] ** 2 + grid[None, :] ** 2 <= radius**2).astype(np.uint8)


_SEED_DISK = _disk(5)


def seed_morphology(binary: Mask) -> Mask:
    """Seed 001's ``morphology_clean`` (opening, then closing, with disk(5)), keeping the
    largest 8-connected component, whose box the seed crops; holes stay. Returns 0/255."""
    mask = np.where(binary > 0, 255, 0).astype(np.uint8)
    mask = cv2.morphologyEx(mask, cv2.MORPH_OPEN, _SEED_DISK)
    mask = cv2.morphologyEx(mask, cv2.MORPH_CLOSE, _SEED_DISK)
    count, labels, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=8)
    if count <= 1:
        return np.zeros_like(mask)
    largest = 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))
    return np.where(labels == largest, 255, 0).astype(np.uint8)


def seed_box(component: Mask, margin: float, width: int, height: int) -> Box | None:
    """Seed 001's ``find_bbox`` and ``transform_bbox``: the margin is added on the model's
    grid (truncated to whole cells), then the box is scaled to ``width`` × ``height`` with
    floors. Ours (``Box.scaled`` then ``Box.grown``) rounds differently by a few pixels."""
    box = mask_box(component)
    if box is None:
        return None
    grid_h, grid_w = component.shape
    x, y, w, h = float(box.x0), float(box.y0), float(box.width), float(box.height)
    wm, hm = w * margin, h * margin
    x, y = max(0.0, x - wm), max(0.0, y - hm)
    right, bottom = min(x + w + 2 * wm, float(grid_w)), min(y + h + 2 * hm, float(grid_h))
    xi, yi, wi, hi = int(x), int(y), int(right - x), int(bottom - y)
    sx, sy = width / grid_w, height / grid_h
    x0, y0 = max(0, math.floor(xi * sx)), max(0, math.floor(yi * sy))
    x1 = min(width, x0 + max(1, math.floor(wi * sx)))
    y1 = min(height, y0 + max(1, math.floor(hi * sy)))
    return Box(x0, y0, x1, y1)


def mask_box(mask: Mask) -> Box | None:
    """The bounding box of the non-zero pixels, or None for an empty mask."""
    points = cv2.findNonZero(mask)
    if points is None:
        return None
    x, y, w, h = cv2.boundingRect(points)
    return Box(x, y, x + w, y + h)


def _fill_holes(component: Mask) -> Mask:
    """Fills background regions that do not touch the border (the os inside the cervix)."""
    height, width = component.shape
    padded = np.zeros((height + 2, width + 2), dtype=np.uint8)
    padded[1:-1, 1:-1] = component
    flood_mask = np.zeros((height + 4, width + 4), dtype=np.uint8)
    cv2.floodFill(padded, flood_mask, (0, 0), 255)
    holes = cv2.bitwise_not(padded)[1:-1, 1:-1]
    return cv2.bitwise_or(component, holes)
