"""Colour and glare statistics of photos, to compare synthetic close-ups with real ones.

Per photo, shrunk to about 130 px on its long side (as the real close-ups were measured):
the mean CIELAB L*, a*, b* and the share of glare pixels (HSV V > 235 and S < 40, on
0-255 scales). Across photos: the 10th, 50th and 90th percentiles of each.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable

import cv2
import numpy as np
import numpy.typing as npt

__all__ = ["REAL_CLOSE_UPS", "PhotoStats", "percentiles", "photo_stats"]

SHRUNK_SIDE = 130
GLARE_MIN_VALUE = 235
GLARE_MAX_SATURATION = 40

# 91 real cervix close-ups, about 130 px each (issue 16): 10th / 50th / 90th percentile
REAL_CLOSE_UPS: dict[str, tuple[float, float, float]] = {
    "L": (46.0, 60.0, 69.0),
    "a": (13.0, 28.0, 37.0),
    "b": (-14.0, -6.0, 9.0),
    "glare": (0.0, 0.006, 0.076),
}


@dataclasses.dataclass(frozen=True, slots=True)
class PhotoStats:
    """One photo's mean CIELAB (L* 0..100, a* and b* signed) and glare share (0..1)."""

    L: float
    a: float
    b: float
    glare: float


def photo_stats(rgb: npt.NDArray[np.uint8]) -> PhotoStats:
    """Statistics of one RGB photo after shrinking it to about 130 px on its long side."""
    height, width = rgb.shape[:2]
    scale = SHRUNK_SIDE / max(height, width)
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    small = cv2.resize(rgb, size, interpolation=cv2.INTER_AREA)
    # float input: OpenCV returns L* in 0..100 and a*, b* signed, no 8-bit offsets
    lab = cv2.cvtColor(small.astype(np.float32) / 255.0, cv2.COLOR_RGB2LAB)
    hsv = cv2.cvtColor(small, cv2.COLOR_RGB2HSV)
    glare = (hsv[..., 2] > GLARE_MIN_VALUE) & (hsv[..., 1] < GLARE_MAX_SATURATION)
    mean = lab.reshape(-1, 3).mean(axis=0)
    return PhotoStats(float(mean[0]), float(mean[1]), float(mean[2]), float(glare.mean()))


def percentiles(stats: Iterable[PhotoStats]) -> dict[str, tuple[float, float, float]]:
    """The 10th, 50th and 90th percentile of each statistic across photos."""
    rows = [dataclasses.astuple(s) for s in stats]
    if not rows:
        raise ValueError("no photos to summarise")
    table = np.asarray(rows, dtype=np.float64)
    names = [field.name for field in dataclasses.fields(PhotoStats)]
    return {
        name: tuple(float(v) for v in np.percentile(table[:, i], [10, 50, 90]))  # type: ignore[misc]
        for i, name in enumerate(names)
    }
