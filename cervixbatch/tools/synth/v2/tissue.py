"""The cervix itself: a lit dome of pink-to-violet mucosa with fine vessels and a wet
sheen, the transformation zone's normal colour change, red ectropion around the os,
Nabothian cysts, and the os (a slit or a small round opening)."""

from __future__ import annotations

import dataclasses
import math

import cv2
import numpy as np

from cervixbatch.tools.synth.layers import f32
from cervixbatch.tools.synth.v2.fields import (
    F32,
    Grid,
    grain,
    lines,
    mix,
    planar,
    smooth_noise,
    smoothstep,
)
from cervixbatch.tools.synth.v2.layout import Layout

__all__ = ["Cervix", "paint_cervix", "paint_nabothian_cysts", "paint_os", "paint_tz"]


@dataclasses.dataclass(frozen=True, slots=True)
class Cervix:
    """What later layers need of the painted cervix."""

    alpha: F32  # 0..1 coverage (anti-aliased rim)
    shade: F32  # the dome's lighting, 0..1
    spots: F32  # specular highlights of the wet surface


def paint_cervix(rng: np.random.Generator, img: F32, grid: Grid, layout: Layout) -> Cervix:
    """The dome: lighting, uneven pink-violet colour, mucosal grain, vessels, wet sheen."""
    shape, px = grid.shape, grid.px
    cervix = layout.cervix
    u, v = cervix.local(grid.x, grid.y)
    inside = cervix.inside_local(u, v)
    inside += (0.03 * cervix.b) * smooth_noise(rng, shape, (6, 5))
    alpha = np.clip(inside * np.float32(1.0 / (0.8 * px + 0.3)) + 0.5, 0.0, 1.0)
    # a bulging dome lit from the colposcope: brightest where it faces the light
    steep = np.float32(rng.uniform(0.5, 1.1))
    z = np.sqrt(np.clip(1.0 - u * u - v * v, 0.0, 1.0))
    lu, lv = cervix.local(f32(layout.light[0]), f32(layout.light[1]))
    u *= steep
    v *= steep
    lit = z + (0.35 * float(lu)) * u + (0.35 * float(lv)) * v
    lit /= np.sqrt(u * u + v * v + z * z + 1e-6)
    np.clip(lit, 0.0, 1.0, out=lit)
    shade = 0.62 + 0.38 * lit * np.sqrt(lit)
    shade *= 1.0 + 0.07 * smooth_noise(rng, shape, (9, 7))
    pink = planar(rng.uniform((0.82, 0.53, 0.62), (0.93, 0.64, 0.73)))
    violet = planar(rng.uniform((0.7, 0.5, 0.68), (0.8, 0.6, 0.8)))
    patches = smoothstep(smooth_noise(rng, shape, (5, 4)) + rng.normal(0.0, 0.7), -1.2, 1.2)
    texture = 1.0 + 0.035 * grain(rng, shape, 0.7 * px)
    texture *= shade
    colour = (pink + (violet - pink) * patches) * texture
    # fine vessels: the zero lines of band-limited noise, seen more in some places
    vessels = lines(smooth_noise(rng, shape, (28, 21)), 0.07)
    vessels *= smoothstep(smooth_noise(rng, shape, (5, 4)), -0.6, 1.2) * rng.uniform(0.15, 0.45)
    colour *= 1.0 - vessels * planar((0.1, 0.45, 0.35))
    mix(img, colour, alpha)
    # the wet sheen: a soft broad reflection where the dome faces the light
    sheen = lit ** np.float32(rng.uniform(12, 40))
    sheen *= alpha * rng.uniform(0.05, 0.25)
    img += sheen
    spots = _sparkle(rng, grid, layout, f32(lit), alpha)
    return Cervix(alpha=f32(alpha), shade=f32(shade), spots=spots)


def _sparkle(rng: np.random.Generator, grid: Grid, layout: Layout, lit: F32, alpha: F32) -> F32:
    """Scattered specular spots and streaks of the wet surface, where it faces the light."""
    canvas = np.zeros(grid.shape, np.float32)
    cervix, px = layout.cervix, grid.px
    count = int(np.exp(rng.uniform(math.log(3), math.log(70))))
    lu, lv = cervix.local(f32(layout.light[0]), f32(layout.light[1]))
    for _ in range(count):
        if rng.random() < 0.7:  # bunched where the dome faces the light
            su, sv = float(lu) * 0.5 + rng.normal(0, 0.3), float(lv) * 0.5 + rng.normal(0, 0.3)
        else:
            t, rad = rng.uniform(0, 2 * math.pi), 0.9 * math.sqrt(rng.random())
            su, sv = rad * math.cos(t), rad * math.sin(t)
        cx, cy = cervix.point(su, sv)
        r = math.exp(rng.uniform(math.log(0.7), math.log(4.0))) * px
        axes = (max(1, round(r * rng.uniform(1.0, 2.0))), max(1, round(r)))
        cv2.ellipse(canvas, (round(cx), round(cy)), axes, rng.uniform(0, 180), 0, 360, 1.0, -1)
    canvas = cv2.GaussianBlur(canvas, (0, 0), 0.4 + 0.3 * px)
    canvas *= smoothstep(lit, 0.2, 0.7)
    canvas *= alpha
    return f32(canvas)


def paint_tz(
    rng: np.random.Generator,
    img: F32,
    grid: Grid,
    layout: Layout,
    cervix: Cervix,
    *,
    ectropion: bool,
) -> F32:
    """The transformation zone's normal, paler colour change and (when ``ectropion``) red
    columnar epithelium around the os. Neither is a lesion. Returns specular glints."""
    shape, px = grid.shape, grid.px
    u, v = layout.tz.local(grid.x, grid.y)
    r = np.sqrt(u * u + v * v)
    r += 0.15 * smooth_noise(rng, shape, (9, 7))
    zone = smoothstep(f32(1.0 - r), -0.05, rng.uniform(0.1, 0.35))
    change = zone * (rng.uniform(0.1, 0.3))
    change *= cervix.alpha
    paler = planar(rng.uniform((0.86, 0.58, 0.58), (0.94, 0.68, 0.66)))
    mix(img, paler * cervix.shade, change)
    # gland openings: a few small dark dots in the zone
    dots = smoothstep(grain(rng, shape, 1.2 * px), 2.6, 3.2)
    dots *= zone * (0.35 * cervix.alpha)
    img *= 1.0 - dots
    if not ectropion:
        return np.zeros(shape, np.float32)
    extent = np.float32(1.0 / rng.uniform(0.4, 1.0))
    field = 1.0 - r * extent + 0.12 * smooth_noise(rng, shape, (16, 12))
    alpha = smoothstep(field, -0.1, rng.uniform(0.1, 0.4))
    alpha *= cervix.alpha * rng.uniform(0.45, 0.85)
    papillae = grain(rng, shape, rng.uniform(0.8, 1.8) * px)
    red = planar(rng.uniform((0.72, 0.2, 0.26), (0.86, 0.34, 0.4)))
    mix(img, red * ((0.85 + 0.1 * papillae) * cervix.shade), alpha)
    # each grape-like papilla catches a glint
    glints = smoothstep(papillae, 2.0, 2.8)
    glints *= alpha * rng.uniform(0.3, 1.0)
    return f32(glints)


def paint_nabothian_cysts(
    rng: np.random.Generator, img: F32, grid: Grid, layout: Layout, cervix: Cervix
) -> F32:
    """1-6 small yellowish domes in and around the zone, each with a glint (not lesions)."""
    spots = np.zeros(grid.shape, np.float32)
    tz = layout.tz
    height, width = grid.shape
    for _ in range(int(rng.integers(1, 7))):
        t, rad = rng.uniform(0, 2 * math.pi), rng.uniform(0.5, 1.15)
        cx, cy = tz.point(rad * math.cos(t), rad * math.sin(t))
        radius = max(2.0, layout.cervix.a * rng.uniform(0.015, 0.06))
        x0, x1 = max(0, int(cx - radius - 2)), min(width, int(cx + radius + 3))
        y0, y1 = max(0, int(cy - radius - 2)), min(height, int(cy + radius + 3))
        if x0 >= x1 or y0 >= y1:
            continue
        dx = (grid.x[:, x0:x1] - cx) / radius
        dy = (grid.y[y0:y1] - cy) / radius
        dome = np.sqrt(np.clip(1.0 - dx * dx - dy * dy, 0.0, 1.0))
        alpha = f32(np.minimum(dome * 3.0, 1.0) * rng.uniform(0.45, 0.85))
        alpha *= cervix.alpha[y0:y1, x0:x1]
        yellow = planar(rng.uniform((0.9, 0.78, 0.55), (0.98, 0.9, 0.72)))
        mix(img[:, y0:y1, x0:x1], yellow * (0.75 + 0.25 * dome), alpha)
        glint = np.exp(-((dx + 0.3) ** 2 + (dy + 0.3) ** 2) / 0.03) * alpha
        spots[y0:y1, x0:x1] = np.maximum(spots[y0:y1, x0:x1], glint)
    return spots


def paint_os(rng: np.random.Generator, img: F32, grid: Grid, layout: Layout, cervix: Cervix) -> F32:
    """The external os, dark inside with a shadowed lip; returns its alpha."""
    os_ = layout.os
    x0, y0, x1, y1 = _box(os_.cx, os_.cy, 2.2 * os_.a + 4, grid)
    sub_x, sub_y = grid.x[:, x0:x1], grid.y[y0:y1]
    alpha = np.zeros(grid.shape, np.float32)
    if x0 >= x1 or y0 >= y1:
        return alpha
    soft = 0.6 + (0.2 if layout.os_round else 0.35) * os_.b
    inner = smoothstep(os_.inside(sub_x, sub_y), -1.0, soft) * cervix.alpha[y0:y1, x0:x1]
    lip = smoothstep(os_.scaled(1.8).inside(sub_x, sub_y), -2.0, 2.0 * os_.b + 2.0)
    lip *= cervix.alpha[y0:y1, x0:x1] * rng.uniform(0.1, 0.3)
    window = img[:, y0:y1, x0:x1]
    window *= 1.0 - lip
    dark = planar(rng.uniform((0.2, 0.03, 0.06), (0.35, 0.09, 0.13)))
    mix(window, dark * cervix.shade[y0:y1, x0:x1], inner * 0.92)
    alpha[y0:y1, x0:x1] = inner
    return alpha


def _box(cx: float, cy: float, radius: float, grid: Grid) -> tuple[int, int, int, int]:
    """The pixel window around a centre, clipped to the frame."""
    x0, x1 = max(0, int(cx - radius)), min(grid.width, int(cx + radius) + 1)
    y0, y1 = max(0, int(cy - radius)), min(grid.height, int(cy + radius) + 1)
    return x0, y0, x1, y1
