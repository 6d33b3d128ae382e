"""Augmentation that matches how colposcopy photos differ: scale from close-up to full
view, colour casts (magenta to orange), grey and tinted renderings, blur, sensor noise
and JPEG compression — on top of the seed's flips, rotation, shift and shear.

Works on the model-size float inputs that ``tools.dataset`` prepares (H x W x C, 0..1),
so it costs little next to a training step.
"""

from __future__ import annotations

import math

import cv2
import numpy as np
import numpy.typing as npt

from cervixbatch.tools.training.dataset import Augmenter

__all__ = ["ColposcopyAugmenter"]

Floats = npt.NDArray[np.float32]


class ColposcopyAugmenter(Augmenter):
    """The seed's paired geometric augmentation with a wide scale range, then photometric
    changes of the image alone. ``zoom_out`` < 1 shrinks a close-up towards a full view
    (the border filled dark, as a colposcope's field of view is)."""

    def __init__(
        self,
        seed: int,
        *,
        zoom_out: float = 0.6,
        zoom_in: float = 1.25,
        grey_chance: float = 0.1,
    ) -> None:
        super().__init__(seed, brightness=0.0, colour=0.0)
        self.zoom_out = zoom_out
        self.zoom_in = zoom_in
        self.grey_chance = grey_chance

    def __call__(self, image: Floats, mask: Floats) -> tuple[Floats, Floats]:
        """One random variant of (image, mask); the mask stays binary."""
        rng = self.rng
        height, width = image.shape[:2]
        image, mask = self._flipped(image, mask)
        scale = math.exp(rng.uniform(math.log(self.zoom_out), math.log(self.zoom_in)))
        matrix = self._affine(width, height)
        # then scaled about the centre: p -> c + scale * (p - c)
        matrix *= scale
        matrix[:, 2] += (1.0 - scale) * np.array([width / 2, height / 2])
        border = cv2.BORDER_CONSTANT if scale < 1.0 else cv2.BORDER_REFLECT_101
        image, mask = self._warped(image, mask, matrix, border)
        return self._photometric(image.astype(np.float32)), (mask > 0.5).astype(np.float32)

    def _photometric(self, image: Floats) -> Floats:
        rng = self.rng
        channels = image.shape[-1]
        if channels == 3:
            t = rng.normal(0.0, 0.45)  # < 0 magenta/violet, > 0 orange
            cast = (
                (1 + 0.06 * -t, 1 - 0.14 * -t, 1 + 0.16 * -t)
                if t < 0
                else (1 + 0.1 * t, 1 + 0.02 * t, 1 - 0.3 * t)
            )
            image = image * np.asarray(cast, np.float32) * np.exp(rng.normal(0, 0.04, 3))
            if rng.random() < self.grey_chance:  # grey or tinted, as filters render it
                weights = rng.dirichlet((1.0, 3.0, 1.0)).astype(np.float32)
                luma = image @ weights
                tint = rng.uniform(0.5, 1.0, 3).astype(np.float32)
                tint /= tint.max()
                image = luma[..., None] * tint
        image = image * np.float32(math.exp(rng.normal(0.0, 0.15)))
        image = np.clip(image, 0.0, 1.0) ** np.float32(math.exp(rng.normal(0.0, 0.15)))
        if rng.random() < 0.3:
            image = cv2.GaussianBlur(image, (0, 0), rng.uniform(0.4, 1.5)).reshape(image.shape)
        if rng.random() < 0.5:
            noise = rng.standard_normal(image.shape).astype(np.float32)
            image = image + noise * np.float32(rng.uniform(0.005, 0.03))
        image = np.clip(image, 0.0, 1.0).astype(np.float32)
        if rng.random() < 0.3:
            image = _jpeg(image, int(rng.integers(15, 80)))
        return image


def _jpeg(image: Floats, quality: int) -> Floats:
    """The image through a JPEG round trip at ``quality``."""
    as_bytes = np.clip(image * 255.0 + 0.5, 0, 255).astype(np.uint8)
    ok, buf = cv2.imencode(".jpg", as_bytes, [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        return image
    decoded = cv2.imdecode(buf, cv2.IMREAD_UNCHANGED)
    if decoded is None:
        return image
    decoded = decoded.reshape(image.shape)
    return (decoded.astype(np.float32) * np.float32(1.0 / 255.0)).astype(np.float32)
