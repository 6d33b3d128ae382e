"""From a stage-1 mask to the cervix region: largest component, its box, the margin."""

from __future__ import annotations

import dataclasses

import cv2
import numpy as np
import numpy.typing as npt

__all__ = ["Box", "clean_largest_component", "mask_box"]

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
