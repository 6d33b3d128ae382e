"""Overlap measures of binary masks, as ``evaluate`` and training report them."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

__all__ = ["KAGGLE_THRESHOLDS", "box_iou", "dice", "iou", "kaggle_score"]

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


def box_iou(truth: tuple[int, int, int, int], pred: tuple[int, int, int, int] | None) -> float:
    """IoU of two (x0, y0, x1, y1) boxes (x1, y1 exclusive); 0 when ``pred`` is None."""
    if pred is None:
        return 0.0
    ix = max(0, min(truth[2], pred[2]) - max(truth[0], pred[0]))
    iy = max(0, min(truth[3], pred[3]) - max(truth[1], pred[1]))
    inter = ix * iy
    area = (truth[2] - truth[0]) * (truth[3] - truth[1]) + (pred[2] - pred[0]) * (pred[3] - pred[1])
    union = area - inter
    return inter / union if union > 0 else 1.0
