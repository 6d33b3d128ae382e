"""The colposcope and its camera: light falloff, the circular field of view, colour
casts from magenta to orange, the green filter, saturated highlights, defocus and motion
blur, sensor noise, low resolution and (strong) JPEG compression."""

from __future__ import annotations

import math

import cv2
import numpy as np

from cervixbatch.tools.synth.layers import f32
from cervixbatch.tools.synth.v2 import fields
from cervixbatch.tools.synth.v2.layout import Layout
from cervixbatch.tools.synth.v2.plan import Feature, Plan

__all__ = ["develop", "field_of_view"]


def field_of_view(rng: np.random.Generator, grid: fields.Grid, layout: Layout) -> fields.F32 | None:
    """How visible each pixel is through the colposcope's round field (None: all of it)."""
    fov = layout.field_of_view
    if fov is None:
        if rng.random() < 0.3:  # close-ups, too, may show the field's rim in the corners
            lx, ly = layout.light
            reach = rng.uniform(0.95, 1.25) * math.hypot(grid.width, grid.height) / 2
            dist = np.sqrt((grid.x - lx) ** 2 + (grid.y - ly) ** 2)
            return fields.smoothstep(
                f32(reach - dist), -0.01 * grid.width - 1, 0.01 * grid.width + 1
            )
        return None
    edge = rng.uniform(0.004, 0.03) * grid.width + 0.5
    return fields.smoothstep(fov.inside(grid.x, grid.y), -0.5 * edge, 0.5 * edge)


def _cast(rng: np.random.Generator) -> fields.F32:
    """White-balance gains from magenta/violet (t < 0) through neutral to orange (t > 0)."""
    t = float(np.clip(rng.normal(-0.3, 0.42), -1.0, 1.0))
    if t < 0:
        gains = (1.0 + 0.06 * -t, 1.0 - 0.14 * -t, 1.0 + 0.16 * -t)
    else:
        gains = (1.0 + 0.1 * t, 1.0 + 0.02 * t, 1.0 - 0.3 * t)
    jitter = np.exp(rng.normal(0.0, 0.03, 3))
    return fields.planar(np.asarray(gains) * jitter * rng.uniform(1.0, 1.4))


def _blur(rng: np.random.Generator, img: fields.F32, grid: fields.Grid, plan: Plan) -> fields.F32:
    px = grid.px
    if plan.has(Feature.DEFOCUS):
        blurred = fields.blur(img, rng.uniform(1.0, 3.5) * px + 0.3)
        if rng.random() < 0.5:  # only part of the depth is in focus
            fields.mix(
                img,
                blurred,
                fields.smoothstep(fields.smooth_noise(rng, grid.shape, (3, 2)), -0.6, 0.6),
            )
        else:
            img = blurred
    if plan.has(Feature.MOTION_BLUR):
        length = max(3, round(rng.uniform(4.0, 16.0) * px))
        kernel = np.zeros((length, length), np.float32)
        kernel[length // 2, :] = 1.0
        centre = ((length - 1) / 2, (length - 1) / 2)
        turn = cv2.getRotationMatrix2D(centre, rng.uniform(0, 180), 1.0)
        kernel = cv2.warpAffine(kernel, turn, (length, length))
        kernel /= max(float(kernel.sum()), 1e-6)
        img = np.stack([cv2.filter2D(plane, -1, kernel) for plane in img])
    return f32(img)


def _sensor_noise(rng: np.random.Generator, shape: tuple[int, ...], sigma: float) -> fields.F32:
    """Zero-mean noise of spread ``sigma`` from random bytes (a tenth of the cost of
    normal draws; the eye and the models cannot tell the distributions apart)."""
    raw = np.frombuffer(rng.bytes(int(np.prod(shape))), np.uint8).reshape(shape)
    return f32((raw.astype(np.float32) - 127.5) * np.float32(sigma * math.sqrt(3) / 127.5))


def develop(  # noqa: PLR0917
    rng: np.random.Generator,
    img: fields.F32,
    grid: fields.Grid,
    layout: Layout,
    plan: Plan,
    spots: fields.F32,
    visible: fields.F32 | None,
) -> fields.U8:
    """From the fields.planar scene to the camera's JPEG, decoded: RGB uint8 (H, W, 3), at the
    working size or (low resolution) smaller."""
    # the colposcope's light: a broad spot around the cervix, falling off outwards
    lx, ly = layout.light
    reach = rng.uniform(0.5, 0.9) * math.hypot(grid.width, grid.height) / 2
    r = np.sqrt((grid.x - lx) ** 2 + (grid.y - ly) ** 2) * np.float32(1.0 / reach)
    img *= 1.0 - rng.uniform(0.1, 0.4) * fields.smoothstep(f32(r), 0.3, 1.3)
    img *= _cast(rng)
    np.clip(spots, 0.0, 1.0, out=spots)
    if plan.has(Feature.GREEN_FILTER):  # red light filtered out: vessels dark, tissue green
        luma = 0.12 * img[0] + 0.78 * img[1] + 0.1 * img[2]
        tint = fields.planar((rng.uniform(0.45, 0.65), 1.0, rng.uniform(0.55, 0.8)))
        img = f32(luma * (tint * rng.uniform(1.0, 1.35)))
        fields.mix(img, (1.0, 1.4, 1.1), spots)
    else:
        fields.mix(img, (1.4, 1.4, 1.4), spots)  # the sensor clips them: pure white
    if visible is not None:
        dark = rng.uniform(0.005, 0.04) * (1.0 + 0.3 * fields.smooth_noise(rng, grid.shape, (6, 4)))
        img *= visible
        img += dark * (1.0 - visible)
    img = _blur(rng, img, grid, plan)
    img += _sensor_noise(rng, img.shape, rng.uniform(0.004, 0.025))
    np.clip(img, 0.0, 1.0, out=img)
    img **= np.float32(rng.uniform(0.85, 1.15))
    img *= 255.0
    img += 0.5
    out: fields.U8 = cv2.merge([plane.astype(np.uint8) for plane in img])
    if plan.has(Feature.LOW_RESOLUTION) and grid.width > 560:
        width = int(rng.integers(320, 561))
        height = max(1, round(grid.height * width / grid.width))
        out = cv2.resize(out, (width, height), interpolation=cv2.INTER_AREA)
    quality = int(rng.integers(12, 41) if plan.has(Feature.STRONG_JPEG) else rng.integers(70, 96))
    bgr = cv2.cvtColor(out, cv2.COLOR_RGB2BGR)  # JPEG's luma weights assume BGR order
    ok, buf = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        return out
    return np.asarray(cv2.cvtColor(cv2.imdecode(buf, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB))
