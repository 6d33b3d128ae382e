"""Labelled data on disk: pairing images with masks, preparing samples, augmenting them.

The preparation is the pipeline's own preprocessing (``pipeline.cervix_input``,
``crop_region``, ``lesion_input``), so a model is trained on exactly what inference
feeds it. The lesion stage crops with the ground-truth cervix mask and the same margin
that inference uses with the predicted one.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np
import numpy.typing as npt

from cervixbatch.errors import CervixbatchError, InputRejected
from cervixbatch.imaging.frames import ReadLimits
from cervixbatch.imaging.reader import read_input
from cervixbatch.pipeline import cervix_input, crop_region, downscale, lesion_input

__all__ = [
    "IMAGE_SUFFIXES",
    "Augmenter",
    "LabelledImage",
    "fingerprint",
    "load_mask",
    "pair_images",
    "prepare_cervix_sample",
    "prepare_lesion_sample",
]

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".dcm", ".tif", ".tiff", ".bmp", ".webp")
Floats = npt.NDArray[np.float32]


@dataclasses.dataclass(frozen=True, slots=True)
class LabelledImage:
    """One image with its masks (single-channel 8-bit PNGs of the same stem)."""

    stem: str
    image: Path
    mask: Path | None  # the target of the stage being trained / the lesion mask
    cervix_mask: Path | None = None


def pair_images(
    images: Path, masks: Path | None, cervix_masks: Path | None = None
) -> list[LabelledImage]:
    """Every image in ``images`` with a mask of the same stem in each mask folder given."""
    if not images.is_dir():
        raise CervixbatchError(f"image folder {images} does not exist")
    pairs = []
    for image in sorted(images.iterdir()):
        if image.suffix.lower() not in IMAGE_SUFFIXES or not image.is_file():
            continue
        mask = masks / f"{image.stem}.png" if masks else None
        cervix = cervix_masks / f"{image.stem}.png" if cervix_masks else None
        if (mask is not None and not mask.is_file()) or (
            cervix is not None and not cervix.is_file()
        ):
            continue
        pairs.append(LabelledImage(image.stem, image, mask, cervix))
    if not pairs:
        raise CervixbatchError(
            f"no image in {images} has a mask of the same stem (a single-channel PNG) in "
            f"{', '.join(str(p) for p in (masks, cervix_masks) if p)}"
        )
    return pairs


def fingerprint(pairs: Sequence[LabelledImage]) -> str:
    """A sha256 over every file's name and bytes: which data a model was trained on."""
    digest = hashlib.sha256()
    for pair in pairs:
        for path in (pair.image, pair.mask, pair.cervix_mask):
            if path is None:
                continue
            digest.update(path.name.encode())
            digest.update(hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()


def load_mask(path: Path, size_hw: tuple[int, int]) -> npt.NDArray[np.uint8]:
    """A 0/255 mask PNG at the given (height, width) (the image's working resolution)."""
    mask = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
    if mask is None:
        raise CervixbatchError(f"mask {path} is not a readable single-channel image")
    if mask.shape != size_hw:
        mask = cv2.resize(mask, (size_hw[1], size_hw[0]), interpolation=cv2.INTER_AREA)
    return np.where(mask >= 128, 255, 0).astype(np.uint8)


def _first_frame(path: Path, min_side: int) -> npt.NDArray[np.uint8]:
    try:
        decoded = read_input(path, ReadLimits(), min_working_side=min_side)
    except InputRejected as exc:
        raise CervixbatchError(f"training image {path.name}: {exc}") from exc
    return decoded.frames[0].rgb


def _mask_input(mask: npt.NDArray[np.uint8], size: tuple[int, int]) -> Floats:
    small = downscale(mask, (size[1], size[0]))
    return (small >= 128).astype(np.float32)[..., None]


def prepare_cervix_sample(
    pair: LabelledImage, size: tuple[int, int], channels: int
) -> tuple[Floats, Floats]:
    """Stage-1 (image, mask) at the model's size, before augmentation."""
    assert pair.mask is not None
    rgb = _first_frame(pair.image, 4 * max(size))
    mask = load_mask(pair.mask, rgb.shape[:2])
    return cervix_input(rgb, size, channels), _mask_input(mask, size)


def prepare_lesion_sample(
    pair: LabelledImage, size: tuple[int, int], channels: int, margin: float
) -> tuple[Floats, Floats]:
    """Stage-2 (crop, lesion mask) cut with the true cervix mask's grown box."""
    assert pair.mask is not None
    assert pair.cervix_mask is not None
    rgb = _first_frame(pair.image, 3 * max(size))
    cervix = load_mask(pair.cervix_mask, rgb.shape[:2])
    lesion = load_mask(pair.mask, rgb.shape[:2])
    box = crop_region(cervix, margin)
    if box is None:  # no cervix in this photo: stage 2 never sees it
        box_rgb, box_lesion = rgb, np.zeros(rgb.shape[:2], dtype=np.uint8)
    else:
        box_rgb = rgb[box.y0 : box.y1, box.x0 : box.x1]
        box_lesion = lesion[box.y0 : box.y1, box.x0 : box.x1]
    return lesion_input(box_rgb, size, channels), _mask_input(box_lesion, size)


class Augmenter:
    """Paired geometric augmentation (flip, rotation, shift, zoom, shear — as the seed's
    ImageDataGenerator) plus brightness and colour jitter on the image alone."""

    def __init__(
        self,
        seed: int,
        *,
        rotation_deg: float = 20.0,
        shift: float = 0.1,
        zoom: float = 0.15,
        shear_deg: float = 8.0,
        brightness: float = 0.15,
        colour: float = 0.08,
    ) -> None:
        self.rng = np.random.default_rng(seed)
        self.rotation_deg = rotation_deg
        self.shift = shift
        self.zoom = zoom
        self.shear_deg = shear_deg
        self.brightness = brightness
        self.colour = colour

    def __call__(self, image: Floats, mask: Floats) -> tuple[Floats, Floats]:
        """One random variant of (image, mask); the mask stays binary."""
        rng = self.rng
        height, width = image.shape[:2]
        if rng.random() < 0.5:
            image, mask = image[:, ::-1], mask[:, ::-1]
        if rng.random() < 0.5:
            image, mask = image[::-1], mask[::-1]
        matrix = self._affine(width, height)
        reflect = cv2.BORDER_REFLECT_101
        image = cv2.warpAffine(
            np.ascontiguousarray(image),
            matrix,
            (width, height),
            flags=cv2.INTER_LINEAR,
            borderMode=reflect,
        )
        mask = cv2.warpAffine(
            np.ascontiguousarray(mask),
            matrix,
            (width, height),
            flags=cv2.INTER_NEAREST,
            borderMode=reflect,
        )
        if image.ndim == 2:
            image = image[..., None]
        if mask.ndim == 2:
            mask = mask[..., None]
        gain = 1.0 + rng.uniform(-self.brightness, self.brightness)
        tint = 1.0 + rng.uniform(-self.colour, self.colour, size=image.shape[-1])
        image = np.clip(image * gain * tint, 0.0, 1.0).astype(np.float32)
        return image, (mask > 0.5).astype(np.float32)

    def _affine(self, width: int, height: int) -> npt.NDArray[np.float64]:
        rng = self.rng
        angle = rng.uniform(-self.rotation_deg, self.rotation_deg)
        scale = 1.0 + rng.uniform(-self.zoom, self.zoom)
        matrix = cv2.getRotationMatrix2D((width / 2, height / 2), angle, scale)
        shear = np.tan(np.radians(rng.uniform(-self.shear_deg, self.shear_deg)))
        matrix[0, 1] += shear
        matrix[0, 2] -= shear * height / 2
        matrix[0, 2] += rng.uniform(-self.shift, self.shift) * width
        matrix[1, 2] += rng.uniform(-self.shift, self.shift) * height
        return matrix
