"""What surrounds the cervix: vaginal walls with transverse folds (rugae), the shadowed
fornix, and the speculum's blades (metal, or clear plastic full of wet reflections).

Images are planar (3, H, W) float32, as everywhere in synth v2.
"""

from __future__ import annotations

import math

import numpy as np

from cervixbatch.tools.synth.layers import f32
from cervixbatch.tools.synth.v2.fields import F32, Grid, blur, mix, planar, smooth_noise, smoothstep
from cervixbatch.tools.synth.v2.layout import Layout

__all__ = ["paint_speculum", "paint_walls"]


def paint_walls(rng: np.random.Generator, grid: Grid, layout: Layout) -> tuple[F32, F32]:
    """Brownish-pink walls with rugae; returns (image, wet highlights on the fold crests)."""
    shape = grid.shape
    u, v = layout.cervix.local(grid.x, grid.y)
    dist = np.sqrt(u * u + v * v)
    phi = np.arctan2(v, u)
    # rugae: transverse ridges around the cervix, irregular: warped spacing, broken up,
    # flattened in places
    spacing = rng.uniform(0.09, 0.18)  # in cervix radii
    phase = dist * np.float32(2 * math.pi / spacing)
    phase += rng.uniform(2.5, 5.0) * smooth_noise(rng, shape, (4, 3))
    phase += smooth_noise(rng, shape, (9, 7))
    phase += np.sin(phi * np.float32(rng.integers(3, 8)) + 2.0 * smooth_noise(rng, shape, (4, 3)))
    relief = smoothstep(smooth_noise(rng, shape, (5, 4)), -1.2, 0.8) * rng.uniform(0.5, 1.0)
    ridge = np.sin(phase) * relief
    patches = smooth_noise(rng, shape, (7, 5))
    shade = 0.86 + 0.09 * ridge - 0.2 * smoothstep(-ridge, 0.6, 1.0)
    shade *= 1.0 + 0.12 * patches
    # the fornix just outside the cervix's rim: a groove, deeper in some places
    groove = np.exp(np.minimum(1.0 - dist, 0.0) * np.float32(1.0 / rng.uniform(0.04, 0.12)))
    groove *= smoothstep(smooth_noise(rng, shape, (6, 5)), -1.5, 1.0)
    shade *= 1.0 - rng.uniform(0.3, 0.7) * groove
    brown = planar(rng.uniform((0.56, 0.32, 0.3), (0.7, 0.42, 0.38)))
    pink = planar(rng.uniform((0.7, 0.4, 0.45), (0.82, 0.5, 0.55)))
    hue = smoothstep(patches + rng.normal(0.0, 0.5), -1.0, 1.0)
    img = (brown + (pink - brown) * hue) * shade
    img = blur(f32(img), 0.8 * grid.px + 0.3)  # the walls lie out of focus
    # wet sheen catches the light on the fold crests, in dashes
    crest = smoothstep(ridge, 0.8, 0.95) * smoothstep(smooth_noise(rng, shape, (24, 18)), 1.2, 2.0)
    crest *= smoothstep(dist, 1.05, 1.2) * rng.uniform(0.6, 1.0)
    return f32(img), f32(crest)


def _blade_edges(rng: np.random.Generator, grid: Grid, layout: Layout) -> list[F32]:
    """For the top and bottom blade: how far (px) each pixel lies inside the blade."""
    h = grid.height
    cervix = layout.cervix
    half_height = math.hypot(cervix.a * math.sin(cervix.angle), cervix.b * math.cos(cervix.angle))
    out = []
    for top in (True, False):
        if rng.random() < 0.1:  # one blade out of view
            continue
        rim = cervix.cy - half_height if top else h - (cervix.cy + half_height)
        # the blade's edge lies between the frame and the cervix, at most nicking its rim
        depth = max(0.03 * h, rim - rng.uniform(-0.1, 0.45) * cervix.b)
        x0, bend = rng.uniform(0.3, 0.7) * grid.width, rng.uniform(-0.15, 0.5) * h
        slope = rng.uniform(-0.08, 0.08)
        xn = (grid.x - x0) * np.float32(1.0 / grid.width)
        edge = depth - bend * xn * xn + slope * (grid.x - x0)  # a row: (1, W)
        into = (edge - grid.y) if top else (grid.y - (h - edge))
        out.append(f32(into))
    return out


def paint_speculum(
    rng: np.random.Generator, img: F32, grid: Grid, layout: Layout, *, plastic: bool
) -> tuple[F32, F32]:
    """Blades at top and bottom; returns (occlusion alpha, specular highlights)."""
    occluded = np.zeros(grid.shape, np.float32)
    spots = np.zeros(grid.shape, np.float32)
    for into in _blade_edges(rng, grid, layout):
        alpha = np.clip(into * np.float32(1.0 / (1.2 * grid.px + 0.3)) + 0.5, 0.0, 1.0)
        inner = np.maximum(into, 0.0) * np.float32(1.0 / grid.height)  # frame heights
        # contact shadow on the tissue just beyond the blade's edge
        shadow = np.exp(np.minimum(into, 0.0) * np.float32(1.0 / (0.02 * grid.height)))
        img *= 1.0 - 0.5 * shadow * (into < 0)
        if plastic:
            _plastic_blade(rng, img, grid, alpha, inner, spots)
        else:
            _metal_blade(rng, img, grid, alpha, inner, spots)
        np.maximum(occluded, alpha, out=occluded)
    return occluded, spots


def _metal_blade(  # noqa: PLR0917
    rng: np.random.Generator, img: F32, grid: Grid, alpha: F32, inner: F32, spots: F32
) -> None:
    """Brushed steel: grey bands along the blade, a bright rim, a pink reflection."""
    band = rng.uniform(0.02, 0.07)
    sheen = 0.55 * np.exp(-(((inner - band) * np.float32(1.0 / (0.4 * band))) ** 2))
    sheen += 0.3 * np.exp(inner * np.float32(-1.0 / 0.006))
    along = grid.x * np.float32(math.pi * rng.uniform(1, 3) / grid.width)
    grey = rng.uniform(0.35, 0.6) * (0.85 + 0.15 * np.cos(along))  # a row: (1, W)
    metal = (grey + sheen) * (1.0 + 0.05 * smooth_noise(rng, grid.shape, (60, 3)))
    tint = planar(rng.uniform((0.95, 0.88, 0.9), (1.05, 0.98, 1.08)))
    mix(img, metal * tint, alpha)
    spots += alpha * smoothstep(f32(sheen), 0.45, 0.6) * rng.uniform(0.5, 1.0)


def _plastic_blade(  # noqa: PLR0917
    rng: np.random.Generator, img: F32, grid: Grid, alpha: F32, inner: F32, spots: F32
) -> None:
    """Clear plastic: the wall seen hazy through it, with long wet-looking reflections."""
    seen = blur(img, 2.5 * grid.px + 0.5)
    mix(seen, (0.88, 0.86, 0.9), np.full(grid.shape, rng.uniform(0.15, 0.4), np.float32))
    mix(img, seen, alpha)
    # streaks parallel to the edge (the blade's ridges and curvature), broken into dashes
    streaks = np.exp(inner * np.float32(-1.0 / 0.004))  # the bright rim
    for _ in range(int(rng.integers(2, 6))):
        at, width = rng.uniform(0.0, 0.25), rng.uniform(0.002, 0.02)
        line = np.exp(-(((inner - at) * np.float32(1.0 / width)) ** 2))
        dashes = smooth_noise(rng, grid.shape, (int(rng.integers(3, 12)), 3))
        line *= smoothstep(dashes + rng.normal(0, 0.6), -0.2, 0.8)
        np.maximum(streaks, line, out=streaks)
    spots += alpha * smoothstep(f32(streaks), 0.35, 0.75)
    mix(img, (0.95, 0.95, 0.97), f32(alpha * 0.35 * streaks))
