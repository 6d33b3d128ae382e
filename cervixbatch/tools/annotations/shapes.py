"""The shapes annotations describe, in full-resolution pixels, and their masks."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import numpy.typing as npt

from cervixbatch.errors import CervixbatchError
from cervixbatch.model.stage_names import Stage
from cervixbatch.tools.annotations.outline import fill_outline, polyline_stroke, scaled_close_px

__all__ = [
    "CERVIX",
    "LESION",
    "Annotated",
    "Labels",
    "Problem",
    "Shape",
    "Skip",
    "declared",
    "image_under",
    "outline_region",
    "rasterise",
    "single_box",
]

CERVIX, LESION = Stage.CERVIX, Stage.LESION  # what a shape outlines: a stage's target
_SHIFT = 4  # cv2.fillPoly with 4 fractional bits: vertices placed to 1/16 pixel


@dataclasses.dataclass(frozen=True, slots=True)
class Labels:
    """Which category (COCO) or shape label (LabelMe) names mean cervix and lesion."""

    cervix: tuple[str, ...] = (CERVIX.value,)
    lesion: tuple[str, ...] = (LESION.value,)

    def target(self, name: str) -> Stage | None:
        """``cervix``, ``lesion`` or None for a name that is neither (case-insensitive)."""
        folded = name.strip().casefold()
        if folded in {n.casefold() for n in self.cervix}:
            return CERVIX
        if folded in {n.casefold() for n in self.lesion}:
            return LESION
        return None


@dataclasses.dataclass(frozen=True, slots=True)
class Shape:
    """One annotated region in full-resolution pixels."""

    target: Stage
    kind: str  # box | polygon | mask | polyline (an outline stroke: LabelMe linestrip, ...)
    points: tuple[tuple[float, float], ...] = ()  # box: two corners (x0, y0), (x1, y1)
    mask: npt.NDArray[np.uint8] | None = None  # kind "mask" (COCO RLE): 0/1, H x W


@dataclasses.dataclass(frozen=True, slots=True)
class Annotated:
    """One image and its shapes from one annotation file."""

    image: Path
    source: Path  # the annotation file
    entry: str  # how the file names this entry, for messages
    shapes: tuple[Shape, ...]
    size: tuple[int, int] | None = None  # (height, width) the file declares, if it does

    def has(self, target: str) -> bool:
        """Whether any shape marks ``target``."""
        return any(shape.target == target for shape in self.shapes)


@dataclasses.dataclass(frozen=True, slots=True)
class Problem:
    """A skipped file or entry and why."""

    source: Path
    entry: str
    reason: str

    def __str__(self) -> str:
        where = f"{self.source.name} {self.entry}" if self.entry else self.source.name
        return f"{where}: {self.reason}"


class Skip(ValueError):
    """An entry that cannot be used (the message says why)."""


def image_under(root: Path, name: str) -> Path:
    """The image a file names, inside ``root``; ``Skip`` when it is not there."""
    relative = Path(name.replace("\\", "/"))
    if relative.is_absolute() or ".." in relative.parts:
        raise Skip(f"image path {name} must be relative to the image folder")
    image = root / relative
    if not image.is_file():
        # COCO exports often name images without their folder: try the name alone
        alone = root / relative.name
        if alone.is_file():
            return alone
        raise Skip(f"image {name} is not in {root}")
    return image


def declared(height: Any, width: Any) -> tuple[int, int] | None:
    """A declared (height, width), None when absent; ``Skip`` when malformed."""
    if height is None and width is None:
        return None
    if not (isinstance(height, int) and isinstance(width, int) and height > 0 and width > 0):
        raise Skip(f"declared image size {width}x{height} is not two positive integers")
    return height, width


def rasterise(shapes: Sequence[Shape], target: str, size: tuple[int, int]) -> npt.NDArray[np.uint8]:
    """The 0/255 mask of every ``target`` shape, drawn at ``size`` (height, width)."""
    height, width = size
    mask = np.zeros((height, width), dtype=np.uint8)
    strokes = [s.points for s in shapes if s.target == target and s.kind == "polyline"]
    if strokes:  # outlines: drawn as one stroke mask, filled by the outline rule
        mask[outline_region(strokes, size) > 0] = 255
    for shape in shapes:
        if shape.target != target:
            continue
        if shape.kind == "box":
            (x0, y0), (x1, y1) = shape.points
            # numpy slicing as seed 001 did, with negative starts clipped (not wrapped)
            mask[max(0, int(y0)) : max(0, int(y1)), max(0, int(x0)) : max(0, int(x1))] = 255
        elif shape.kind == "polygon":
            scaled = np.round(np.asarray(shape.points) * (1 << _SHIFT)).astype(np.int32)
            cv2.fillPoly(mask, [scaled], 255, lineType=cv2.LINE_8, shift=_SHIFT)
        elif shape.kind == "mask" and shape.mask is not None:
            if shape.mask.shape != (height, width):
                raise CervixbatchError(
                    f"an RLE mask of {shape.mask.shape} does not fit the image {size}"
                )
            mask[shape.mask > 0] = 255
    return mask


def outline_region(
    strokes: Sequence[Sequence[tuple[float, float]]], size: tuple[int, int]
) -> npt.NDArray[np.uint8]:
    """The region polylines drawn as strokes stand for (tools.outline's rule; an outline
    whose side cannot be decided gives no region)."""
    width = max(2, round(2 * max(size) / 384))
    stroke = np.zeros(size, dtype=np.uint8)
    for points in strokes:
        stroke |= polyline_stroke(list(points), size, width=width)
    return fill_outline(stroke, close_px=scaled_close_px(size)).region


def single_box(shapes: Sequence[Shape], target: str) -> tuple[int, int, int, int] | None:
    """(x0, y0, x1, y1) when ``target``'s truth is exactly one box, else None."""
    boxes = [s for s in shapes if s.target == target]
    if len(boxes) != 1 or boxes[0].kind != "box":
        return None
    (x0, y0), (x1, y1) = boxes[0].points
    return int(x0), int(y0), int(x1), int(y1)
