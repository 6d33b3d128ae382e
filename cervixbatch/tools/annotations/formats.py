"""Readers of the annotation formats: seed 001's box JSON, COCO (boxes, polygons, RLE) and
LabelMe. Each yields an :class:`Annotated` per image or a :class:`Problem` per bad entry."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from cervixbatch.model.stage_names import Stage
from cervixbatch.tools.annotations.shapes import (
    CERVIX,
    Annotated,
    Labels,
    Problem,
    Shape,
    Skip,
    declared,
    image_under,
)

__all__ = ["read_coco", "read_labelme", "read_seed_boxes"]


# -- seed 001: [{"filename", "annotations": [{"class": "rect", x, y, width, height}]}] ----


def read_seed_boxes(data: list[Any], path: Path, root: Path) -> Iterable[Annotated | Problem]:
    """Seed 001's box JSON: one entry per image, its filename relative to ``root``."""
    for index, row in enumerate(data):
        name = row.get("filename") if isinstance(row, dict) else None
        entry = f"entry {index} ({name})" if isinstance(name, str) else f"entry {index}"
        try:
            yield _seed_entry(row, path, root, entry)
        except Skip as exc:
            yield Problem(path, entry, str(exc))


def _seed_entry(row: Any, path: Path, root: Path, entry: str) -> Annotated:
    if not isinstance(row, dict) or not isinstance(row.get("filename"), str):
        raise Skip('no "filename"')
    rects = row.get("annotations")
    if not isinstance(rects, list) or not rects:
        raise Skip('no "annotations"')
    shapes = []
    for number, rect in enumerate(rects):
        if not isinstance(rect, dict) or rect.get("class", "rect") != "rect":
            raise Skip(f'annotation {number} is not a {{"class": "rect"}}')
        shapes.append(_seed_rect(rect, number))
    return Annotated(image_under(root, row["filename"]), path, entry, tuple(shapes))


def _seed_rect(rect: dict[str, Any], number: int) -> Shape:
    """A box exactly as seed 001's prepare_data.py made it: int(round()) of each value,
    then mask[y:y + h, x:x + w] = 255."""
    values = [rect.get(k) for k in ("x", "y", "width", "height")]
    if not all(isinstance(v, int | float) and not isinstance(v, bool) for v in values):
        raise Skip(f"annotation {number} needs numeric x, y, width and height")
    x, y, w, h = (round(float(v)) for v in values)  # type: ignore[arg-type]
    if w <= 0 or h <= 0:
        raise Skip(f"annotation {number} has an empty box ({w}x{h})")
    return Shape(CERVIX, "box", ((x, y), (x + w, y + h)))


# -- COCO ------------------------------------------------------------------------------


def read_coco(  # noqa: C901 - one pass over a format with optional parts
    data: dict[str, Any], path: Path, root: Path, labels: Labels
) -> Iterable[Annotated | Problem]:
    """COCO JSON: categories mapped by ``labels``; an image with a bad annotation is
    skipped whole (half its truth would teach wrong masks)."""
    categories: dict[Any, Stage | None] = {}
    for cat in data.get("categories") or []:
        if isinstance(cat, dict) and "id" in cat:
            categories[cat["id"]] = labels.target(str(cat.get("name", "")))
    ignored = sorted(
        str(cat.get("name"))
        for cat in data.get("categories") or []
        if isinstance(cat, dict) and cat.get("id") in categories and categories[cat["id"]] is None
    )
    images: dict[Any, dict[str, Any]] = {}
    for index, image in enumerate(data.get("images") or []):
        if not isinstance(image, dict) or "id" not in image or "file_name" not in image:
            yield Problem(path, f"images[{index}]", 'needs "id" and "file_name"')
            continue
        images[image["id"]] = image
    shapes: dict[Any, list[Shape]] = defaultdict(list)
    skipped: set[Any] = set()
    for index, ann in enumerate(data.get("annotations") or []):
        image = images.get(ann.get("image_id")) if isinstance(ann, dict) else None
        entry = f"annotations[{index}]"
        if image is not None:
            entry += f" (id {ann.get('id')}, {image['file_name']})"
        try:
            target, found = _coco_annotation(ann, image, categories)
        except Skip as exc:
            yield Problem(path, entry, str(exc))
            if image is not None:
                skipped.add(image["id"])  # half an image's truth would teach wrong masks
            continue
        if target is not None and image is not None:
            shapes[image["id"]].extend(found)
    if ignored:
        yield Problem(
            path,
            "categories",
            f"{', '.join(ignored)}: neither a cervix nor a lesion label (ignored; "
            "see --cervix-label / --lesion-label)",
        )
    for image_id, image in images.items():
        if image_id not in skipped:
            yield _coco_image(image, path, root, tuple(shapes.get(image_id, ())))


def _coco_annotation(
    ann: Any, image: dict[str, Any] | None, categories: dict[Any, Stage | None]
) -> tuple[Stage | None, list[Shape]]:
    if not isinstance(ann, dict):
        raise Skip("not an object")
    if image is None:
        raise Skip(f"image_id {ann.get('image_id')!r} is not in images")
    if ann.get("category_id") not in categories:
        raise Skip(f"category_id {ann.get('category_id')!r} is not in categories")
    target = categories[ann["category_id"]]
    return target, (_coco_shapes(ann, target, image) if target is not None else [])


def _coco_image(
    image: dict[str, Any], path: Path, root: Path, shapes: tuple[Shape, ...]
) -> Annotated | Problem:
    entry = f"image id {image['id']} ({image['file_name']})"
    try:
        size = declared(image.get("height"), image.get("width"))
        return Annotated(image_under(root, str(image["file_name"])), path, entry, shapes, size)
    except Skip as exc:
        return Problem(path, entry, str(exc))


def _coco_polyline(polygon: Any, *, open_line: bool) -> bool:
    """Whether a COCO segmentation list is a polyline: an annotation with "area" 0."""
    if not isinstance(polygon, list) or len(polygon) < 4 or len(polygon) % 2:
        return False
    if not all(isinstance(v, int | float) for v in polygon):
        return False
    return open_line


def _coco_shapes(ann: dict[str, Any], target: Stage, image: dict[str, Any]) -> list[Shape]:
    segmentation = ann.get("segmentation")
    if isinstance(segmentation, list) and segmentation:
        polygons = []
        # a polyline (an outline stroke) has no area: "area" 0 says so
        open_line = ann.get("area") == 0
        for polygon in segmentation:
            if _coco_polyline(polygon, open_line=open_line):
                line = tuple(
                    (float(x), float(y)) for x, y in zip(*[iter(polygon)] * 2, strict=True)
                )
                polygons.append(Shape(target, "polyline", line))
                continue
            if not isinstance(polygon, list) or len(polygon) < 6 or len(polygon) % 2:
                raise Skip("a polygon needs at least 3 points as [x1, y1, x2, y2, ...]")
            if not all(isinstance(v, int | float) for v in polygon):
                raise Skip("polygon coordinates must be numbers")
            points = tuple(
                (float(polygon[i]), float(polygon[i + 1])) for i in range(0, len(polygon), 2)
            )
            polygons.append(Shape(target, "polygon", points))
        return polygons
    if isinstance(segmentation, dict):
        return [Shape(target, "mask", mask=_coco_rle(segmentation, image))]
    bbox = ann.get("bbox")
    if (
        not isinstance(bbox, list)
        or len(bbox) != 4
        or not all(isinstance(v, int | float) for v in bbox)
    ):
        raise Skip('neither a "segmentation" nor a "bbox" [x, y, width, height]')
    x, y, w, h = (float(v) for v in bbox)
    if w <= 0 or h <= 0:
        raise Skip(f"empty bbox ({w}x{h})")
    # COCO boxes are float; rounded like seed 001's so both formats give the same mask
    return [Shape(target, "box", ((round(x), round(y)), (round(x + w), round(y + h))))]


def _coco_rle(rle: dict[str, Any], image: dict[str, Any]) -> npt.NDArray[np.uint8]:
    """Decodes COCO run-length encoding (counts as a list, or pycocotools' compressed
    string), column-major as COCO stores it."""
    size = rle.get("size")
    counts = rle.get("counts")
    if not (isinstance(size, list) and len(size) == 2):
        raise Skip('RLE needs "size": [height, width]')
    height, width = int(size[0]), int(size[1])
    if (image.get("height"), image.get("width")) not in ((None, None), (height, width)):
        raise Skip(f"RLE size {height}x{width} differs from the image's declared size")
    runs = _rle_counts(counts)
    if sum(runs) != height * width:
        raise Skip(f"RLE counts cover {sum(runs)} pixels, not {height}x{width}")
    flat = np.zeros(height * width, dtype=np.uint8)
    position, value = 0, 0
    for run in runs:
        flat[position : position + run] = value
        position += run
        value = 1 - value
    return flat.reshape((width, height)).T.copy()


def _rle_counts(counts: Any) -> list[int]:
    if isinstance(counts, list) and all(isinstance(c, int) and c >= 0 for c in counts):
        return list(counts)
    if not isinstance(counts, str):
        raise Skip("RLE counts must be a list of integers or a compressed string")
    # pycocotools' compressed form: 5 bits per char (+48), continuation bit 0x20, sign bit
    # 0x10 in the last char; from the third run on, a run is relative to the one 2 back
    runs: list[int] = []
    position = 0
    text = counts.encode("ascii", "replace")
    while position < len(text):
        value, shift, more = 0, 0, True
        while more:
            if position >= len(text):
                raise Skip("RLE counts string ends inside a number")
            char = text[position] - 48
            value |= (char & 0x1F) << (5 * shift)
            more = bool(char & 0x20)
            position += 1
            shift += 1
            if not more and char & 0x10:
                value |= -1 << (5 * shift)
        if len(runs) > 2:
            value += runs[-2]
        if value < 0:
            raise Skip("RLE counts string decodes to a negative run")
        runs.append(value)
    return runs


# -- LabelMe: {"imagePath", "imageHeight", "imageWidth", "shapes": [...]} ------------------


def read_labelme(data: dict[str, Any], path: Path, labels: Labels) -> Iterable[Annotated | Problem]:
    """One LabelMe file: its image (``imagePath``, relative to the file) and shapes."""
    image_path = data.get("imagePath")
    raw_shapes = data.get("shapes")
    if not isinstance(image_path, str) or not image_path or not isinstance(raw_shapes, list):
        yield Problem(path, "", 'needs "imagePath" and a list of "shapes"')
        return
    image = (path.parent / image_path.replace("\\", "/")).resolve()
    shapes: list[Shape] = []
    broken = False
    for index, raw in enumerate(raw_shapes):
        label = raw.get("label") if isinstance(raw, dict) else None
        entry = f"shapes[{index}] ({label})" if isinstance(label, str) else f"shapes[{index}]"
        try:
            shape = _labelme_entry(raw, labels)
        except Skip as exc:
            yield Problem(path, entry, str(exc))
            broken = True
            continue
        if shape is not None:
            shapes.append(shape)
    try:
        size = declared(data.get("imageHeight"), data.get("imageWidth"))
    except Skip as exc:
        yield Problem(path, "", str(exc))
        return
    if broken:
        yield Problem(path, "", "image skipped: a shape of it could not be read")
    elif not image.is_file():
        yield Problem(path, "", f"its image {image_path} does not exist")
    else:
        yield Annotated(image, path, image.name, tuple(shapes), size)


def _labelme_entry(raw: Any, labels: Labels) -> Shape | None:
    if not isinstance(raw, dict) or not isinstance(raw.get("label"), str):
        raise Skip('needs a "label"')
    target = labels.target(raw["label"])
    return _labelme_shape(raw, target) if target is not None else None


def _labelme_shape(raw: dict[str, Any], target: Stage) -> Shape:
    kind = raw.get("shape_type") or "polygon"
    points = raw.get("points")
    if not isinstance(points, list) or not all(
        isinstance(p, list) and len(p) == 2 and all(isinstance(v, int | float) for v in p)
        for p in points
    ):
        raise Skip('"points" must be a list of [x, y]')
    pts = tuple((float(p[0]), float(p[1])) for p in points)
    if kind in ("linestrip", "line") and len(pts) >= 2:  # an outline stroke
        return Shape(target, "polyline", pts)
    if kind == "polygon":
        if len(pts) < 3:
            raise Skip("a polygon needs at least 3 points")
        return Shape(target, "polygon", pts)
    if kind == "rectangle" and len(pts) == 2:
        (x0, y0), (x1, y1) = pts
        return Shape(target, "box", ((min(x0, x1), min(y0, y1)), (max(x0, x1), max(y0, y1))))
    if kind == "circle" and len(pts) == 2:
        (cx, cy), (px, py) = pts
        radius = float(np.hypot(px - cx, py - cy))
        angles = np.linspace(0.0, 2 * np.pi, 90, endpoint=False)
        ring = tuple((cx + radius * np.cos(a), cy + radius * np.sin(a)) for a in angles)
        return Shape(target, "polygon", ring)
    raise Skip(f'shape_type "{kind}" with {len(pts)} points is not an area')
