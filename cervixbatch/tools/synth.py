"""Synthetic colposcopy-like photos with exact ground-truth masks.

Used for demos, tests and to train the demo models. A scene is painted at a working
resolution (at most ``_WORK_WIDTH`` wide) as soft alpha layers, then upscaled; the masks
are thresholds of the same alpha fields upscaled the same way, so mask edges sit where the
photo's colour transitions are. Everything random comes from the caller's Generator, so a
seed gives byte-identical output.
"""

from __future__ import annotations

import dataclasses
import math
import os
import re
from typing import TYPE_CHECKING

import cv2
import numpy as np
import numpy.typing as npt

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

__all__ = [
    "DEFAULT_SIZES",
    "SynthSample",
    "make_sample",
    "parse_size",
    "sample_folders",
    "write_dataset",
    "write_sample",
]

F32 = npt.NDArray[np.float32]
U8 = npt.NDArray[np.uint8]

DEFAULT_SIZES: tuple[tuple[int, int], ...] = (
    (1600, 1200),
    (2048, 1536),
    (2592, 1944),
    (3264, 2448),
    (4128, 3096),
)
_WORK_WIDTH = 1024  # painting is resolution-free in look, so big photos are upscaled
_SIZE_RE = re.compile(r"^\s*(\d+)\s*[xX]\s*(\d+)\s*$")


@dataclasses.dataclass(frozen=True, slots=True)
class SynthSample:
    """One synthetic photo (H x W x 3 uint8 RGB) and its 0/255 masks (H x W uint8)."""

    rgb: npt.NDArray[np.uint8]
    cervix_mask: npt.NDArray[np.uint8]
    lesion_mask: npt.NDArray[np.uint8]  # always a subset of cervix_mask
    features: frozenset[str] = frozenset()  # synth-v2's settings shown (see synth_v2.plan)


@dataclasses.dataclass(frozen=True, slots=True)
class _Ellipse:
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
        return _f32((dx * c + dy * s) / self.a), _f32((dy * c - dx * s) / self.b)

    def point(self, u: float, v: float) -> tuple[float, float]:
        """Return the pixel at local coordinates (u, v)."""
        c, s = math.cos(self.angle), math.sin(self.angle)
        return self.cx + u * self.a * c - v * self.b * s, self.cy + u * self.a * s + v * self.b * c

    def inside(self, x: F32, y: F32) -> F32:
        """Approximate signed distance in pixels, positive inside (exact at the edge)."""
        u, v = self.local(x, y)
        grad = 2.0 * np.sqrt((u / self.a) ** 2 + (v / self.b) ** 2) + 1e-6
        return _f32((1.0 - u * u - v * v) / grad)


def _f32(a: npt.ArrayLike) -> F32:
    # NumPy keeps float32 when mixed with Python floats; the stubs think float64
    return np.asarray(a, dtype=np.float32)


def _smoothstep(x: F32, lo: float, hi: float) -> F32:
    t = np.clip((x - lo) / (hi - lo), 0.0, 1.0)
    return _f32(t * t * (3.0 - 2.0 * t))


def _noise(rng: np.random.Generator, shape: tuple[int, int], cells: tuple[int, int]) -> F32:
    """Smooth noise of unit spread: a coarse random grid upscaled bicubically."""
    grid = rng.standard_normal((cells[1] + 3, cells[0] + 3), dtype=np.float32)
    big = cv2.resize(
        grid,
        (shape[1] * (cells[0] + 3) // cells[0], shape[0] * (cells[1] + 3) // cells[1]),
        interpolation=cv2.INTER_CUBIC,
    )
    out = _f32(big[: shape[0], : shape[1]])
    return _f32(out / (float(out.std()) + 1e-6))


def _grain(rng: np.random.Generator, shape: tuple[int, int], sigma: float) -> F32:
    """Fine granular noise of unit spread (papillae, mucosal texture)."""
    raw = rng.standard_normal(shape, dtype=np.float32)
    out = _f32(cv2.GaussianBlur(raw, (0, 0), sigma))
    return _f32(out / (float(out.std()) + 1e-6))


def _colour(rng: np.random.Generator, lo: tuple[float, ...], hi: tuple[float, ...]) -> F32:
    """Draw an RGB colour (0..1) channel-wise between ``lo`` and ``hi``."""
    return _f32(rng.uniform(lo, hi))


def _mix(img: F32, colour: F32, alpha: F32) -> None:
    """Alpha-composite ``colour`` over ``img`` in place."""
    img += (colour - img) * alpha[..., None]


def _walls(rng: np.random.Generator, x: F32, y: F32, cervix: _Ellipse, inside: F32) -> F32:
    """Pinkish-red vaginal walls: folds around the cervix, a shadowed fornix, out of focus."""
    h, w = y.shape[0], x.shape[1]
    base = _colour(rng, (0.62, 0.26, 0.28), (0.85, 0.40, 0.42))
    u, v = cervix.local(x, y)
    dist, phi = np.sqrt(u * u + v * v), np.arctan2(v, u)
    warp = _noise(rng, (h, w), (5, 4))
    lobes = float(rng.integers(5, 12))
    folds = _f32(
        0.7 * np.sin(rng.uniform(5, 11) * dist + 1.8 * warp)
        + 0.3 * np.sin(lobes * phi + 1.5 * _noise(rng, (h, w), (4, 3)))
    )
    shade = 0.78 + 0.16 * folds - 0.22 * _smoothstep(-folds, 0.6, 1.0)  # dark fold creases
    shade *= 1.0 + 0.12 * _noise(rng, (h, w), (8, 6))
    # the fornix around the cervix is in shadow: a dark groove just outside its edge
    outside = -inside / (0.15 * cervix.b)
    shade *= 1.0 - 0.7 * np.exp(-(np.maximum(outside, 0.0) ** 2)) * (outside > -0.2)
    img = base * shade[..., None]
    return np.asarray(cv2.GaussianBlur(img, (0, 0), 1.2 * w / _WORK_WIDTH + 0.3), np.float32)


def _cervix(
    rng: np.random.Generator, img: F32, x: F32, y: F32, *, cervix: _Ellipse, inside: F32
) -> tuple[F32, F32]:
    """Pink dome lit from the front with mild texture; returns (alpha, shading)."""
    h, w = img.shape[:2]
    u, v = cervix.local(x, y)
    z = np.sqrt(np.clip(1.0 - u * u - v * v, 0.0, 1.0))
    steep, lx, ly = rng.uniform(0.5, 1.0), rng.uniform(-0.3, 0.3), rng.uniform(-0.3, 0.3)
    lit = (lx * u * steep + ly * v * steep + z) / np.sqrt(steep**2 * (u * u + v * v) + z * z + 1e-6)
    shade = 0.5 + 0.5 * np.clip(lit, 0.0, 1.0) ** 1.3
    shade = shade * (1.0 + 0.05 * _noise(rng, (h, w), (10, 8)) + 0.025 * _grain(rng, (h, w), 1.0))
    colour = _colour(rng, (0.82, 0.45, 0.48), (0.95, 0.58, 0.62))
    alpha = np.clip(inside + 0.5, 0.0, 1.0)  # anti-aliased edge
    _mix(img, colour * shade[..., None], alpha)
    return alpha, shade.astype(np.float32)


def _ectropion(
    rng: np.random.Generator,
    img: F32,
    x: F32,
    y: F32,
    *,
    os_: _Ellipse,
    cervix: _Ellipse,
    clip: F32,
) -> None:
    """Red granular columnar epithelium around the os (not a lesion)."""
    h, w = img.shape[:2]
    zone = _Ellipse(
        os_.cx,
        os_.cy,
        cervix.a * rng.uniform(0.25, 0.6),
        cervix.b * rng.uniform(0.2, 0.5),
        cervix.angle + rng.uniform(-0.3, 0.3),
    )
    u, v = zone.local(x, y)
    field = 1.0 - u * u - v * v + 0.35 * _noise(rng, (h, w), (14, 10))
    alpha = _smoothstep(field, -0.05, 0.25) * clip * rng.uniform(0.6, 0.95)
    granular = 0.88 + 0.12 * _grain(rng, (h, w), 1.6 * w / _WORK_WIDTH + 0.6)
    red = _colour(rng, (0.72, 0.16, 0.2), (0.85, 0.28, 0.3))
    _mix(img, red * (granular * (0.6 + 0.4 * img.mean(axis=2) / 0.7))[..., None], alpha)


def _lesion_field(
    rng: np.random.Generator, shape: tuple[int, int], os_: _Ellipse, cervix: _Ellipse
) -> F32 | None:
    """Union of blurred ellipses, most around or touching the os; positive inside a lesion."""
    n = int(rng.choice(4, p=[0.2, 0.4, 0.25, 0.15]))
    if n == 0:
        return None
    field = np.full(shape, -1.0, np.float32)
    jitter = _noise(rng, shape, (24, 18))
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


def _highlights(rng: np.random.Generator, shape: tuple[int, int], cervix: _Ellipse) -> F32:
    """Small sharp specular spots and streaks from the wet surface (not lesions)."""
    canvas = np.zeros(shape, np.float32)
    px = shape[1] / _WORK_WIDTH
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


def _speculum(rng: np.random.Generator, img: F32, x: F32, y: F32) -> F32:
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
        metal = (grey + sheen) * (1.0 + 0.04 * _noise(rng, (h, w), (40, 3)))
        tint = np.array([0.97, 1.0, rng.uniform(1.02, 1.1)], np.float32)
        _mix(img, metal[..., None] * tint, alpha)
        occluded = np.maximum(occluded, alpha)
    return occluded


def _camera(rng: np.random.Generator, img: F32, x: F32, y: F32, spots: F32) -> U8:
    """Vignetting, exposure, white balance, saturated highlights, blur, noise and JPEG."""
    h, w = img.shape[:2]
    cx, cy = w * rng.uniform(0.4, 0.6), h * rng.uniform(0.4, 0.6)
    r = np.sqrt((x - cx) ** 2 + (y - cy) ** 2) / (rng.uniform(0.5, 0.75) * math.hypot(w, h) / 2)
    img *= np.exp(-(r ** rng.uniform(2.5, 4.0)))[..., None]
    gains = np.exp(rng.normal(0.0, 0.05, 3)).astype(np.float32) * rng.uniform(0.8, 1.2)
    img = _f32(np.clip(img * gains, 0.0, 1.0) ** rng.uniform(0.85, 1.15))
    _mix(img, np.full(3, 1.3, np.float32), spots)  # above 1 so they clip like a sensor does
    if rng.random() < 0.35:
        img = _f32(cv2.GaussianBlur(img, (0, 0), rng.uniform(0.5, 1.4) * w / _WORK_WIDTH + 0.2))
    img += rng.standard_normal(img.shape, dtype=np.float32) * rng.uniform(0.004, 0.02)
    out: U8 = np.clip(img * 255.0 + 0.5, 0, 255).astype(np.uint8)
    if rng.random() < 0.7:  # compression artefacts, as in the camera's own JPEGs
        ok, buf = cv2.imencode(".jpg", out, [cv2.IMWRITE_JPEG_QUALITY, int(rng.integers(60, 95))])
        out = np.asarray(cv2.imdecode(buf, cv2.IMREAD_COLOR), np.uint8) if ok else out
    return out


def make_sample(rng: np.random.Generator, size: tuple[int, int] | None = None) -> SynthSample:
    """Draw one synthetic photo and its masks.

    ``size`` is (width, height); without it one of DEFAULT_SIZES is drawn. The same
    Generator state always gives the same bytes.
    """
    width, height = size or DEFAULT_SIZES[int(rng.integers(len(DEFAULT_SIZES)))]
    w = min(width, _WORK_WIDTH)
    h = max(1, round(height * w / width))
    x = np.arange(w, dtype=np.float32)[None, :] + np.float32(0.5)
    y = np.arange(h, dtype=np.float32)[:, None] + np.float32(0.5)
    frac, aspect = rng.uniform(0.09, 0.45), rng.uniform(0.7, 1.0)
    a = math.sqrt(frac * w * h / (math.pi * aspect))
    cx, cy, tilt = w * rng.uniform(0.38, 0.62), h * rng.uniform(0.4, 0.6), rng.uniform(-0.6, 0.6)
    cervix = _Ellipse(cx, cy, a, a * aspect, tilt)
    # the os: a small dark slit near the centre, roughly along the cervix's long axis
    os_x, os_y = cervix.point(rng.uniform(-0.12, 0.12), rng.uniform(-0.12, 0.12))
    os_a, tilt = cervix.a * rng.uniform(0.05, 0.13), tilt + rng.uniform(-0.4, 0.4)
    os_ = _Ellipse(os_x, os_y, os_a, os_a * rng.uniform(0.2, 0.6), tilt)

    # a real cervix is no perfect ellipse: wobble its rim a little
    inside = cervix.inside(x, y) + 0.025 * cervix.b * _noise(rng, (h, w), (6, 5))
    img = _walls(rng, x, y, cervix, inside)
    cervix_alpha, shade = _cervix(rng, img, x, y, cervix=cervix, inside=inside)
    if rng.random() < 0.65:
        _ectropion(rng, img, x, y, os_=os_, cervix=cervix, clip=cervix_alpha)
    lesion = _lesion_field(rng, (h, w), os_, cervix)
    if lesion is not None:  # dull, translucent white-pink; soft edge inside the mask only
        alpha = _smoothstep(lesion, -0.03, 0.17) * cervix_alpha
        alpha *= rng.uniform(0.55, 0.85) * (0.85 + 0.15 * _noise(rng, (h, w), (20, 15)))
        white = _colour(rng, (0.93, 0.84, 0.84), (0.97, 0.9, 0.9))
        _mix(img, white * (0.35 + 0.65 * shade)[..., None], alpha)
    os_alpha = _smoothstep(os_.inside(x, y), -1.0, 0.5 + 0.3 * os_.b)
    _mix(img, np.array([0.3, 0.07, 0.1], np.float32) * shade[..., None], os_alpha * 0.9)
    spots = _highlights(rng, (h, w), cervix)
    occluded = _speculum(rng, img, x, y)
    rgb = _camera(rng, img, x, y, spots * (1.0 - occluded))

    cervix_field = cervix_alpha * (1.0 - occluded)  # mask: > 0.5
    lesion_field = (
        np.minimum(lesion, 0.5 - os_alpha)
        if lesion is not None
        else np.full((h, w), -1.0, np.float32)
    )  # mask: > 0
    if (w, h) != (width, height):
        rgb = np.asarray(cv2.resize(rgb, (width, height), interpolation=cv2.INTER_LINEAR), np.uint8)
        cervix_field = cv2.resize(cervix_field, (width, height), interpolation=cv2.INTER_LINEAR)
        lesion_field = cv2.resize(lesion_field, (width, height), interpolation=cv2.INTER_LINEAR)
    cervix_mask: U8 = np.where(cervix_field > 0.5, np.uint8(255), np.uint8(0))
    lesion_mask: U8 = np.where(lesion_field > 0, cervix_mask, np.uint8(0))
    return SynthSample(np.ascontiguousarray(rgb), cervix_mask, lesion_mask)


def _write_atomic(path: Path, data: bytes) -> None:
    """Write via a temporary name in the same folder so readers never see a partial file."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_bytes(data)
        tmp.replace(path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _encode(ext: str, image: U8, params: list[int] | None = None) -> bytes:
    ok, buf = cv2.imencode(ext, image, params or [])
    if not ok:
        raise OSError(f"OpenCV could not encode a {ext} image")
    return bytes(buf.tobytes())


def sample_folders(out: Path) -> dict[str, Path]:
    """The dataset's three folders (created): images/, cervix/ and lesion/."""
    folders = {name: out / name for name in ("images", "cervix", "lesion")}
    for folder in folders.values():
        folder.mkdir(parents=True, exist_ok=True)
    return folders


def write_sample(folders: dict[str, Path], stem: str, sample: SynthSample) -> None:
    """The photo as JPEG quality 92 and both masks as single-channel PNGs, atomically."""
    bgr = np.asarray(cv2.cvtColor(sample.rgb, cv2.COLOR_RGB2BGR), np.uint8)
    _write_atomic(
        folders["images"] / f"{stem}.jpg", _encode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, 92])
    )
    _write_atomic(folders["cervix"] / f"{stem}.png", _encode(".png", sample.cervix_mask))
    _write_atomic(folders["lesion"] / f"{stem}.png", _encode(".png", sample.lesion_mask))


def write_dataset(
    out: Path,
    count: int,
    *,
    seed: int = 0,
    size: tuple[int, int] | None = None,
    start: int = 0,
    on_progress: Callable[[int], None] | None = None,
) -> list[str]:
    """Write ``count`` samples: out/images/<stem>.jpg, out/cervix/<stem>.png, out/lesion/<stem>.png.

    Stems are ``synth_<index:05d>`` with index = start + i. Each sample has its own Generator
    seeded with ``[seed, index]``, so any sample can be regenerated alone and does not depend
    on ``count``. Masks are single-channel 8-bit PNGs (0/255), photos JPEG quality 92; every
    file is written atomically. ``on_progress`` gets the number of samples done so far.
    """
    folders = sample_folders(out)
    stems: list[str] = []
    for i in range(count):
        index = start + i
        sample = make_sample(np.random.default_rng([seed, index]), size)
        stem = f"synth_{index:05d}"
        write_sample(folders, stem, sample)
        stems.append(stem)
        if on_progress is not None:
            on_progress(i + 1)
    return stems


def parse_size(text: str) -> tuple[int, int]:
    """Parse ``'640x480'`` into (640, 480); each side must be within 32..10000."""
    match = _SIZE_RE.match(text)
    if match is None:
        raise ValueError(f"size {text!r} is not WIDTHxHEIGHT, e.g. 640x480")
    width, height = int(match.group(1)), int(match.group(2))
    if not (32 <= width <= 10000 and 32 <= height <= 10000):
        raise ValueError(f"size {text!r} out of range: each side must be 32..10000 pixels")
    return width, height
