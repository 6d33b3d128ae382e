"""One synth-v2 photo: the plan, then the layers painted in depth order, then the camera.

Each layer draws from its own Generator spawned from the sample's, so turning one feature
on or off (a held-out setting) changes only that layer of the photo.
"""

from __future__ import annotations

import cv2
import numpy as np

from cervixbatch.tools.synth.layers import f32
from cervixbatch.tools.synth.v1 import SynthSample
from cervixbatch.tools.synth.v2.camera import develop, field_of_view
from cervixbatch.tools.synth.v2.fields import F32, U8, Grid
from cervixbatch.tools.synth.v2.layout import draw_layout
from cervixbatch.tools.synth.v2.lesion import lesion_field, paint_lesion
from cervixbatch.tools.synth.v2.plan import Feature, Selection, draw_plan
from cervixbatch.tools.synth.v2.surround import paint_speculum, paint_walls
from cervixbatch.tools.synth.v2.tissue import (
    paint_cervix,
    paint_nabothian_cysts,
    paint_os,
    paint_tz,
)
from cervixbatch.tools.synth.v2.wet import paint_blood, paint_glare_cluster, paint_mucus

__all__ = ["WORK_WIDTH", "make_sample"]

WORK_WIDTH = 800  # painted at most this wide, then upscaled: 0.33 s per 12 MP photo
_LAYERS = 12
_LESION_LEVELS = 24.0  # grey levels per working pixel of lesion field, for the upscaled mask


def make_sample(
    rng: np.random.Generator,
    size: tuple[int, int] | None = None,
    *,
    selection: Selection | None = None,
) -> SynthSample:
    """Draw one synth-v2 photo and its masks; ``size`` is (width, height) or drawn."""
    plan = draw_plan(rng, size, selection or Selection())
    width, height = plan.size
    r = rng.spawn(_LAYERS)
    w = min(width, WORK_WIDTH)
    grid = Grid.of(w, max(1, round(height * w / width)))
    layout = draw_layout(r[0], grid, full_view=plan.has(Feature.FULL_VIEW))

    img, spots = paint_walls(r[1], grid, layout)
    cervix = paint_cervix(r[2], img, grid, layout)
    spots = np.maximum(spots * (1.0 - cervix.alpha), cervix.spots)
    spots = np.maximum(
        spots, paint_tz(r[3], img, grid, layout, cervix, ectropion=plan.has(Feature.ECTROPION))
    )
    if plan.has(Feature.NABOTHIAN_CYSTS):
        spots = np.maximum(spots, paint_nabothian_cysts(r[4], img, grid, layout, cervix))
    os_alpha = paint_os(r[6], img, grid, layout, cervix)
    field: F32 | None = None
    if plan.has(Feature.LESION):
        field = lesion_field(r[5], grid, layout)
        paint_lesion(r[5], img, grid, field, cervix, os_alpha)
    if plan.has(Feature.MUCUS):
        spots = np.maximum(spots, paint_mucus(r[7], img, grid, layout))
    if plan.has(Feature.GLARE_CLUSTER):
        spots = np.maximum(spots, paint_glare_cluster(r[8], img, grid, layout, cervix))
    if plan.has(Feature.BLOOD):
        spots = np.maximum(spots, paint_blood(r[9], img, grid, layout, cervix))
    occluded = np.zeros(grid.shape, np.float32)
    if plan.speculum is not None:
        occluded, blade_spots = paint_speculum(
            r[10], img, grid, layout, plastic=plan.speculum is Feature.PLASTIC_SPECULUM
        )
        spots = np.maximum(spots * (1.0 - occluded), blade_spots)
    visible = field_of_view(r[11], grid, layout)
    rgb = develop(r[11], img, grid, layout, plan, f32(spots), visible)

    seen = cervix.alpha * (1.0 - occluded)
    if visible is not None:
        seen *= visible
    cervix_level = _level(f32(seen * 255.0))
    lesion_level = (
        _level(127.5 + _LESION_LEVELS * np.minimum(field, (0.5 - os_alpha) * 8.0))
        if field is not None
        else np.zeros(grid.shape, np.uint8)
    )
    if rgb.shape[:2] != (height, width):
        rgb = cv2.resize(rgb, (width, height), interpolation=cv2.INTER_LINEAR)
    cervix_mask = _threshold(cervix_level, (width, height))
    lesion_mask = _threshold(lesion_level, (width, height))
    cv2.bitwise_and(lesion_mask, cervix_mask, dst=lesion_mask)
    return SynthSample(
        np.ascontiguousarray(rgb, dtype=np.uint8),
        cervix_mask,
        lesion_mask,
        frozenset(f.value for f in plan.features),
    )


def _level(values: F32) -> U8:
    return np.clip(values + 0.5, 0, 255).astype(np.uint8)


def _threshold(level: U8, size: tuple[int, int]) -> U8:
    """0/255 where the (upscaled) level is above the middle: > 127."""
    if (level.shape[1], level.shape[0]) != size:
        level = cv2.resize(level, size, interpolation=cv2.INTER_LINEAR)
    _, mask = cv2.threshold(level, 127, 255, cv2.THRESH_BINARY)
    return np.asarray(mask, np.uint8)
