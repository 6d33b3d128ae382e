"""Outline strokes (hand-drawn boundaries) turned into regions, by one documented rule.

Some data sets mark a lesion by drawing its boundary, not by painting it: AnnoCerv's
acetowhite masks are strokes one to three pixels wide, most running from one edge of the
photo to another. The rule (docs/annotations.md says it with pictures in words):

1. Gaps up to ``close_px`` pixels in a stroke are closed (hand-drawn strokes break).
2. The stroke cuts the photo into pieces (4-connected components of the pixels that are
   not stroke). The largest piece is the outside; every other piece is inside, so a
   closed loop is its inside and a stroke from edge to edge encloses its smaller side.
3. Unless the two largest pieces are nearly equal (the smaller one over ``AMBIGUOUS`` of
   their sum): then which side was meant cannot be told from the stroke, and the photo
   is *undecided* (training skips it; a boundary score still works).
4. The stroke itself belongs to the region it bounds; a stroke piece that bounds no
   region (a partial stroke that closes nothing) is left out of the region and the photo
   is *partial* (the region is what the closed strokes say; the rest is unknown). Before
   that, gaps up to ``WIDE_GAP_FACTOR`` times ``close_px`` are tried: if every stroke
   then bounds a region, that region stands (still *partial*: the gap was a guess).
5. No stroke pixel: *empty*, a real negative (no lesion).
"""

from __future__ import annotations

import dataclasses
import enum

import cv2
import numpy as np
import numpy.typing as npt

__all__ = [
    "CLOSE_PX",
    "OUTSIDE_CONTACT",
    "FillStatus",
    "Filled",
    "fill_outline",
    "polyline_stroke",
    "scaled_close_px",
]

Mask = npt.NDArray[np.uint8]
CLOSE_PX = 5  # gaps a hand-drawn stroke leaves, in pixels of a 384-pixel-wide mask
OUTSIDE_CONTACT = 0.5  # pieces with this share of the most edge contact are outside
HULL_GAIN = 4.0  # a partial stroke's hull must cover this many times the stroke's pixels
WIDE_GAP_FACTOR = 3  # rule 4b: gaps this many times CLOSE_PX, tried when a stroke is open
MIN_PIECE = 0.0005  # pieces under this share of the photo are stroke wobble, not a region


class FillStatus(enum.StrEnum):
    """What the rule could make of a stroke mask."""

    EMPTY = "empty"  # no stroke: a negative
    FILLED = "filled"  # every stroke bounds a region
    PARTIAL = "partial"  # some stroke bounds nothing; the region is the rest
    UNDECIDED = "undecided"  # no side can be chosen (equal sides, or nothing closed)


@dataclasses.dataclass(frozen=True, slots=True)
class Filled:
    """The region (0/255) a stroke mask stands for and how sure the rule is of it."""

    region: Mask
    status: FillStatus

    @property
    def usable(self) -> bool:
        """Whether the region may serve as training truth (empty, filled or partial)."""
        return self.status is not FillStatus.UNDECIDED


def _closed(stroke: Mask, close_px: int) -> Mask:
    if close_px <= 0:
        return stroke
    size = 2 * close_px + 1
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (size, size))
    return cv2.morphologyEx(stroke, cv2.MORPH_CLOSE, kernel)


def _to_edge(line: Mask, depth: int) -> Mask:
    """Strokes that stop within ``depth`` pixels of the photo's edge run on to it."""
    out = line.copy()
    for view in (out, out[::-1], out.T, out.T[::-1]):
        reach = view[:depth].any(axis=0)
        view[:depth, reach] = 255
    return out


def _edge_contact(labels: npt.NDArray[np.int32], count: int) -> npt.NDArray[np.float64]:
    """Each label's share of the photo's border pixels."""
    border = np.concatenate([labels[0], labels[-1], labels[1:-1, 0], labels[1:-1, -1]])
    return np.bincount(border, minlength=count).astype(np.float64) / border.size


def _edge_runs(piece: npt.NDArray[np.bool_]) -> int:
    """How many separate places a stroke piece meets the photo's edge (3-pixel band)."""
    band = np.zeros(piece.shape, np.uint8)
    band[:3], band[-3:], band[:, :3], band[:, -3:] = 1, 1, 1, 1
    runs, _ = cv2.connectedComponents((piece & band.astype(bool)).astype(np.uint8))
    return int(runs) - 1


def _hull(piece: npt.NDArray[np.bool_]) -> npt.NDArray[np.bool_] | None:
    """A partial stroke closed by its chord (its convex hull), when that encloses area."""
    if _edge_runs(piece) > 1:  # it runs edge to edge and closed nothing: no side to pick
        return None
    points = cv2.findNonZero(piece.astype(np.uint8))
    hull = np.zeros(piece.shape, np.uint8)
    cv2.fillConvexPoly(hull, cv2.convexHull(points), 1)
    filled = hull.astype(bool)
    return filled if filled.sum() >= HULL_GAIN * piece.sum() else None


def _inside(line: Mask) -> npt.NDArray[np.bool_]:
    """Rule 2 and 3: the pieces the strokes enclose (not the outside ones)."""
    count, labels, stats, _ = cv2.connectedComponentsWithStats(
        (line == 0).astype(np.uint8), connectivity=4
    )
    areas = stats[:, cv2.CC_STAT_AREA].astype(np.int64)
    contact = _edge_contact(labels, count)
    contact[0] = 0.0  # the stroke itself
    big = [i for i in range(1, count) if areas[i] >= MIN_PIECE * line.size]
    if contact.max() > 0:
        outside = {i for i in big if contact[i] >= OUTSIDE_CONTACT * contact.max()}
    else:
        outside = {max(big, key=lambda i: areas[i])} if big else set()
    return np.isin(labels, [i for i in big if i not in outside])


def fill_outline(stroke: Mask, *, close_px: int = CLOSE_PX) -> Filled:
    """The region a stroke mask (nonzero = stroke) encloses, by the module's rule."""
    binary = np.where(stroke > 0, 255, 0).astype(np.uint8)
    if not binary.any():
        return Filled(np.zeros_like(binary), FillStatus.EMPTY)
    first = _fill(binary, close_px)
    if first.status is FillStatus.FILLED:
        return first
    # rule 4b: wider gaps (a stroke lifted and set down again) may close what the strokes
    # meant; the guess stays partial, so training never relies on it
    wider = _fill(binary, WIDE_GAP_FACTOR * close_px)
    if wider.status is FillStatus.FILLED:
        return Filled(wider.region, FillStatus.PARTIAL)
    return first


def _fill(binary: Mask, close_px: int) -> Filled:
    line = _to_edge(_closed(binary, close_px), close_px + 2)
    inside = _inside(line)
    grown = cv2.dilate(inside.astype(np.uint8), np.ones((3, 3), np.uint8), iterations=close_px + 2)
    strokes, stroke_labels = cv2.connectedComponents((line > 0).astype(np.uint8), connectivity=8)
    region = inside.copy()
    partial = False
    for label in range(1, strokes):
        piece = stroke_labels == label
        if (grown.astype(bool) & piece).any():
            region |= piece  # the stroke goes with the region it bounds
            continue
        partial = True
        hull = _hull(piece)
        if hull is not None:
            region |= hull
    if not region.any():
        return Filled(np.zeros_like(binary), FillStatus.UNDECIDED)
    status = FillStatus.PARTIAL if partial else FillStatus.FILLED
    return Filled(np.where(region, 255, 0).astype(np.uint8), status)


def scaled_close_px(size_hw: tuple[int, int]) -> int:
    """``CLOSE_PX`` (set for a 384-pixel mask) in proportion to a mask of ``size_hw``."""
    return max(1, round(CLOSE_PX * max(size_hw) / 384))


def polyline_stroke(
    points: list[tuple[float, float]], size_hw: tuple[int, int], *, width: int = 2
) -> Mask:
    """A stroke mask (0/255) drawn along a polyline (LabelMe ``linestrip``, COCO polyline)."""
    mask = np.zeros(size_hw, dtype=np.uint8)
    if len(points) >= 2:
        pts = np.round(np.asarray(points, np.float64)).astype(np.int32).reshape(-1, 1, 2)
        cv2.polylines(mask, [pts], isClosed=False, color=255, thickness=max(1, width))
    return mask
