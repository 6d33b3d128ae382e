"""Where things are: the cervix, its os and transformation zone, the field of view.

A close-up fills 50-95 % of the frame with cervix (cut by the frame's edges when large);
a full view shows it at 10-40 %, often off-centre, inside the colposcope's circular field.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from cervixbatch.tools.synth.v2.fields import Ellipse, Grid

__all__ = ["Layout", "draw_layout"]


@dataclasses.dataclass(frozen=True, slots=True)
class Layout:
    """The geometry of one photo, in working pixels."""

    cervix: Ellipse
    os: Ellipse
    os_round: bool
    tz: Ellipse  # the transformation zone's outer limit, centred on the os
    field_of_view: Ellipse | None  # the vignette's circle (full views); None: the whole frame
    light: tuple[float, float]  # where the colposcope's light is brightest


def _in_frame_fraction(ellipse: Ellipse, grid_w: int, grid_h: int, w: int, h: int) -> float:
    """The share of the frame the ellipse covers, on a coarse grid (fast, ~1 % exact)."""
    xs = (np.arange(grid_w, dtype=np.float32)[None, :] + 0.5) * (w / grid_w)
    ys = (np.arange(grid_h, dtype=np.float32)[:, None] + 0.5) * (h / grid_h)
    u, v = ellipse.local(xs, ys)
    return float(np.mean(u * u + v * v < 1.0))


def _fit_scale(base: Ellipse, target: float, w: int, h: int) -> Ellipse:
    """The ellipse scaled (about its centre) so that it covers ``target`` of the frame."""
    lo, hi = 0.05, 4.0
    for _ in range(18):
        mid = math.sqrt(lo * hi)
        if _in_frame_fraction(base.scaled(mid), 64, 48, w, h) < target:
            lo = mid
        else:
            hi = mid
    return base.scaled(math.sqrt(lo * hi))


def draw_layout(rng: np.random.Generator, grid: Grid, *, full_view: bool) -> Layout:
    """Place the cervix, os, transformation zone and field of view."""
    w, h = grid.width, grid.height
    aspect, tilt = rng.uniform(0.72, 1.0), rng.uniform(-0.5, 0.5)
    fov: Ellipse | None = None
    if full_view:
        radius = w * rng.uniform(0.42, 0.6)
        fov_x, fov_y = w * rng.uniform(0.46, 0.54), h * rng.uniform(0.46, 0.54)
        fov = Ellipse(fov_x, fov_y, radius, radius, 0.0)
        target = rng.uniform(0.10, 0.40)
        # off-centre, yet inside the field of view
        reach = rng.uniform(0.0, 0.3) * min(radius, h / 2)
        theta = rng.uniform(0, 2 * math.pi)
        cx, cy = fov_x + reach * math.cos(theta), fov_y + reach * math.sin(theta)
        light = (fov_x + rng.normal(0, 0.05 * w), fov_y + rng.normal(0, 0.05 * h))
    else:
        target = rng.uniform(0.5, 0.95)
        cx, cy = w * rng.uniform(0.4, 0.6), h * rng.uniform(0.4, 0.6)
        light = (cx + rng.normal(0, 0.08 * w), cy + rng.normal(0, 0.08 * h))
    cervix = _fit_scale(Ellipse(cx, cy, 0.3 * w, 0.3 * w * aspect, tilt), target, w, h)
    if fov is not None:  # keep the cervix well inside the circle
        limit = 0.8 * fov.a
        if cervix.a > limit:
            cervix = cervix.scaled(limit / cervix.a)
    # the os: near the cervix's centre; a slit (parous) or a small round opening
    os_x, os_y = cervix.point(rng.uniform(-0.15, 0.15), rng.uniform(-0.15, 0.15))
    os_round = bool(rng.random() < 0.35)
    if os_round:
        os_a = cervix.a * rng.uniform(0.025, 0.06)
        os_b = os_a * rng.uniform(0.7, 1.0)
    else:
        os_a = cervix.a * rng.uniform(0.06, 0.16)
        os_b = os_a * rng.uniform(0.08, 0.3)
    os_ = Ellipse(os_x, os_y, os_a, os_b, tilt + rng.uniform(-0.35, 0.35))
    tz_scale = rng.uniform(0.3, 0.7)
    tz = Ellipse(
        os_x,
        os_y,
        cervix.a * tz_scale,
        cervix.b * tz_scale * rng.uniform(0.75, 1.05),
        tilt + rng.uniform(-0.3, 0.3),
    )
    return Layout(cervix=cervix, os=os_, os_round=os_round, tz=tz, field_of_view=fov, light=light)
