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
from cervixbatch.segmentation.two_stage import cervix_input, crop_region, downscale, lesion_input
from cervixbatch.tools.annotations.outline import Filled, fill_outline, scaled_close_px
from cervixbatch.tools.annotations.reading import check_against_image, read_annotations
from cervixbatch.tools.annotations.shapes import CERVIX, LESION, Labels, Problem, Shape, rasterise

__all__ = [
    "IMAGE_SUFFIXES",
    "MASK_KINDS",
    "Augmenter",
    "LabelledImage",
    "Outline",
    "ShapeTruth",
    "fingerprint",
    "labelled_images",
    "load_mask",
    "pair_images",
    "prepare_cervix_sample",
    "prepare_lesion_sample",
]

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".dcm", ".tif", ".tiff", ".bmp", ".webp")
Floats = npt.NDArray[np.float32]


@dataclasses.dataclass(frozen=True, slots=True)
class ShapeTruth:
    """A mask drawn from annotation shapes (boxes, polygons) at the image's full size."""

    shapes: tuple[Shape, ...]
    target: str  # cervix | lesion
    source: Path  # the annotation file, for the data fingerprint and messages


@dataclasses.dataclass(frozen=True, slots=True)
class Outline:
    """A mask PNG whose pixels are a drawn outline (``--mask-kind outline``): its region is
    what :func:`cervixbatch.tools.annotations.outline.fill_outline` makes of the stroke."""

    path: Path

    def stroke(self) -> npt.NDArray[np.uint8]:
        """The stroke as drawn (0/255, the PNG's own size)."""
        stroke = cv2.imread(str(self.path), cv2.IMREAD_GRAYSCALE)
        if stroke is None:
            raise CervixbatchError(f"mask {self.path.name} is not a readable single-channel image")
        return np.where(stroke > 0, 255, 0).astype(np.uint8)

    def filled(self) -> Filled:
        """The region the stroke stands for, gaps closed in proportion to the PNG's size."""
        stroke = self.stroke()
        return fill_outline(stroke, close_px=scaled_close_px(stroke.shape))


MaskSource = Path | ShapeTruth | Outline
MASK_KINDS = ("region", "outline")


@dataclasses.dataclass(frozen=True, slots=True)
class LabelledImage:
    """One image with its truth: mask PNGs of the same stem, or annotation shapes."""

    stem: str
    image: Path
    mask: MaskSource | None  # the target of the stage being trained / the lesion mask
    cervix_mask: MaskSource | None = None


def pair_images(
    images: Path,
    masks: Path | None,
    cervix_masks: Path | None = None,
    *,
    allow_empty: bool = False,
    mask_kind: str = "region",
) -> list[LabelledImage]:
    """Every image in ``images`` with a mask of the same stem in each mask folder given;
    with ``mask_kind`` "outline" the ``masks`` are strokes (see :class:`Outline`)."""
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
        truth: MaskSource | None = mask
        if mask is not None and mask_kind == "outline":
            truth = Outline(mask)
        pairs.append(LabelledImage(image.stem, image, truth, cervix))
    if not pairs and not allow_empty:
        raise CervixbatchError(
            f"no image in {images} has a mask of the same stem (a single-channel PNG) in "
            f"{', '.join(str(p) for p in (masks, cervix_masks) if p)}"
        )
    return pairs


def labelled_images(
    images: Path,
    masks: Path | None,
    cervix_masks: Path | None,
    annotations: Sequence[Path],
    labels: Labels,
    *,
    target: str,
    need_cervix: bool,
    require_target: bool = True,
    mask_kind: str = "region",
) -> tuple[list[LabelledImage], list[Problem]]:
    """Images with their truth from mask folders and annotation files, and what was skipped.

    ``target`` is the stage's truth (cervix or lesion); with ``need_cervix`` (the lesion
    stage, evaluation) an image also needs cervix truth. Mask folders win over
    annotations for the same image. An image needs shapes of the target, except that the
    lesion truth may be empty (a photo without lesion) when the cervix is annotated and
    its file annotates lesions at all; an image from a file without any lesion shape has
    no lesion truth (``mask`` None), kept only without ``require_target`` (evaluation).
    An outline whose side the rule cannot decide is such a missing truth too.
    """
    pairs: list[LabelledImage] = []
    problems: list[Problem] = []
    if masks is not None or cervix_masks is not None:
        pairs = pair_images(
            images, masks, cervix_masks, allow_empty=bool(annotations), mask_kind=mask_kind
        )
        pairs = _decided(pairs, problems, keep=not require_target)
    if not annotations:
        return pairs, problems
    taken = {pair.image.resolve() for pair in pairs}
    found, problems = read_annotations(annotations, images, labels)
    root = images.resolve()
    annotates_target = {item.source for item in found if item.has(target)}
    for item in found:
        if item.image.resolve() in taken:
            continue
        has_cervix, has_target = item.has(CERVIX), item.has(target)
        if not (has_target or (target == LESION and has_cervix)):
            continue
        if need_cervix and not has_cervix:
            continue
        known = item.source in annotates_target
        if require_target and not known:
            continue
        reason = check_against_image(item)
        if reason is not None:
            problems.append(Problem(item.source, item.entry, reason))
            continue
        taken.add(item.image.resolve())
        image = item.image.resolve()
        stem = str(image.relative_to(root)) if image.is_relative_to(root) else image.name
        pairs.append(
            LabelledImage(
                stem,
                item.image,
                ShapeTruth(item.shapes, target, item.source) if known else None,
                ShapeTruth(item.shapes, CERVIX, item.source) if need_cervix else None,
            )
        )
    if not pairs:
        listed = "; ".join(str(p) for p in problems[:5]) or "no annotation names an image"
        raise CervixbatchError(f"no usable labelled image in {images} ({listed})")
    return pairs, problems


def _decided(
    pairs: list[LabelledImage], problems: list[Problem], *, keep: bool
) -> list[LabelledImage]:
    """Pairs whose outline the rule cannot fill lose their truth (``keep``) or are skipped."""
    out = []
    for pair in pairs:
        if isinstance(pair.mask, Outline) and not pair.mask.filled().usable:
            reason = "outline undecided (no side of the stroke can be chosen; docs/annotations.md)"
            problems.append(Problem(pair.mask.path, "", reason))
            if keep:
                out.append(dataclasses.replace(pair, mask=None))
            continue
        out.append(pair)
    return out


def _source_bytes(source: MaskSource) -> tuple[str, bytes]:
    if isinstance(source, Outline):
        return source.path.name, b"outline:" + source.path.read_bytes()
    if isinstance(source, Path):
        return source.name, source.read_bytes()
    points = repr(
        [(s.target, s.kind, s.points) for s in source.shapes if s.target == source.target]
    )
    return source.source.name, points.encode()


def fingerprint(pairs: Sequence[LabelledImage]) -> str:
    """A sha256 over every file's name and bytes: which data a model was trained on."""
    digest = hashlib.sha256()
    for pair in pairs:
        for source in (pair.image, pair.mask, pair.cervix_mask):
            if source is None:
                continue
            name, data = _source_bytes(source)
            digest.update(name.encode())
            digest.update(hashlib.sha256(data).digest())
    return digest.hexdigest()


def load_mask(
    source: MaskSource, size_hw: tuple[int, int], full_hw: tuple[int, int] | None = None
) -> npt.NDArray[np.uint8]:
    """A 0/255 mask at the given (height, width) (the image's working resolution).

    A PNG is read and resized; annotation shapes are drawn at the image's full size
    ``full_hw`` (polygons filled at full resolution), then resized the same way.
    """
    mask: npt.NDArray[np.uint8] | None
    if isinstance(source, Outline):
        mask = source.filled().region
    elif isinstance(source, ShapeTruth):
        mask = rasterise(source.shapes, source.target, full_hw or size_hw)
    else:
        mask = cv2.imread(str(source), cv2.IMREAD_GRAYSCALE)
    if mask is None:
        raise CervixbatchError(f"mask {source} is not a readable single-channel image")
    if mask.shape != size_hw:
        mask = cv2.resize(mask, (size_hw[1], size_hw[0]), interpolation=cv2.INTER_AREA)
    return np.where(mask >= 128, 255, 0).astype(np.uint8)


def _first_frame(path: Path, min_side: int) -> tuple[npt.NDArray[np.uint8], tuple[int, int]]:
    """The working-resolution RGB and the full (height, width) of an image's first frame."""
    try:
        decoded = read_input(path, ReadLimits(), min_working_side=min_side)
    except InputRejected as exc:
        raise CervixbatchError(f"training image {path.name}: {exc}") from exc
    frame = decoded.frames[0]
    return frame.rgb, frame.full_size


def _mask_input(mask: npt.NDArray[np.uint8], size: tuple[int, int]) -> Floats:
    small = downscale(mask, (size[1], size[0]))
    return (small >= 128).astype(np.float32)[..., None]


def prepare_cervix_sample(
    pair: LabelledImage, size: tuple[int, int], channels: int
) -> tuple[Floats, Floats]:
    """Stage-1 (image, mask) at the model's size, before augmentation."""
    assert pair.mask is not None
    rgb, full = _first_frame(pair.image, 4 * max(size))
    mask = load_mask(pair.mask, rgb.shape[:2], full)
    return cervix_input(rgb, size, channels), _mask_input(mask, size)


def prepare_lesion_sample(
    pair: LabelledImage, size: tuple[int, int], channels: int, margin: float
) -> tuple[Floats, Floats]:
    """Stage-2 (crop, lesion mask) cut with the true cervix mask's grown box."""
    assert pair.mask is not None
    assert pair.cervix_mask is not None
    rgb, full = _first_frame(pair.image, 3 * max(size))
    cervix = load_mask(pair.cervix_mask, rgb.shape[:2], full)
    lesion = load_mask(pair.mask, rgb.shape[:2], full)
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
        image, mask = self._flipped(image, mask)
        matrix = self._affine(width, height)
        image, mask = self._warped(image, mask, matrix, cv2.BORDER_REFLECT_101)
        gain = 1.0 + rng.uniform(-self.brightness, self.brightness)
        tint = 1.0 + rng.uniform(-self.colour, self.colour, size=image.shape[-1])
        image = np.clip(image * gain * tint, 0.0, 1.0).astype(np.float32)
        return image, (mask > 0.5).astype(np.float32)

    def _flipped(self, image: Floats, mask: Floats) -> tuple[Floats, Floats]:
        """Left-right, then upside down, each with even odds (two draws, always)."""
        if self.rng.random() < 0.5:
            image, mask = image[:, ::-1], mask[:, ::-1]
        if self.rng.random() < 0.5:
            image, mask = image[::-1], mask[::-1]
        return image, mask

    @staticmethod
    def _warped(
        image: Floats, mask: Floats, matrix: npt.NDArray[np.float64], border: int
    ) -> tuple[Floats, Floats]:
        """Both through one affine map (bilinear image, nearest mask), as H x W x C and
        H x W x 1 (OpenCV drops a single channel)."""
        height, width = image.shape[:2]
        size = (width, height)
        image = cv2.warpAffine(
            np.ascontiguousarray(image), matrix, size, flags=cv2.INTER_LINEAR, borderMode=border
        )
        mask = cv2.warpAffine(
            np.ascontiguousarray(mask), matrix, size, flags=cv2.INTER_NEAREST, borderMode=border
        )
        return image.reshape(height, width, -1), mask.reshape(height, width, 1)

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
