"""Acetowhite epithelium: a low-contrast, whitish-pink, slightly raised area with a
textured surface (papillary, mosaic, punctation), sharp or fading borders, large or
small, usually touching the transformation zone around the os."""

from __future__ import annotations

import math

import cv2
import numpy as np

from cervixbatch.tools.synth.layers import f32
from cervixbatch.tools.synth.v2 import fields
from cervixbatch.tools.synth.v2.layout import Layout
from cervixbatch.tools.synth.v2.tissue import Cervix

__all__ = ["lesion_field", "paint_lesion"]


def lesion_field(rng: np.random.Generator, grid: fields.Grid, layout: Layout) -> fields.F32:
    """Signed distance-like field in working pixels, positive inside the lesion.

    The main area is a ragged sector of the transformation zone (from near the os to, for
    large lesions, beyond the zone); small satellites may sit on the zone's border.
    """
    shape = grid.shape
    tz = layout.tz
    u, v = tz.local(grid.x, grid.y)
    r = np.sqrt(u * u + v * v)
    phi = np.arctan2(v, u)
    ragged = rng.uniform(0.04, 0.16) * fields.smooth_noise(rng, shape, (10, 8))
    ragged += rng.uniform(0.0, 0.05) * fields.smooth_noise(rng, shape, (30, 22))
    field = np.full(shape, -10.0, np.float32)
    main = rng.random() < 0.9
    if main:
        mid, half = rng.uniform(-math.pi, math.pi), rng.uniform(0.3, 1.2) * math.pi
        r_in = rng.uniform(0.0, 0.5)
        r_out = r_in + math.exp(rng.uniform(math.log(0.3), math.log(1.6)))
        r_out = max(r_out, 1.5 * layout.os.a / tz.a + 0.15)  # never hidden in the os
        off = np.abs(np.remainder(phi - mid + math.pi, 2 * math.pi) - math.pi)
        angular = (half - off) * np.maximum(r, 0.2) if half < math.pi else np.full_like(r, 9.0)
        radial = np.minimum(r - r_in, r_out - r)
        field = f32(np.minimum(angular, radial) + ragged)
    satellites = int(rng.choice(4, p=[0.45, 0.3, 0.15, 0.1]))
    for _ in range(satellites if main else max(1, satellites)):
        t = rng.uniform(-math.pi, math.pi)
        rad = rng.uniform(0.6, 1.3)
        sx, sy = tz.point(rad * math.cos(t), rad * math.sin(t))
        size = rng.uniform(0.08, 0.3)  # in zone radii
        du = (grid.x - sx) / (tz.a * size)
        dv = (grid.y - sy) / (tz.a * size * rng.uniform(0.5, 1.0))
        blob = (1.0 - np.sqrt(du * du + dv * dv)) * size + ragged * size * 2.0
        field = np.maximum(field, f32(blob))
    return f32(field * tz.a)  # zone radii → working pixels


def paint_lesion(  # noqa: PLR0917
    rng: np.random.Generator,
    img: fields.F32,
    grid: fields.Grid,
    field: fields.F32,
    cervix: Cervix,
    os_alpha: fields.F32,
) -> None:
    """Whiten the lesion softly; surface texture and a raised rim for sharp borders."""
    shape, px = grid.shape, grid.px
    sharp = rng.random() < 0.5
    edge = (rng.uniform(1.0, 3.5) if sharp else rng.uniform(8.0, 35.0)) * px + 0.5
    body = fields.smoothstep(field, -0.5 * edge, 0.5 * edge)
    density = rng.uniform(0.22, 0.6)  # thin, translucent … dense, opaque
    patchy = 1.0 + rng.uniform(0.05, 0.25) * fields.smooth_noise(rng, shape, (18, 14))
    pattern = rng.choice(["smooth", "papillary", "mosaic", "punctation"], p=[0.2, 0.35, 0.25, 0.2])
    bumps = fields.grain(rng, shape, rng.uniform(1.5, 3.5) * px)
    if pattern == "papillary":  # cobblestone / papillary: a bumpy whiteness
        patchy = patchy * (0.85 + 0.12 * bumps)
    alpha = f32(np.clip(body * density * patchy, 0.0, 1.0) * cervix.alpha * (1.0 - os_alpha))
    white = fields.planar(rng.uniform((0.9, 0.82, 0.84), (0.98, 0.92, 0.93)))
    fields.mix(img, white * (0.45 + 0.55 * cervix.shade), alpha)
    if sharp:  # slightly raised: lit on one side of the rim, shadowed on the other
        step = max(1, round(1.5 * px))
        shifted = np.roll(np.roll(body, step, axis=0), step, axis=1)
        relief = f32((body - shifted) * density * rng.uniform(0.08, 0.2))
        img += relief
    red = fields.planar((0.05, 0.45, 0.35))  # darkens green and blue: reads as red vessels
    if pattern == "mosaic":
        angle = rng.uniform(0, math.pi)
        tile = rng.uniform(6.0, 14.0) * px
        xr = (grid.x * math.cos(angle) + grid.y * math.sin(angle)) / tile
        yr = (grid.y * math.cos(angle) - grid.x * math.sin(angle)) / tile
        wobble = 0.35 * fields.smooth_noise(rng, shape, (16, 12))
        borders = np.maximum(
            fields.lines(f32(np.sin(math.pi * (xr + wobble))), 0.18),
            fields.lines(f32(np.sin(math.pi * (yr - wobble))), 0.18),
        )
        img *= 1.0 - (borders * body * rng.uniform(0.15, 0.35)) * red
    elif pattern == "punctation":
        dots = fields.smoothstep(fields.grain(rng, shape, 0.9 * px + 0.3), 2.2, 2.9)
        dots = f32(cv2.GaussianBlur(dots, (0, 0), 0.5 * px + 0.3))
        img *= 1.0 - (dots * body * rng.uniform(0.3, 0.6)) * red
