"""The first generation's painting: primitives (ellipses, noise, compositing) and the
scene's layers, back to front (walls, the cervix dome, ectropion, lesions, highlights,
speculum, camera). ``tools.synth.make_sample`` composes them.

Everything is float32 at the working resolution (at most ``WORK_WIDTH`` wide), and every
random draw comes from the caller's Generator in a fixed order: changing a draw changes
every set written with the same seed.
"""

from __future__ import annotations

import dataclasses
import math

import cv2
import numpy as np
import numpy.typing as npt

__all__ = [
    "F32",
    "U8",
    "WORK_WIDTH",
    "Ellipse",
    "camera",
    "cervix_dome",
    "ectropion",
    "highlights",
    "mix",
    "noise",
    "random_colour",
    "random_lesion_field",
    "smoothstep",
    "speculum",
    "walls",
]

F32 = npt.NDArray[np.float32]
U8 = npt.NDArray[np.uint8]

WORK_WIDTH = 1024  # painting is resolution-free in look, so big photos are upscaled


@dataclasses.dataclass(frozen=True, slots=True)
class Ellipse:
    """A rotated ellipse in working pixels."""

    cx: float
    cy: float
    a: float
    b: float
    angle: float  # radians

    def local(self, x: F32, y: F32) -> tuple[F32, F32]:
        """Coordinates in units of the semi-axes (u along ``a``, v along ``b``)."""
        c, s = math.cos(self.angle), math.sin(self.angle)
        dx, dy = x - self.cx, y - self.cy
        return f32((dx * c + dy * s) / self.a), f32((dy * c - dx * s) / self.b)

    def point(self, u: float, v: float) -> tuple[float, float]:
        """Return the pixel at local coordinates (u, v)."""
        c, s = math.cos(self.angle), math.sin(self.angle)
        return self.cx + u * self.a * c - v * self.b * s, self.cy + u * self.a * s + v * self.b * c

    def inside(self, x: F32, y: F32) -> F32:
        """Approximate signed distance in pixels, positive inside (exact at the edge)."""
        u, v = self.local(x, y)
        grad = 2.0 * np.sqrt((u / self.a) ** 2 + (v / self.b) ** 2) + 1e-6
        return f32((1.0 - u * u - v * v) / grad)


def f32(a: npt.ArrayLike) -> F32:
    """``a`` as float32 (NumPy keeps float32 with Python floats; the stubs think float64)."""
    return np.asarray(a, dtype=np.float32)


def smoothstep(x: F32, lo: float, hi: float) -> F32:
    """0 below ``lo``, 1 above ``hi``, a smooth cubic between."""
    t = np.clip((x - lo) / (hi - lo), 0.0, 1.0)
    return f32(t * t * (3.0 - 2.0 * t))


def noise(rng: np.random.Generator, shape: tuple[int, int], cells: tuple[int, int]) -> F32:
    """Smooth noise of unit spread: a coarse random grid upscaled bicubically."""
    grid = rng.standard_normal((cells[1] + 3, cells[0] + 3), dtype=np.float32)
    big = cv2.resize(
        grid,
        (shape[1] * (cells[0] + 3) // cells[0], shape[0] * (cells[1] + 3) // cells[1]),
        interpolation=cv2.INTER_CUBIC,
    )
    out = f32(big[: shape[0], : shape[1]])
    return f32(out / (float(out.std()) + 1e-6))


def grain(rng: np.random.Generator, shape: tuple[int, int], sigma: float) -> F32:
    """Fine granular noise of unit spread (papillae, mucosal texture)."""
    raw = rng.standard_normal(shape, dtype=np.float32)
    out = f32(cv2.GaussianBlur(raw, (0, 0), sigma))
    return f32(out / (float(out.std()) + 1e-6))


def random_colour(rng: np.random.Generator, lo: tuple[float, ...], hi: tuple[float, ...]) -> F32:
    """Draw an RGB colour (0..1) channel-wise between ``lo`` and ``hi``."""
    return f32(rng.uniform(lo, hi))


def mix(img: F32, colour: F32, alpha: F32) -> None:
    """Alpha-composite ``colour`` over ``img`` in place."""
    img += (colour - img) * alpha[..., None]


def walls(rng: np.random.Generator, x: F32, y: F32, cervix: Ellipse, inside: F32) -> F32:
    """Pinkish-red vaginal walls: folds around the cervix, a shadowed fornix, out of focus."""
    h, w = y.shape[0], x.shape[1]
    base = random_colour(rng, (0.62, 0.26, 0.28), (0.85, 0.40, 0.42))
    u, v = cervix.local(x, y)
    dist, phi = np.sqrt(u * u + v * v), np.arctan2(v, u)
    warp = noise(rng, (h, w), (5, 4))
    lobes = float(rng.integers(5, 12))
    folds = f32(
        0.7 * np.sin(rng.uniform(5, 11) * dist + 1.8 * warp)
        + 0.3 * np.sin(lobes * phi + 1.5 * noise(rng, (h, w), (4, 3)))
    )
    shade = 0.78 + 0.16 * folds - 0.22 * smoothstep(-folds, 0.6, 1.0)  # dark fold creases
    shade *= 1.0 + 0.12 * noise(rng, (h, w), (8, 6))
    # the fornix around the cervix is in shadow: a dark groove just outside its edge
    outside = -inside / (0.15 * cervix.b)
    shade *= 1.0 - 0.7 * np.exp(-(np.maximum(outside, 0.0) ** 2)) * (outside > -0.2)
    img = base * shade[..., None]
    return np.asarray(cv2.GaussianBlur(img, (0, 0), 1.2 * w / WORK_WIDTH + 0.3), np.float32)


def cervix_dome(
    rng: np.random.Generator, img: F32, x: F32, y: F32, *, cervix: Ellipse, inside: F32
) -> tuple[F32, F32]:
    """Pink dome lit from the front with mild texture; returns (alpha, shading)."""
    h, w = img.shape[:2]
    u, v = cervix.local(x, y)
    z = np.sqrt(np.clip(1.0 - u * u - v * v, 0.0, 1.0))
    steep, lx, ly = rng.uniform(0.5, 1.0), rng.uniform(-0.3, 0.3), rng.uniform(-0.3, 0.3)
    lit = (lx * u * steep + ly * v * steep + z) / np.sqrt(steep**2 * (u * u + v * v) + z * z + 1e-6)
    shade = 0.5 + 0.5 * np.clip(lit, 0.0, 1.0) ** 1.3
    shade = shade * (1.0 + 0.05 * noise(rng, (h, w), (10, 8)) + 0.025 * grain(rng, (h, w), 1.0))
    colour = random_colour(rng, (0.82, 0.45, 0.48), (0.95, 0.58, 0.62))
    alpha = np.clip(inside + 0.5, 0.0, 1.0)  # anti-aliased edge
    mix(img, colour * shade[..., None], alpha)
    return alpha, shade.astype(np.float32)


def ectropion(
    rng: np.random.Generator,
    img: F32,
    x: F32,
    y: F32,
    *,
    os_: Ellipse,
    cervix: Ellipse,
    clip: F32,
) -> None:
    """Red granular columnar epithelium around the os (not a lesion)."""
    h, w = img.shape[:2]
    zone = Ellipse(
        os_.cx,
        os_.cy,
        cervix.a * rng.uniform(0.25, 0.6),
        cervix.b * rng.uniform(0.2, 0.5),
        cervix.angle + rng.uniform(-0.3, 0.3),
    )
    u, v = zone.local(x, y)
    field = 1.0 - u * u - v * v + 0.35 * noise(rng, (h, w), (14, 10))
    alpha = smoothstep(field, -0.05, 0.25) * clip * rng.uniform(0.6, 0.95)
    granular = 0.88 + 0.12 * grain(rng, (h, w), 1.6 * w / WORK_WIDTH + 0.6)
    red = random_colour(rng, (0.72, 0.16, 0.2), (0.85, 0.28, 0.3))
    mix(img, red * (granular * (0.6 + 0.4 * img.mean(axis=2) / 0.7))[..., None], alpha)


def random_lesion_field(
    rng: np.random.Generator, shape: tuple[int, int], os_: Ellipse, cervix: Ellipse
) -> F32 | None:
    """Union of blurred ellipses, most around or touching the os; positive inside a lesion."""
    n = int(rng.choice(4, p=[0.2, 0.4, 0.25, 0.15]))
    if n == 0:
        return None
    field = np.full(shape, -1.0, np.float32)
    jitter = noise(rng, shape, (24, 18))
    for _ in range(n):
        canvas = np.zeros(shape, np.float32)
        kind, r = rng.choice(3, p=[0.45, 0.35, 0.2]), cervix.a * rng.uniform(0.12, 0.35)
        if kind == 0:  # ring around the os
            k, theta0 = int(rng.integers(5, 10)), rng.uniform(0, 2 * np.pi)
            spots = [
                (os_.cx + r * math.cos(t), os_.cy + r * math.sin(t))
                for t in theta0 + np.linspace(0, rng.uniform(1.2, 2.0) * np.pi, k)
            ]
        else:  # touching the os from one side, or (kind 2) somewhere else on the cervix
            t = rng.uniform(0, 2 * np.pi)
            far = rng.uniform(0.35, 0.65) * min(cervix.a, cervix.b) if kind == 2 else r * 0.6
            sx, sy = os_.cx + far * math.cos(t), os_.cy + far * math.sin(t)
            spots = [
                (sx + rng.normal(0, 0.5 * r), sy + rng.normal(0, 0.5 * r))
                for _ in range(int(rng.integers(2, 6)))
            ]
        size = cervix.a * rng.uniform(0.06, 0.16)
        for sx, sy in spots:
            axes = (
                max(1, round(size * rng.uniform(0.6, 1.5))),
                max(1, round(size * rng.uniform(0.5, 1.2))),
            )
            cv2.ellipse(canvas, (round(sx), round(sy)), axes, rng.uniform(0, 180), 0, 360, 1.0, -1)
        blurred = cv2.GaussianBlur(canvas, (0, 0), 0.45 * size + 0.5)
        field = np.maximum(field, blurred + 0.12 * jitter - 0.45)
    return field


def highlights(rng: np.random.Generator, shape: tuple[int, int], cervix: Ellipse) -> F32:
    """Small sharp specular spots and streaks from the wet surface (not lesions)."""
    canvas = np.zeros(shape, np.float32)
    px = shape[1] / WORK_WIDTH
    # reflections cluster where the surface faces the light; a few are scattered anywhere
    centres = [cervix.point(*(0.7 * rng.uniform(-1, 1, 2))) for _ in range(rng.integers(1, 4))]
    for _ in range(int(rng.integers(5, 40))):
        if rng.random() < 0.6:
            cx, cy = centres[int(rng.integers(len(centres)))]
            cx, cy = cx + rng.normal(0, 0.15 * cervix.a), cy + rng.normal(0, 0.15 * cervix.b)
        elif rng.random() < 0.6:
            t, rad = rng.uniform(0, 2 * np.pi), 0.95 * math.sqrt(rng.random())
            cx, cy = cervix.point(rad * math.cos(t), rad * math.sin(t))
        else:
            cx, cy = rng.uniform(0, shape[1]), rng.uniform(0, shape[0])
        r = math.exp(rng.uniform(math.log(0.5), math.log(3.5))) * px
        axes = (max(1, round(r * rng.uniform(1.0, 5.0))), max(1, round(r)))
        centre, tilt = (round(cx), round(cy)), rng.uniform(0, 180)
        cv2.ellipse(canvas, centre, axes, tilt, 0, 360, rng.uniform(0.7, 1.0), -1)
    return np.asarray(cv2.GaussianBlur(canvas, (0, 0), 0.5 + 0.3 * px), np.float32)


def speculum(rng: np.random.Generator, img: F32, x: F32, y: F32) -> F32:
    """Metallic grey blades at top and bottom with a specular sheen; returns their alpha."""
    h, w = img.shape[:2]
    occluded = np.zeros((h, w), np.float32)
    for top in (True, False):
        if rng.random() < 0.12:
            continue
        x0, depth = rng.uniform(0.3, 0.7) * w, rng.uniform(0.03, 0.2) * h
        edge = (
            depth
            + rng.uniform(0.15, 0.6) * h * ((x - x0) / w) ** 2
            + rng.uniform(-0.06, 0.06) * (x - x0)
        )
        into = (edge - y) if top else (y - (h - edge))  # pixels inside the blade
        alpha = np.clip(into + 0.5, 0.0, 1.0)
        # contact shadow on the tissue just beyond the blade edge
        img *= (1.0 - 0.55 * np.exp(-np.maximum(-into, 0) / (0.015 * h)) * (into < 0))[..., None]
        band = rng.uniform(0.02, 0.08) * h
        inner = np.maximum(into, 0.0)  # sheen is only seen on the blade
        sheen = 0.6 * np.exp(-(((inner - band) / (0.35 * band + 1)) ** 2)) + 0.35 * np.exp(
            -inner / 2.5
        )
        grey = rng.uniform(0.38, 0.62) * (0.8 + 0.2 * np.cos((x - x0) / w * np.pi))
        metal = (grey + sheen) * (1.0 + 0.04 * noise(rng, (h, w), (40, 3)))
        tint = np.array([0.97, 1.0, rng.uniform(1.02, 1.1)], np.float32)
        mix(img, metal[..., None] * tint, alpha)
        occluded = np.maximum(occluded, alpha)
    return occluded


def camera(rng: np.random.Generator, img: F32, x: F32, y: F32, spots: F32) -> U8:
    """Vignetting, exposure, white balance, saturated highlights, blur, noise and JPEG."""
    h, w = img.shape[:2]
    cx, cy = w * rng.uniform(0.4, 0.6), h * rng.uniform(0.4, 0.6)
    r = np.sqrt((x - cx) ** 2 + (y - cy) ** 2) / (rng.uniform(0.5, 0.75) * math.hypot(w, h) / 2)
    img *= np.exp(-(r ** rng.uniform(2.5, 4.0)))[..., None]
    gains = np.exp(rng.normal(0.0, 0.05, 3)).astype(np.float32) * rng.uniform(0.8, 1.2)
    img = f32(np.clip(img * gains, 0.0, 1.0) ** rng.uniform(0.85, 1.15))
    mix(img, np.full(3, 1.3, np.float32), spots)  # above 1 so they clip like a sensor does
    if rng.random() < 0.35:
        img = f32(cv2.GaussianBlur(img, (0, 0), rng.uniform(0.5, 1.4) * w / WORK_WIDTH + 0.2))
    img += rng.standard_normal(img.shape, dtype=np.float32) * rng.uniform(0.004, 0.02)
    out: U8 = np.clip(img * 255.0 + 0.5, 0, 255).astype(np.uint8)
    if rng.random() < 0.7:  # compression artefacts, as in the camera's own JPEGs
        ok, buf = cv2.imencode(".jpg", out, [cv2.IMWRITE_JPEG_QUALITY, int(rng.integers(60, 95))])
        out = np.asarray(cv2.imdecode(buf, cv2.IMREAD_COLOR), np.uint8) if ok else out
    return out
