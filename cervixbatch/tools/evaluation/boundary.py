"""Boundary F-score: how well a predicted region's edge follows a drawn outline.

It needs no fill: the truth is the stroke itself (an expert's outline), the prediction
is a region whose edge is taken. Precision is the share of the predicted edge within
``tolerance`` pixels of the stroke; recall the share of the stroke within ``tolerance``
of the predicted edge; F their harmonic mean (Csurka et al., BMVC 2013). The photo's own
frame is not an edge: a region that runs out of the photo ends there without a stroke.
"""

from __future__ import annotations

from typing import Any

import cv2
import numpy as np
import numpy.typing as npt

__all__ = ["BOUNDARY_TOLERANCE", "boundary_f", "region_edge"]

Mask = npt.NDArray[Any]
BOUNDARY_TOLERANCE = 4  # pixels at 384 x 384 (about 0.75 % of the diagonal)


def region_edge(region: Mask) -> npt.NDArray[np.bool_]:
    """The region's one-pixel inner edge, without the photo's frame."""
    binary = (np.asarray(region) > 0).astype(np.uint8)
    eroded = cv2.erode(binary, np.ones((3, 3), np.uint8), borderType=cv2.BORDER_REPLICATE)
    edge = (binary > 0) & (eroded == 0)
    edge[0, :], edge[-1, :], edge[:, 0], edge[:, -1] = False, False, False, False
    return edge


def _near(points: npt.NDArray[np.bool_], tolerance: int) -> npt.NDArray[np.bool_]:
    """Pixels within ``tolerance`` (Euclidean) of any of ``points``."""
    distance = cv2.distanceTransform((~points).astype(np.uint8), cv2.DIST_L2, 5)
    return np.asarray(distance <= tolerance)


def boundary_f(
    predicted: Mask, stroke: Mask, *, tolerance: int = BOUNDARY_TOLERANCE
) -> float | None:
    """The boundary F-score of a predicted region against a stroke mask (same size).

    1.0 when neither has an edge (a negative photo left empty), 0.0 when only one has;
    None when the sizes differ.
    """
    pred = np.asarray(predicted)
    truth = np.asarray(stroke) > 0
    if pred.shape != truth.shape:
        return None
    edge = region_edge(pred)
    if not edge.any() and not truth.any():
        return 1.0
    if not edge.any() or not truth.any():
        return 0.0
    precision = float((edge & _near(truth, tolerance)).sum() / edge.sum())
    recall = float((truth & _near(edge, tolerance)).sum() / truth.sum())
    if precision + recall == 0:
        return 0.0
    return 2 * precision * recall / (precision + recall)
