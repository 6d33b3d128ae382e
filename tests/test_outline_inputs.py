"""Outline masks as an input format: --mask-kind outline for train/evaluate data, LabelMe
linestrips and COCO polylines through the same rule, and the `labels sheet` contact sheet,
all on photos and strokes the tests draw themselves."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
from click.testing import CliRunner
from support.photos import draw_photo, write_photo

from cervixbatch.cli import main
from cervixbatch.tools.annotations.reading import read_annotations
from cervixbatch.tools.annotations.shapes import LESION, Labels, rasterise
from cervixbatch.tools.training.dataset import Outline, labelled_images, load_mask

W, H = 320, 240


def _outline_set(root: Path) -> tuple[Path, Path, Path]:
    """Three photos: a closed loop, no stroke (a negative), a stroke through the middle."""
    images, strokes, cervix = root / "images", root / "strokes", root / "cervix"
    for folder in (images, strokes, cervix):
        folder.mkdir(parents=True)
    for index, name in enumerate(["loop", "negative", "middle"]):
        write_photo(images / f"{name}.png", draw_photo(W, H, seed=index))
        cv2.imwrite(str(cervix / f"{name}.png"), np.full((H, W), 255, np.uint8))
    loop = np.zeros((H, W), np.uint8)
    cv2.circle(loop, (160, 120), 50, 255, 2)
    cv2.imwrite(str(strokes / "loop.png"), loop)
    cv2.imwrite(str(strokes / "negative.png"), np.zeros((H, W), np.uint8))
    middle = np.zeros((H, W), np.uint8)
    cv2.line(middle, (160, 0), (160, H - 1), 255, 2)
    cv2.imwrite(str(strokes / "middle.png"), middle)
    return images, strokes, cervix


def test_outline_masks_are_filled_and_undecided_ones_skipped(tmp_path: Path) -> None:
    """With mask kind outline a loop's mask is its filled disc, a blank mask a negative,
    and a stroke with two equal sides is skipped for training (named) but kept without
    lesion truth for evaluation; with mask kind region the stroke is taken as painted."""
    images, strokes, cervix = _outline_set(tmp_path)
    pairs, problems = labelled_images(
        images, strokes, cervix, [], Labels(), target=LESION, need_cervix=True, mask_kind="outline"
    )
    assert sorted(p.stem for p in pairs) == ["loop", "negative"]
    assert any("middle.png" in str(p) and "outline undecided" in str(p) for p in problems)
    loop = next(p for p in pairs if p.stem == "loop")
    assert isinstance(loop.mask, Outline)
    region = load_mask(loop.mask, (H, W))
    assert region[120, 160] == 255 and region[5, 5] == 0
    assert (region > 0).mean() > 0.09  # the disc (pi * 50^2 / 76800 = 0.10), not a ring
    kept, _ = labelled_images(
        images,
        strokes,
        cervix,
        [],
        Labels(),
        target=LESION,
        need_cervix=True,
        require_target=False,
        mask_kind="outline",
    )
    assert next(p for p in kept if p.stem == "middle").mask is None
    as_region, _ = labelled_images(
        images, strokes, cervix, [], Labels(), target=LESION, need_cervix=True
    )
    ring = load_mask(next(p for p in as_region if p.stem == "loop").mask, (H, W))  # type: ignore[arg-type]
    assert ring[120, 160] == 0


def test_labelme_linestrip_and_coco_polyline_are_outlines(tmp_path: Path) -> None:
    """A LabelMe linestrip and a COCO polyline (area 0) drawn from the top edge to the left
    edge fill to the corner they cut off, as a stroke mask of the same line would."""
    write_photo(tmp_path / "a.png", draw_photo(W, H, seed=1))
    line = [[150, 0], [140, 60], [60, 110], [0, 120]]
    (tmp_path / "a.json").write_text(
        json.dumps(
            {
                "imagePath": "a.png",
                "imageHeight": H,
                "imageWidth": W,
                "imageData": None,
                "shapes": [{"label": "lesion", "shape_type": "linestrip", "points": line}],
            }
        )
    )
    coco = {
        "images": [{"id": 1, "file_name": "a.png", "height": H, "width": W}],
        "categories": [{"id": 1, "name": "lesion"}],
        "annotations": [
            {
                "id": 1,
                "image_id": 1,
                "category_id": 1,
                "area": 0,
                "segmentation": [[v for point in line for v in point]],
            }
        ],
    }
    (tmp_path / "coco").mkdir()
    (tmp_path / "coco" / "coco.json").write_text(json.dumps(coco))
    for source in (tmp_path / "a.json", tmp_path / "coco" / "coco.json"):
        found, problems = read_annotations([source], tmp_path, Labels())
        assert not problems, problems
        assert [s.kind for s in found[0].shapes] == ["polyline"]
        region = rasterise(found[0].shapes, LESION, (H, W))
        assert region[20, 20] == 255  # the corner cut off
        assert region[200, 300] == 0  # the rest of the photo
        assert 0.05 < (region > 0).mean() < 0.35


def test_labels_sheet_shows_photo_stroke_and_region(tmp_path: Path) -> None:
    """`labels sheet` writes one row of three tiles per photo with a stroke (undecided
    first) and prints how many photos had each status."""
    images, strokes, _ = _outline_set(tmp_path)
    out = tmp_path / "sheet.png"
    args = ["labels", "sheet", "--images", str(images), "--masks", str(strokes)]
    result = CliRunner().invoke(main, [*args, "--out", str(out), "--columns", "1"])
    assert result.exit_code == 0, result.output
    assert "empty 1 filled 1 undecided 1" in result.output
    sheet = cv2.imread(str(out))
    assert sheet is not None
    assert sheet.shape[0] >= 2 * 192  # two photos with a stroke, two rows
    assert sheet.shape[1] >= 3 * 192  # photo | stroke | region
