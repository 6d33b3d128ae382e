"""Annotation files as people have them: seed 001's box JSON, COCO and LabelMe, read into
masks; broken entries named and skipped; training and evaluation from them."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import pytest
from click.testing import CliRunner
from support.photos import draw_photo, write_photo
from support.tools import tool_missing

from cervixbatch.cli import main
from cervixbatch.tools.annotations.reading import read_annotations
from cervixbatch.tools.annotations.shapes import CERVIX, LESION, Labels, rasterise, single_box
from cervixbatch.tools.training.dataset import labelled_images, load_mask

W, H = 320, 240


def _photos(root: Path, names: list[str]) -> None:
    for index, name in enumerate(names):
        write_photo(root / name, draw_photo(W, H, seed=index))


def _by_image(found: list, name: str):  # type: ignore[no-untyped-def]
    return next(item for item in found if item.image.name == name)


# -- seed 001's box JSON --------------------------------------------------------------------


def test_seed_boxes_become_masks_the_way_seed_001_made_them(tmp_path: Path) -> None:
    """x, y, width, height are rounded (int(round())) and filled as mask[y:y+h, x:x+w],
    paths are relative to the image root, and broken entries are named and skipped."""
    _photos(tmp_path / "train" / "Type_1", ["0.jpg", "1.jpg", "2.jpg"])
    boxes = [
        {
            "filename": "train/Type_1/0.jpg",
            "class": "image",
            "annotations": [{"class": "rect", "x": 40.6, "y": 30.4, "width": 100.5, "height": 80}],
        },
        {
            "filename": "train/Type_1/1.jpg",
            "class": "image",
            "annotations": [{"class": "rect", "x": 10, "y": 20, "width": 50, "height": 60}],
        },
        {
            "filename": "train/Type_1/2.jpg",
            "annotations": [{"class": "rect", "x": 5, "y": 5, "width": "wide", "height": 9}],
        },
        {
            "filename": "train/Type_1/missing.jpg",
            "annotations": [{"class": "rect", "x": 1, "y": 1, "width": 5, "height": 5}],
        },
        {"class": "image", "annotations": []},
        {
            "filename": "train/Type_1/1.jpg",
            "annotations": [{"class": "rect", "x": 1, "y": 1, "width": 0, "height": 5}],
        },
    ]
    path = tmp_path / "Type_1_bbox.json"
    path.write_text(json.dumps(boxes))
    found, problems = read_annotations([path], tmp_path, Labels())
    assert sorted(item.image.name for item in found) == ["0.jpg", "1.jpg"]
    seed_mask = np.zeros((H, W), np.uint8)
    x, y, w, h = round(40.6), round(30.4), round(100.5), 80
    seed_mask[y : y + h, x : x + w] = 255  # prepare_data.py
    first = _by_image(found, "0.jpg")
    np.testing.assert_array_equal(rasterise(first.shapes, CERVIX, (H, W)), seed_mask)
    assert single_box(first.shapes, CERVIX) == (41, 30, 41 + 100, 30 + 80)
    text = "\n".join(str(p) for p in problems)
    assert "Type_1_bbox.json entry 2 (train/Type_1/2.jpg): annotation 0 needs numeric" in text
    assert "entry 3 (train/Type_1/missing.jpg): image train/Type_1/missing.jpg is not in" in text
    assert 'entry 4: no "filename"' in text
    assert "entry 5 (train/Type_1/1.jpg): annotation 0 has an empty box (0x5)" in text


# -- COCO -----------------------------------------------------------------------------------


def _coco(tmp_path: Path) -> dict:  # type: ignore[type-arg]
    try:
        from pycocotools import mask as coco_mask  # the reference encoder
    except ImportError:
        tool_missing("pycocotools is not installed (pip install -e '.[test]'): no reference RLE")

    rle_source = np.zeros((H, W), np.uint8, order="F")
    rle_source[100:140, 150:200] = 1
    rle = coco_mask.encode(rle_source)
    return {
        "images": [
            {"id": 1, "file_name": "a.jpg", "width": W, "height": H},
            {"id": 2, "file_name": "b.jpg", "width": W, "height": H},
            {"id": 3, "file_name": "c.jpg", "width": W, "height": H},
            {"id": 4, "file_name": "d.jpg", "width": 640, "height": 480},
        ],
        "categories": [
            {"id": 7, "name": "Cervix"},
            {"id": 8, "name": "acetowhite"},
            {"id": 9, "name": "speculum"},
        ],
        "annotations": [
            {"id": 1, "image_id": 1, "category_id": 7, "bbox": [60.4, 50.6, 120.2, 90.1]},
            {
                "id": 2,
                "image_id": 1,
                "category_id": 8,
                "segmentation": [[100.5, 80.25, 140.75, 85.5, 120.0, 120.5]],
            },
            {
                "id": 3,
                "image_id": 2,
                "category_id": 7,
                "segmentation": {"size": [H, W], "counts": rle["counts"].decode()},
            },
            {"id": 4, "image_id": 2, "category_id": 9, "bbox": [0, 0, 5, 5]},
            {"id": 5, "image_id": 3, "category_id": 7, "segmentation": [[1, 2, 3, 4]]},
            {"id": 6, "image_id": 99, "category_id": 7, "bbox": [0, 0, 5, 5]},
            {"id": 7, "image_id": 4, "category_id": 7, "bbox": [10, 10, 50, 50]},
        ],
        "_rle_source": rle_source.tolist(),
    }


def test_coco_boxes_polygons_and_rle_by_category_name(tmp_path: Path) -> None:
    """COCO categories map to cervix/lesion by name; a bbox is a box, a polygon is filled
    at full resolution to sub-pixel vertices, a compressed RLE decodes as pycocotools wrote
    it; broken annotations, unknown images and wrong sizes are named, their images skipped."""
    _photos(tmp_path, ["a.jpg", "b.jpg", "c.jpg", "d.jpg"])
    data = _coco(tmp_path)
    rle_source = np.array(data.pop("_rle_source"), np.uint8)
    path = tmp_path / "coco.json"
    path.write_text(json.dumps(data))
    labels = Labels(cervix=("cervix",), lesion=("acetowhite",))
    found, problems = read_annotations([path], tmp_path, labels)
    a, b = _by_image(found, "a.jpg"), _by_image(found, "b.jpg")
    assert single_box(a.shapes, CERVIX) == (60, 51, 181, 141)
    polygon = np.zeros((H, W), np.uint8)
    vertices = np.round(np.array([[100.5, 80.25], [140.75, 85.5], [120.0, 120.5]]) * 16)
    cv2.fillPoly(polygon, [vertices.astype(np.int32)], 255, shift=4)
    np.testing.assert_array_equal(rasterise(a.shapes, LESION, (H, W)), polygon)
    np.testing.assert_array_equal(rasterise(b.shapes, CERVIX, (H, W)) > 0, rle_source > 0)
    assert not rasterise(b.shapes, LESION, (H, W)).any()  # "speculum" is neither
    text = "\n".join(str(p) for p in problems)
    assert "coco.json annotations[4] (id 5, c.jpg): a polygon needs at least 3 points" in text
    assert "annotations[5]: image_id 99 is not in images" in text
    assert "speculum: neither a cervix nor a lesion label" in text
    assert all(item.image.name != "c.jpg" for item in found)
    # d.jpg declares 640x480 but is 320x240: found, then refused against the image
    pairs, more = labelled_images(
        tmp_path, None, None, [path], labels, target=CERVIX, need_cervix=False
    )
    assert sorted(p.image.name for p in pairs) == ["a.jpg", "b.jpg"]
    assert any("declares 640x480 but the image is 320x240" in str(p) for p in more)


# -- LabelMe --------------------------------------------------------------------------------


def _labelme(path: Path, image: str, shapes: list[dict], size: tuple[int, int] = (H, W)) -> None:  # type: ignore[type-arg]
    path.write_text(
        json.dumps(
            {
                "version": "5.4.1",
                "imagePath": image,
                "imageHeight": size[0],
                "imageWidth": size[1],
                "shapes": shapes,
                "imageData": None,
            }
        )
    )


def test_labelme_polygons_rectangles_circles_per_image(tmp_path: Path) -> None:
    """One LabelMe file per image: polygons, rectangles and circles of the mapped labels;
    a malformed shape skips its image with the file and shape named."""
    _photos(tmp_path / "img", ["p.png", "q.png"])
    notes = tmp_path / "notes"
    notes.mkdir()
    _labelme(
        notes / "p.json",
        "../img/p.png",
        [
            {
                "label": "cervix",
                "shape_type": "polygon",
                "points": [[80, 60], [240, 60], [240, 180], [80, 180]],
            },
            {"label": "lesion", "shape_type": "circle", "points": [[160, 120], [170, 120]]},
            {"label": "lesion", "shape_type": "rectangle", "points": [[200, 150], [190, 140]]},
            {"label": "os", "shape_type": "point", "points": [[160, 120]]},
        ],
    )
    _labelme(
        notes / "q.json",
        "../img/q.png",
        [{"label": "cervix", "shape_type": "polygon", "points": [[1, 2], "x"]}],
    )
    _labelme(notes / "r.json", "../img/r.png", [])
    found, problems = read_annotations([notes], tmp_path, Labels())
    assert [item.image.name for item in found] == ["p.png"]
    shapes = found[0].shapes
    cervix = rasterise(shapes, CERVIX, (H, W))
    assert cervix[60:180, 80:240].all() and not cervix[:59].any()
    lesion = rasterise(shapes, LESION, (H, W)) > 0
    assert lesion[120, 160] and lesion[120, 168] and not lesion[120, 172]  # radius 10
    assert lesion[145, 195]  # the rectangle, corners in either order
    text = "\n".join(str(p) for p in problems)
    assert 'q.json shapes[0] (cervix): "points" must be a list of [x, y]' in text
    assert "q.json: image skipped" in text
    assert "r.json: its image ../img/r.png does not exist" in text


def test_annotation_masks_are_drawn_at_full_resolution(tmp_path: Path) -> None:
    """A polygon is filled on the full-size grid, then shrunk like a PNG mask would be."""
    _photos(tmp_path, ["big.png"])
    _labelme(
        tmp_path / "big.json",
        "big.png",
        [
            {
                "label": "cervix",
                "shape_type": "polygon",
                "points": [[10.5, 10.5], [300.25, 12.0], [150.0, 230.75]],
            }
        ],
    )
    pairs, _ = labelled_images(
        tmp_path, None, None, [tmp_path / "big.json"], Labels(), target=CERVIX, need_cervix=False
    )
    full = load_mask(pairs[0].mask, (H, W), (H, W))  # type: ignore[arg-type]
    half = load_mask(pairs[0].mask, (H // 2, W // 2), (H, W))  # type: ignore[arg-type]
    expected = cv2.resize(full, (W // 2, H // 2), interpolation=cv2.INTER_AREA) >= 128
    np.testing.assert_array_equal(half > 0, expected)


# -- training and evaluation from annotations ---------------------------------------------


@pytest.mark.slow
def test_train_from_seed_boxes_with_a_broken_entry_trains_on_the_rest(
    tmp_path: Path, make_config: Callable[..., Path]
) -> None:
    """`train --annotations` with seed 001's box JSON: the broken entry is named on stderr
    and the model trains on the other images (its card counts them)."""
    names = [f"{i}.jpg" for i in range(8)]
    _photos(tmp_path / "input" / "train" / "Type_1", names)
    rows = [
        {
            "filename": f"train/Type_1/{name}",
            "class": "image",
            "annotations": [{"class": "rect", "x": 80, "y": 60, "width": 160, "height": 120}],
        }
        for name in names
    ]
    rows[3]["annotations"][0]["height"] = -4
    (tmp_path / "input" / "Type_1_bbox.json").write_text(json.dumps(rows))
    out = tmp_path / "cervix.keras"
    result = CliRunner().invoke(
        main,
        [
            "--config",
            str(make_config()),
            "train",
            "--stage",
            "cervix",
            "--images",
            str(tmp_path / "input"),
            "--annotations",
            str(tmp_path / "input" / "Type_1_bbox.json"),
            "--out",
            str(out),
            "--input-size",
            "32",
            "--filters",
            "4",
            "--epochs",
            "2",
        ],
    )
    assert result.exit_code == 0, result.output
    assert (
        "skipped Type_1_bbox.json entry 3 (train/Type_1/3.jpg): annotation 0 has an empty box"
        in result.stderr
    )
    card = json.loads(out.with_name("cervix.card.json").read_text())
    assert card["data"]["image_count"] == 7
    assert card["data"]["annotations"] == [str(tmp_path / "input" / "Type_1_bbox.json")]


def test_evaluate_gives_box_iou_when_the_truth_is_a_box(
    tmp_path: Path, make_config: Callable[..., Path]
) -> None:
    """`evaluate --annotations` with box truth reports the box IoU of the predicted cervix
    region; with no lesion truth in the file, no lesion figures are made up."""
    names = ["0.png", "1.png"]
    _photos(tmp_path / "imgs", names)
    rows = []
    for index, name in enumerate(names):
        rgb = draw_photo(W, H, seed=index)
        red = (rgb[..., 0] > 150).astype(np.uint8)
        x, y, w, h = cv2.boundingRect(cv2.findNonZero(red))
        rows.append(
            {
                "filename": name,
                "annotations": [{"class": "rect", "x": x, "y": y, "width": w, "height": h}],
            }
        )
    (tmp_path / "boxes.json").write_text(json.dumps(rows))
    result = CliRunner().invoke(
        main,
        [
            "--config",
            str(make_config()),
            "evaluate",
            "--images",
            str(tmp_path / "imgs"),
            "--annotations",
            str(tmp_path / "boxes.json"),
            "--format",
            "json",
        ],
    )
    assert result.exit_code == 0, result.output
    figures = json.loads(result.stdout)
    assert set(figures["stages"]) == {"cervix"}
    assert figures["stages"]["cervix"]["box_images"] == 2
    assert figures["stages"]["cervix"]["mean_box_iou"] > 0.9
