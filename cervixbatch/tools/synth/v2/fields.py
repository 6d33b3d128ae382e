"""Painting primitives shared by the synth-v2 layers: the pixel grid, ellipses, noise.

Everything is float32 at the working resolution. Sizes are written in *reference pixels*
(a 1024-pixel-wide frame) and scaled with ``Grid.px``, so a scene looks the same at any
working width.
"""

from __future__ import annotations

import dataclasses

import cv2
import numpy as np
import numpy.typing as npt

from cervixbatch.tools.synth.layers import Ellipse as FirstEllipse
from cervixbatch.tools.synth.layers import f32

__all__ = [
    "F32",
    "U8",
    "Ellipse",
    "Grid",
    "blur",
    "grain",
    "lines",
    "mix",
    "planar",
    "smooth_noise",
    "smoothstep",
]

F32 = npt.NDArray[np.float32]
U8 = npt.NDArray[np.uint8]
REFERENCE_WIDTH = 1024


@dataclasses.dataclass(frozen=True, slots=True)
class Grid:
    """Pixel-centre coordinates of the working frame (broadcastable row and column)."""

    width: int
    height: int
    x: F32  # shape (1, width)
    y: F32  # shape (height, 1)

    @classmethod
    def of(cls, width: int, height: int) -> Grid:
        """The grid of a ``width`` × ``height`` frame."""
        x = np.arange(width, dtype=np.float32)[None, :] + np.float32(0.5)
        y = np.arange(height, dtype=np.float32)[:, None] + np.float32(0.5)
        return cls(width, height, x, y)

    @property
    def shape(self) -> tuple[int, int]:
        """(height, width)."""
        return self.height, self.width

    @property
    def px(self) -> float:
        """Working pixels per reference pixel."""
        return self.width / REFERENCE_WIDTH


@dataclasses.dataclass(frozen=True, slots=True)
class Ellipse(FirstEllipse):
    """A rotated ellipse in working pixels, its distance computed in float32 throughout
    (the first generation's stays as it was, so its photos keep their bytes)."""

    def inside(self, x: F32, y: F32) -> F32:
        """Approximate signed distance in pixels, positive inside (exact at the edge)."""
        return self.inside_local(*self.local(x, y))

    def inside_local(self, u: F32, v: F32) -> F32:
        """``inside`` from local coordinates already computed."""
        ua, vb = u * np.float32(1.0 / self.a), v * np.float32(1.0 / self.b)
        grad = np.sqrt(ua * ua + vb * vb)
        grad *= 2.0
        grad += 1e-6
        return f32((1.0 - u * u - v * v) / grad)

    def scaled(self, k: float) -> Ellipse:
        """The same ellipse with both semi-axes times ``k``."""
        return Ellipse(self.cx, self.cy, self.a * k, self.b * k, self.angle)


def smoothstep(x: F32, lo: float, hi: float) -> F32:
    """0 below ``lo``, 1 above ``hi``, a smooth cubic between."""
    t = (x - np.float32(lo)) * np.float32(1.0 / (hi - lo))
    np.clip(t, 0.0, 1.0, out=t)
    out = t * t
    t *= -2.0
    t += 3.0
    out *= t
    return f32(out)


def smooth_noise(rng: np.random.Generator, shape: tuple[int, int], cells: tuple[int, int]) -> F32:
    """Smooth noise of about unit spread: a coarse random grid (``cells`` = columns, rows)
    upscaled bicubically to an eighth of the frame, then linearly to all of it (a cubic
    resize of the whole frame costs 5x more and looks the same at these feature sizes)."""
    cols, rows = max(1, cells[0]), max(1, cells[1])
    grid = rng.standard_normal((rows + 3, cols + 3), dtype=np.float32)
    height, width = shape
    full_w, full_h = width * (cols + 3) // cols, height * (rows + 3) // rows
    step = max(1, min(8, width // (4 * cols), height // (4 * rows)))
    big = cv2.resize(grid, (-(-full_w // step), -(-full_h // step)), interpolation=cv2.INTER_CUBIC)
    if step > 1:
        big = cv2.resize(big, (big.shape[1] * step, big.shape[0] * step))
    out = big[:height, :width]
    return f32(out * (1.0 / (float(out[::7, ::7].std()) + 1e-6)))


def grain(rng: np.random.Generator, shape: tuple[int, int], sigma: float) -> F32:
    """Fine granular noise of about unit spread (papillae, mucosal texture).

    Blurred uniform bytes: after the blur it is as Gaussian as normal draws would be, and
    drawing bytes costs a tenth of drawing normals.
    """
    height, width = shape
    raw = np.frombuffer(rng.bytes(height * width), np.uint8).reshape(shape).astype(np.float32)
    out = cv2.GaussianBlur(raw, (0, 0), max(0.3, sigma))
    out -= float(out[::5, ::5].mean())
    out *= 1.0 / (float(out[::5, ::5].std()) + 1e-6)
    return f32(out)


def lines(field: F32, width: float) -> F32:
    """Thin lines along the zero level of a smooth ``field``: 1 on the line, 0 away.

    The zero set of band-limited noise is a network of curving, branching lines, the
    look of fine vessels and of a mosaic's borders.
    """
    t = field * np.float32(1.0 / width)
    t *= t
    return f32(np.exp(-t))


def planar(colour: npt.ArrayLike) -> F32:
    """An RGB triple shaped (3, 1, 1), to broadcast over a planar (3, H, W) image."""
    return f32(colour).reshape(3, 1, 1)


def mix(img: F32, colour: npt.ArrayLike, alpha: F32) -> None:
    """Alpha-composite ``colour`` (an RGB triple or a planar image) over the planar
    (3, H, W) ``img`` in place. Planar, because broadcasting one (H, W) alpha over the
    leading axis is 3-4x faster in NumPy than over a trailing channel axis."""
    c = f32(colour)
    tmp = (c.reshape(3, 1, 1) if c.ndim == 1 else c) - img
    tmp *= alpha
    img += tmp


def blur(img: F32, sigma: float) -> F32:
    """A planar image blurred plane by plane."""
    return np.stack([cv2.GaussianBlur(plane, (0, 0), sigma) for plane in img])
