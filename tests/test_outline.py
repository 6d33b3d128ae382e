"""Outline strokes turned into regions by the documented rule, and the boundary F-score,
on strokes the tests draw themselves (no data folder needed)."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from cervixbatch.tools.annotations.outline import FillStatus, fill_outline, polyline_stroke
from cervixbatch.tools.evaluation.boundary import boundary_f, region_edge

SIZE = 200


def _blank() -> np.ndarray:
    return np.zeros((SIZE, SIZE), np.uint8)


def _circle_stroke(centre: tuple[int, int] = (100, 100), radius: int = 40) -> np.ndarray:
    stroke = _blank()
    cv2.circle(stroke, centre, radius, 255, 2)
    return stroke


def test_a_closed_loop_is_its_inside() -> None:
    """A loop drawn inside the photo fills to the disc it encloses (stroke included)."""
    filled = fill_outline(_circle_stroke())
    assert filled.status is FillStatus.FILLED
    disc = _blank()
    cv2.circle(disc, (100, 100), 41, 255, -1)
    overlap = ((filled.region > 0) & (disc > 0)).sum() / (disc > 0).sum()
    assert overlap > 0.97
    assert filled.region[5, 5] == 0  # outside stays outside


def test_a_loop_with_a_small_gap_is_still_closed() -> None:
    """A hand-drawn loop that leaves a gap of a few pixels is closed before filling."""
    stroke = _circle_stroke()
    stroke[97:103, 135:145] = 0  # a 6-pixel break in the right side of the ring
    filled = fill_outline(stroke)
    assert filled.status is FillStatus.FILLED
    assert filled.region[100, 100] == 255


def test_an_edge_to_edge_stroke_encloses_the_smaller_side() -> None:
    """A stroke from the top edge to the left edge cuts off the corner: the corner is the
    region (the side with less of the photo's edge), not the rest of the photo."""
    stroke = polyline_stroke([(120, 0), (110, 60), (60, 110), (0, 120)], (SIZE, SIZE))
    filled = fill_outline(stroke)
    assert filled.status is FillStatus.FILLED
    assert filled.region[20, 20] == 255
    assert filled.region[180, 180] == 0
    assert 0.1 < (filled.region > 0).mean() < 0.4


def test_a_stroke_that_stops_short_of_the_edge_runs_on_to_it() -> None:
    """Strokes ending a few pixels before the photo's edge are treated as reaching it."""
    stroke = polyline_stroke([(120, 4), (110, 60), (60, 110), (3, 120)], (SIZE, SIZE))
    filled = fill_outline(stroke)
    assert filled.status is FillStatus.FILLED
    assert filled.region[20, 20] == 255


def test_a_stroke_through_the_middle_is_undecided() -> None:
    """A straight stroke from top to bottom through the centre leaves two equal sides:
    which one was meant cannot be told, so the photo is undecided (no region)."""
    stroke = polyline_stroke([(100, 0), (100, SIZE - 1)], (SIZE, SIZE))
    filled = fill_outline(stroke)
    assert filled.status is FillStatus.UNDECIDED
    assert not filled.usable
    assert not filled.region.any()


def test_an_open_arc_is_closed_by_its_chord_and_marked_partial() -> None:
    """A U-shaped stroke inside the photo (a partial outline) stands for its convex hull
    (the chord closes it); the photo is marked partial."""
    stroke = polyline_stroke([(60, 60), (60, 140), (140, 140), (140, 60)], (SIZE, SIZE))
    filled = fill_outline(stroke)
    assert filled.status is FillStatus.PARTIAL
    assert filled.usable
    assert filled.region[100, 100] == 255
    assert filled.region[20, 20] == 0


def test_a_loop_lifted_for_a_wider_gap_follows_its_stroke_not_its_hull() -> None:
    """An L-shaped loop with a 12-pixel break (the pen lifted and set down) stands for the
    L it draws, not for its convex hull, which would take in the corner the L leaves out;
    the guess keeps the photo partial, so training does not rely on it."""
    corners = [(40, 40), (160, 40), (160, 80), (80, 80), (80, 160), (40, 160), (40, 40)]
    stroke = polyline_stroke(corners, (SIZE, SIZE))
    stroke[100:112, 75:86] = 0  # a 12-pixel break in the L's inner side
    filled = fill_outline(stroke)
    assert filled.status is FillStatus.PARTIAL
    assert filled.region[120, 60] == 255  # inside the L's leg
    assert filled.region[60, 120] == 255  # inside the L's arm
    assert filled.region[120, 120] == 0  # the corner the L leaves out (its hull's)
    assert filled.region[20, 20] == 0


def test_a_lone_line_inside_the_photo_bounds_nothing() -> None:
    """A short straight stroke that encloses no area gives no region: undecided."""
    stroke = polyline_stroke([(80, 100), (120, 100)], (SIZE, SIZE))
    assert fill_outline(stroke).status is FillStatus.UNDECIDED


def test_no_stroke_is_a_negative() -> None:
    """An empty stroke mask is a real negative: empty region, usable for training."""
    filled = fill_outline(_blank())
    assert filled.status is FillStatus.EMPTY
    assert filled.usable
    assert not filled.region.any()


def test_boundary_f_is_one_for_the_outlined_region_and_low_when_shifted() -> None:
    """The filled loop's edge lies on the stroke (F near 1); the same disc moved 20 pixels
    scores low; an empty prediction on an empty stroke scores 1, on a stroke 0."""
    stroke = _circle_stroke()
    region = fill_outline(stroke).region
    assert boundary_f(region, stroke) == pytest.approx(1.0, abs=0.05)
    shifted = np.roll(region, 20, axis=1)
    assert boundary_f(shifted, stroke) < 0.5
    assert boundary_f(_blank(), _blank()) == 1.0
    assert boundary_f(_blank(), stroke) == 0.0
    assert boundary_f(region, stroke[:100]) is None


def test_the_photo_frame_is_not_an_edge() -> None:
    """A region that runs out of the photo has no edge along the frame, so an edge-to-edge
    stroke and its filled corner still score near 1."""
    whole = np.full((SIZE, SIZE), 255, np.uint8)
    assert not region_edge(whole).any()
    stroke = polyline_stroke([(120, 0), (110, 60), (60, 110), (0, 120)], (SIZE, SIZE))
    assert boundary_f(fill_outline(stroke).region, stroke) > 0.9
