"""Synthetic colposcopy-like photos with exact ground-truth masks.

Used for demos, tests and to train the demo models. A scene is painted at a working
resolution (at most ``WORK_WIDTH`` wide) as soft alpha layers (``tools.synth_layers``),
then upscaled; the masks are thresholds of the same alpha fields upscaled the same way, so
mask edges sit where the photo's colour transitions are. Everything random comes from the
caller's Generator, so a seed gives byte-identical output. This module composes a sample
and writes sets of them (the layout synth-v2 writes too).
"""

from __future__ import annotations

import dataclasses
import math
import re
from typing import TYPE_CHECKING

import cv2
import numpy as np
import numpy.typing as npt

from cervixbatch.outputs.atomic import PLAIN_MODE, write_atomic
from cervixbatch.tools.synth.layers import (
    U8,
    WORK_WIDTH,
    Ellipse,
    camera,
    cervix_dome,
    ectropion,
    highlights,
    mix,
    noise,
    random_colour,
    random_lesion_field,
    smoothstep,
    speculum,
    walls,
)

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
    "write_samples",
]

DEFAULT_SIZES: tuple[tuple[int, int], ...] = (
    (1600, 1200),
    (2048, 1536),
    (2592, 1944),
    (3264, 2448),
    (4128, 3096),
)
_SIZE_RE = re.compile(r"^\s*(\d+)\s*[xX]\s*(\d+)\s*$")


@dataclasses.dataclass(frozen=True, slots=True)
class SynthSample:
    """One synthetic photo (H x W x 3 uint8 RGB) and its 0/255 masks (H x W uint8)."""

    rgb: npt.NDArray[np.uint8]
    cervix_mask: npt.NDArray[np.uint8]
    lesion_mask: npt.NDArray[np.uint8]  # always a subset of cervix_mask
    features: frozenset[str] = frozenset()  # synth-v2's settings shown (see synth_v2.plan)


def make_sample(rng: np.random.Generator, size: tuple[int, int] | None = None) -> SynthSample:
    """Draw one synthetic photo and its masks.

    ``size`` is (width, height); without it one of DEFAULT_SIZES is drawn. The same
    Generator state always gives the same bytes.
    """
    width, height = size or DEFAULT_SIZES[int(rng.integers(len(DEFAULT_SIZES)))]
    w = min(width, WORK_WIDTH)
    h = max(1, round(height * w / width))
    x = np.arange(w, dtype=np.float32)[None, :] + np.float32(0.5)
    y = np.arange(h, dtype=np.float32)[:, None] + np.float32(0.5)
    frac, aspect = rng.uniform(0.09, 0.45), rng.uniform(0.7, 1.0)
    a = math.sqrt(frac * w * h / (math.pi * aspect))
    cx, cy, tilt = w * rng.uniform(0.38, 0.62), h * rng.uniform(0.4, 0.6), rng.uniform(-0.6, 0.6)
    cervix = Ellipse(cx, cy, a, a * aspect, tilt)
    # the os: a small dark slit near the centre, roughly along the cervix's long axis
    os_x, os_y = cervix.point(rng.uniform(-0.12, 0.12), rng.uniform(-0.12, 0.12))
    os_a, tilt = cervix.a * rng.uniform(0.05, 0.13), tilt + rng.uniform(-0.4, 0.4)
    os_ = Ellipse(os_x, os_y, os_a, os_a * rng.uniform(0.2, 0.6), tilt)

    # a real cervix is no perfect ellipse: wobble its rim a little
    inside = cervix.inside(x, y) + 0.025 * cervix.b * noise(rng, (h, w), (6, 5))
    img = walls(rng, x, y, cervix, inside)
    cervix_alpha, shade = cervix_dome(rng, img, x, y, cervix=cervix, inside=inside)
    if rng.random() < 0.65:
        ectropion(rng, img, x, y, os_=os_, cervix=cervix, clip=cervix_alpha)
    lesion = random_lesion_field(rng, (h, w), os_, cervix)
    if lesion is not None:  # dull, translucent white-pink; soft edge inside the mask only
        alpha = smoothstep(lesion, -0.03, 0.17) * cervix_alpha
        alpha *= rng.uniform(0.55, 0.85) * (0.85 + 0.15 * noise(rng, (h, w), (20, 15)))
        white = random_colour(rng, (0.93, 0.84, 0.84), (0.97, 0.9, 0.9))
        mix(img, white * (0.35 + 0.65 * shade)[..., None], alpha)
    os_alpha = smoothstep(os_.inside(x, y), -1.0, 0.5 + 0.3 * os_.b)
    mix(img, np.array([0.3, 0.07, 0.1], np.float32) * shade[..., None], os_alpha * 0.9)
    spots = highlights(rng, (h, w), cervix)
    occluded = speculum(rng, img, x, y)
    rgb = camera(rng, img, x, y, spots * (1.0 - occluded))

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
    """The photo as JPEG quality 92 and both masks as single-channel PNGs, each written
    atomically (``outputs.atomic``: a reader, or a crash, never leaves half a file)."""
    bgr = np.asarray(cv2.cvtColor(sample.rgb, cv2.COLOR_RGB2BGR), np.uint8)
    files = {
        folders["images"] / f"{stem}.jpg": _encode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, 92]),
        folders["cervix"] / f"{stem}.png": _encode(".png", sample.cervix_mask),
        folders["lesion"] / f"{stem}.png": _encode(".png", sample.lesion_mask),
    }
    for path, data in files.items():
        write_atomic(path, data, mode=PLAIN_MODE)


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
    return write_samples(
        out,
        count,
        lambda rng: make_sample(rng, size),
        seed=seed,
        start=start,
        on_progress=on_progress,
    )


def write_samples(
    out: Path,
    count: int,
    draw: Callable[[np.random.Generator], SynthSample],
    *,
    seed: int = 0,
    start: int = 0,
    on_progress: Callable[[int], None] | None = None,
    on_sample: Callable[[str, SynthSample], None] | None = None,
) -> list[str]:
    """The writer both generations share: sample ``start + i`` drawn by ``draw`` from a
    Generator seeded ``[seed, index]``, written under the stem ``synth_<index:05d>``;
    ``on_sample`` sees each stem and sample once written, ``on_progress`` the count done."""
    folders = sample_folders(out)
    stems: list[str] = []
    for i in range(count):
        index = start + i
        sample = draw(np.random.default_rng([seed, index]))
        stem = f"synth_{index:05d}"
        write_sample(folders, stem, sample)
        stems.append(stem)
        if on_sample is not None:
            on_sample(stem, sample)
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
