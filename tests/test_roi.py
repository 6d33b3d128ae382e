"""Mask to cervix region: the largest component, holes filled, the box and its margin."""

from __future__ import annotations

import cv2
import numpy as np

from cervixbatch.segmentation.roi import Box, clean_largest_component, mask_box


def test_largest_component_wins_and_holes_fill() -> None:
    """Only the largest blob survives, with the os-like hole inside it filled."""
    mask = np.zeros((64, 64), np.uint8)
    cv2.circle(mask, (20, 20), 12, 1, -1)
    cv2.circle(mask, (20, 20), 3, 0, -1)  # a hole (the os)
    cv2.circle(mask, (52, 52), 5, 1, -1)  # a smaller blob
    clean = clean_largest_component(mask)
    assert clean[20, 20] == 255
    assert clean[52, 52] == 0
    assert set(np.unique(clean)) == {0, 255}


def test_empty_mask_gives_no_box() -> None:
    """No foreground means no component and no box."""
    empty = np.zeros((32, 32), np.uint8)
    assert not clean_largest_component(empty).any()
    assert mask_box(empty) is None


def test_box_grows_by_margin_and_clips() -> None:
    """A box grows by the margin times its size on every side, clipped to the image."""
    box = Box(10, 20, 30, 60)
    grown = box.grown(0.15, width=100, height=100)
    assert grown == Box(7, 14, 33, 66)
    assert Box(0, 0, 100, 100).grown(0.15, 100, 100) == Box(0, 0, 100, 100)


def test_box_scales_between_grids() -> None:
    """A box on the model grid maps onto the full photo and never becomes empty."""
    assert Box(8, 16, 24, 32).scaled(10.0, 5.0, 400, 300) == Box(80, 80, 240, 160)
    tiny = Box(0, 0, 1, 1).scaled(0.1, 0.1, 10, 10)
    assert tiny.width >= 1 and tiny.height >= 1
