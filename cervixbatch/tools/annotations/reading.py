"""Annotations as people have them, turned into masks: seed 001's box JSON, COCO JSON
(boxes, polygons, RLE) and LabelMe JSON (one file per image).

Every shape is read into a :class:`Shape` in the image's full-resolution pixels; masks
are drawn at full resolution (``rasterise``), the way the training pipeline reads PNG masks.
A bad entry is a :class:`Problem` naming the file and the entry, and is skipped: the
rest of the file, and the other files, still count.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

from cervixbatch.errors import CervixbatchError, InputRejected
from cervixbatch.imaging.sniff import probe_photo, sniff_format
from cervixbatch.tools.annotations.formats import read_coco, read_labelme, read_seed_boxes
from cervixbatch.tools.annotations.shapes import (
    Annotated,
    Labels,
    Problem,
)

__all__ = [
    "check_against_image",
    "declared_size",
    "read_annotations",
]

_EXIF_TRANSPOSED = {5, 6, 7, 8}


def read_annotations(
    paths: Sequence[Path], images_root: Path, labels: Labels
) -> tuple[list[Annotated], list[Problem]]:
    """Every annotation in ``paths`` (files, or folders of ``*.json``), with the problems.

    Image paths in seed and COCO files are relative to ``images_root``; LabelMe's
    ``imagePath`` is relative to its own file. The format is recognised by content.
    """
    found: list[Annotated] = []
    problems: list[Problem] = []
    for path in _json_files(paths):
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            problems.append(Problem(path, "", f"not readable as JSON ({exc})"))
            continue
        if isinstance(data, list):
            reader = read_seed_boxes(data, path, images_root)
        elif isinstance(data, dict) and {"images", "annotations"} <= data.keys():
            reader = read_coco(data, path, images_root, labels)
        elif isinstance(data, dict) and "shapes" in data:
            reader = read_labelme(data, path, labels)
        else:
            problems.append(
                Problem(path, "", "neither seed box JSON (a list), COCO nor LabelMe JSON")
            )
            continue
        for item in reader:
            if isinstance(item, Annotated):
                found.append(item)
            else:
                problems.append(item)
    return found, problems


def _json_files(paths: Sequence[Path]) -> list[Path]:
    files: list[Path] = []
    for path in paths:
        if path.is_dir():
            files.extend(sorted(p for p in path.rglob("*.json") if p.is_file()))
        elif path.is_file():
            files.append(path)
        else:
            raise CervixbatchError(f"annotation file {path} does not exist")
    return files


# -- common -------------------------------------------------------------------------------


def declared_size(image: Path) -> tuple[int, int]:
    """(height, width) of a photo as decoded (after EXIF orientation), from its header."""
    data = image.read_bytes()
    fmt = sniff_format(data[:64])
    if fmt is None or fmt == "dicom":
        raise CervixbatchError(f"{image.name} is not a photo whose size can be read")
    try:
        header = probe_photo(data, fmt)
    except InputRejected as exc:
        raise CervixbatchError(f"{image.name}: {exc}") from exc
    if header is None:
        raise CervixbatchError(f"{image.name}: its size cannot be read from its header")
    if header.orientation in _EXIF_TRANSPOSED:
        return header.width, header.height
    return header.height, header.width


def check_against_image(item: Annotated) -> str | None:
    """Why ``item`` does not fit its image (declared size, boxes outside it), or None."""
    try:
        actual = declared_size(item.image)
    except CervixbatchError as exc:
        return str(exc)
    if item.size is not None and item.size != actual:
        turned = " (rotated: EXIF orientation?)" if item.size == actual[::-1] else ""
        return (
            f"the file declares {item.size[1]}x{item.size[0]} but the image is "
            f"{actual[1]}x{actual[0]}{turned}"
        )
    height, width = actual
    for shape in item.shapes:
        if shape.kind == "mask":
            continue
        xs = [p[0] for p in shape.points]
        ys = [p[1] for p in shape.points]
        if max(xs) <= 0 or max(ys) <= 0 or min(xs) >= width or min(ys) >= height:
            return f"a {shape.target} {shape.kind} lies outside the {width}x{height} image"
    return None
