"""Overlap measures of binary masks, as ``evaluate`` and training report them."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

__all__ = ["KAGGLE_THRESHOLDS", "dice", "iou", "kaggle_score"]

Bool = npt.NDArray[np.bool_]

# The Kaggle segmentation challenges' thresholds: 0.5, 0.55, …, 0.95.
KAGGLE_THRESHOLDS = np.round(np.arange(0.5, 1.0, 0.05), 2)


def dice(truth: npt.NDArray[np.generic], pred: npt.NDArray[np.generic]) -> float:
    """2|A∩B| / (|A|+|B|); two empty masks agree perfectly (1.0)."""
    t, p = np.asarray(truth).astype(bool), np.asarray(pred).astype(bool)
    total = int(t.sum()) + int(p.sum())
    if total == 0:
        return 1.0
    return 2.0 * int(np.logical_and(t, p).sum()) / total


def iou(truth: npt.NDArray[np.generic], pred: npt.NDArray[np.generic]) -> float:
    """|A∩B| / |A∪B|; two empty masks agree perfectly (1.0)."""
    t, p = np.asarray(truth).astype(bool), np.asarray(pred).astype(bool)
    union = int(np.logical_or(t, p).sum())
    if union == 0:
        return 1.0
    return int(np.logical_and(t, p).sum()) / union


def kaggle_score(iou_value: float) -> float:
    """The share of thresholds 0.5…0.95 that an image's IoU exceeds (one object per image)."""
    return float(np.mean(iou_value > KAGGLE_THRESHOLDS))
