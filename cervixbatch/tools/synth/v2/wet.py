"""Wet things on the surface, none of them a lesion: mucus (clear or cloudy strands and a
plug at the os), clusters of specular highlights on mucus, and blood."""

from __future__ import annotations

import math

import cv2
import numpy as np

from cervixbatch.tools.synth.layers import f32
from cervixbatch.tools.synth.v2.fields import (
    F32,
    Grid,
    grain,
    mix,
    planar,
    smooth_noise,
    smoothstep,
)
from cervixbatch.tools.synth.v2.layout import Layout
from cervixbatch.tools.synth.v2.tissue import Cervix

__all__ = ["paint_blood", "paint_glare_cluster", "paint_mucus"]


def _wander(
    rng: np.random.Generator, start: tuple[float, float], heading: float, step: float, n: int
) -> np.ndarray:
    """A wandering polyline (int32 points for OpenCV) from ``start``."""
    points = [start]
    x, y = start
    for _ in range(n):
        heading += rng.normal(0.0, 0.35)
        x, y = x + step * math.cos(heading), y + step * math.sin(heading)
        points.append((x, y))
    return np.round(np.asarray(points)).astype(np.int32)


def _on_cervix(rng: np.random.Generator, layout: Layout, reach: float) -> tuple[float, float]:
    """A random point on the cervix within ``reach`` of its radius."""
    t, rad = rng.uniform(0, 2 * math.pi), reach * math.sqrt(rng.random())
    return layout.cervix.point(rad * math.cos(t), rad * math.sin(t))


def _near_os(rng: np.random.Generator, layout: Layout) -> tuple[float, float]:
    """A random point in the transformation zone."""
    t, rad = rng.uniform(0, 2 * math.pi), math.sqrt(rng.random())
    return layout.tz.point(rad * math.cos(t), rad * math.sin(t))


def _edges(canvas: F32) -> F32:
    """Where a soft 0..1 shape is half on: its rims, which catch the light."""
    return f32(4.0 * canvas * (1.0 - canvas))


def paint_mucus(rng: np.random.Generator, img: F32, grid: Grid, layout: Layout) -> F32:
    """A plug at the os and strands across the cervix; clear or cloudy. Returns glints."""
    canvas = np.zeros(grid.shape, np.float32)
    px, os_ = grid.px, layout.os
    if rng.random() < 0.7:
        axes = (
            max(2, round(max(os_.a, 6 * px) * rng.uniform(0.8, 2.0))),
            max(2, round(max(os_.a, 6 * px) * rng.uniform(0.4, 1.1))),
        )
        centre = (round(os_.cx), round(os_.cy))
        cv2.ellipse(canvas, centre, axes, math.degrees(os_.angle), 0, 360, 1.0, -1, cv2.LINE_AA)
    for _ in range(int(rng.integers(1, 5))):
        start = _near_os(rng, layout) if rng.random() < 0.6 else _on_cervix(rng, layout, 0.8)
        step = layout.cervix.a * rng.uniform(0.03, 0.08)
        points = _wander(rng, start, rng.uniform(0, 2 * math.pi), step, int(rng.integers(5, 18)))
        thickness = max(1, round(rng.uniform(4.0, 20.0) * px))
        cv2.polylines(
            canvas, [points], isClosed=False, color=1.0, thickness=thickness, lineType=cv2.LINE_AA
        )
    canvas = f32(cv2.GaussianBlur(canvas, (0, 0), 3.0 * px + 0.3))
    cloudy = rng.random() < 0.35
    strength = rng.uniform(0.25, 0.5) if cloudy else rng.uniform(0.06, 0.18)
    mix(img, f32((0.9, 0.88, 0.93)), f32(canvas * strength))
    dashes = smoothstep(smooth_noise(rng, grid.shape, (40, 30)), 0.6, 1.6)
    return f32(smoothstep(_edges(canvas) * dashes, 0.4, 0.9) * rng.uniform(0.4, 1.0))


def paint_glare_cluster(
    rng: np.random.Generator, img: F32, grid: Grid, layout: Layout, cervix: Cervix
) -> F32:
    """1-3 clusters of many small specular highlights on a thin film of mucus, most in the
    transformation zone, where lesions are too. Returns the highlights."""
    spots = np.zeros(grid.shape, np.float32)
    film = np.zeros(grid.shape, np.float32)
    px = grid.px
    for _ in range(int(rng.integers(1, 4))):
        cx, cy = _near_os(rng, layout) if rng.random() < 0.6 else _on_cervix(rng, layout, 0.85)
        spread = layout.cervix.a * math.exp(rng.uniform(math.log(0.05), math.log(0.3)))
        film_axes = (max(2, round(spread * 1.4)), max(2, round(spread * rng.uniform(0.6, 1.3))))
        cv2.ellipse(film, (round(cx), round(cy)), film_axes, rng.uniform(0, 180), 0, 360, 1.0, -1)
        count = int(np.exp(rng.uniform(math.log(15), math.log(400))))
        xs = rng.normal(cx, spread * 0.5, count)
        ys = rng.normal(cy, spread * 0.5, count)
        radii = np.exp(rng.uniform(math.log(0.6), math.log(5.0), count)) * px
        for x, y, r in zip(xs, ys, radii, strict=True):
            axes = (max(1, round(r * rng.uniform(1.0, 3.0))), max(1, round(r)))
            tilt = rng.uniform(0, 180)
            cv2.ellipse(spots, (round(x), round(y)), axes, tilt, 0, 360, rng.uniform(0.8, 1.0), -1)
    film = f32(cv2.GaussianBlur(film, (0, 0), 6.0 * px + 1.0))
    mix(img, f32((0.92, 0.9, 0.94)), f32(film * rng.uniform(0.04, 0.16) * cervix.alpha))
    spots = f32(cv2.GaussianBlur(spots, (0, 0), 0.4 + 0.3 * px))
    return f32(spots * np.maximum(cervix.alpha, 0.3))


def paint_blood(
    rng: np.random.Generator, img: F32, grid: Grid, layout: Layout, cervix: Cervix
) -> F32:
    """A streak running from the os and/or a patch of contact bleeding; glossy."""
    canvas = np.zeros(grid.shape, np.float32)
    px = grid.px
    streak = rng.random() < 0.6
    if streak:
        heading = math.pi / 2 + rng.normal(0.0, 0.6)  # mostly downwards
        step = layout.cervix.a * rng.uniform(0.04, 0.09)
        points = _wander(rng, (layout.os.cx, layout.os.cy), heading, step, int(rng.integers(4, 14)))
        thickness = max(1, round(rng.uniform(3.0, 16.0) * px))
        cv2.polylines(
            canvas, [points], isClosed=False, color=1.0, thickness=thickness, lineType=cv2.LINE_AA
        )
    if not streak or rng.random() < 0.4:
        cx, cy = _near_os(rng, layout) if rng.random() < 0.6 else _on_cervix(rng, layout, 0.9)
        size = layout.cervix.a * rng.uniform(0.04, 0.18)
        for _ in range(int(rng.integers(2, 7))):
            centre = (round(cx + rng.normal(0, size * 0.6)), round(cy + rng.normal(0, size * 0.6)))
            axes = (max(1, round(size * rng.uniform(0.3, 1.0))), max(1, round(size * 0.5)))
            cv2.ellipse(canvas, centre, axes, rng.uniform(0, 180), 0, 360, 1.0, -1, cv2.LINE_AA)
    canvas = f32(cv2.GaussianBlur(canvas, (0, 0), 1.5 * px + 0.5))
    alpha = f32(np.clip(canvas * 1.4, 0.0, 1.0) * rng.uniform(0.65, 0.95))
    red = planar(rng.uniform((0.42, 0.03, 0.05), (0.62, 0.1, 0.13)))
    mix(img, red * (0.6 + 0.4 * cervix.shade), alpha)
    gloss = smoothstep(grain(rng, grid.shape, 1.5 * px), 2.2, 3.0)
    gloss += 0.3 * _edges(alpha)
    gloss *= alpha * rng.uniform(0.2, 0.8)
    return f32(gloss)
