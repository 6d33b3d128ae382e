"""``cervixbatch evaluate``: the two stages end to end (the code ``process`` runs) against
ground-truth masks, with Dice and IoU per stage."""

from __future__ import annotations

import csv
import dataclasses
import io
import statistics
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from cervixbatch.errors import CervixbatchError, InputRejected
from cervixbatch.imaging.frames import ReadLimits
from cervixbatch.imaging.reader import read_input
from cervixbatch.outputs.atomic import PLAIN_MODE, write_atomic
from cervixbatch.outputs.spreadsheet import SafeCsvWriter
from cervixbatch.segmentation.roi import mask_box
from cervixbatch.segmentation.scores import box_iou, dice, iou, kaggle_score
from cervixbatch.segmentation.two_stage import Pipeline
from cervixbatch.tools.annotations.shapes import CERVIX, LESION, Labels, Problem, single_box
from cervixbatch.tools.evaluation.boundary import boundary_f
from cervixbatch.tools.training.dataset import (
    LabelledImage,
    Outline,
    ShapeTruth,
    labelled_images,
    load_mask,
)

__all__ = ["Evaluation", "ImageScore", "evaluate", "summarise"]


@dataclasses.dataclass(frozen=True, slots=True)
class ImageScore:
    """The scores of one image."""

    stem: str
    cervix_dice: float
    cervix_iou: float
    lesion_dice: float | None  # None: no lesion truth for this image
    lesion_iou: float | None
    cervix_found: bool
    cervix_box_iou: float | None = None  # when the cervix truth is one box (seed 001's)
    lesion_boundary_f: float | None = None  # against the stroke, when the truth is an outline


@dataclasses.dataclass(frozen=True, slots=True)
class Evaluation:
    """Per-stage aggregates and the per-image scores behind them."""

    images: int
    stages: dict[str, dict[str, float]]
    scores: list[ImageScore]
    problems: tuple[Problem, ...] = ()

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        out: dict[str, Any] = {"images": self.images, "stages": self.stages}
        if self.problems:
            out["skipped"] = [str(p) for p in self.problems]
        return out


def summarise(dices: Sequence[float], ious: Sequence[float]) -> dict[str, float]:
    """Mean and median Dice, mean IoU, share with IoU ≥ 0.5, Kaggle-style mean IoU."""
    if not dices:
        return {}
    return {
        "mean_dice": round(statistics.fmean(dices), 4),
        "median_dice": round(statistics.median(dices), 4),
        "mean_iou": round(statistics.fmean(ious), 4),
        "iou_ge_0_5": round(sum(1 for v in ious if v >= 0.5) / len(ious), 4),
        "kaggle_mean_iou": round(statistics.fmean(kaggle_score(v) for v in ious), 4),
    }


def evaluate(
    pipeline: Pipeline,
    images: Path,
    cervix_masks: Path | None,
    lesion_masks: Path | None,
    *,
    annotations: Sequence[Path] = (),
    labels: Labels | None = None,
    mask_kind: str = "region",
    batch_size: int = 8,
    min_working_side: int | None = None,
    on_progress: Callable[[int], None] | None = None,
) -> Evaluation:
    """Runs ``pipeline`` over every labelled image and scores both stages.

    Truth comes from mask folders or annotation files; the lesion stage is scored on
    images with lesion truth only. Where the cervix truth is one box, the box IoU of the
    predicted cervix region's box is given too.
    """
    if cervix_masks is None and not annotations:
        raise CervixbatchError("give --cervix-masks and --lesion-masks, or --annotations")
    pairs, problems = labelled_images(
        images,
        lesion_masks,
        cervix_masks,
        annotations,
        labels or Labels(),
        target=LESION,
        need_cervix=True,
        require_target=False,
        mask_kind=mask_kind,
    )
    scores: list[ImageScore] = []
    for start in range(0, len(pairs), batch_size):
        chunk = pairs[start : start + batch_size]
        frames = [_frame(pair, min_working_side) for pair in chunk]
        results = pipeline.run(frames)
        for pair, result in zip(chunk, results, strict=True):
            scores.append(_score(pair, result))
        if on_progress is not None:
            on_progress(len(chunk))
    cervix = summarise([s.cervix_dice for s in scores], [s.cervix_iou for s in scores])
    boxes = [s.cervix_box_iou for s in scores if s.cervix_box_iou is not None]
    if boxes:
        cervix["mean_box_iou"] = round(statistics.fmean(boxes), 4)
        cervix["box_iou_ge_0_5"] = round(sum(1 for v in boxes if v >= 0.5) / len(boxes), 4)
        cervix["box_images"] = len(boxes)
    stages = {"cervix": cervix}
    lesion = [s for s in scores if s.lesion_dice is not None and s.lesion_iou is not None]
    if lesion:
        stages["lesion"] = summarise(
            [s.lesion_dice for s in lesion],  # type: ignore[misc]
            [s.lesion_iou for s in lesion],  # type: ignore[misc]
        )
    outlined = [s.lesion_boundary_f for s in scores if s.lesion_boundary_f is not None]
    if outlined:  # photos with a stroke: how well the predicted edge follows it
        stages.setdefault("lesion", {})["mean_boundary_f"] = round(statistics.fmean(outlined), 4)
        stages["lesion"]["boundary_f_images"] = len(outlined)
    return Evaluation(len(scores), stages, scores, tuple(problems))


def _frame(pair: LabelledImage, min_working_side: int | None) -> Any:
    try:
        return read_input(pair.image, ReadLimits(), min_working_side=min_working_side).frames[0]
    except InputRejected as exc:
        raise CervixbatchError(f"evaluation image {pair.image.name}: {exc}") from exc


def _score(pair: LabelledImage, result: Any) -> ImageScore:
    assert pair.cervix_mask is not None
    size = result.cervix_mask.shape  # the image's full size
    true_cervix = load_mask(pair.cervix_mask, size, size) > 0
    pred_cervix = result.cervix_mask > 0
    lesion_dice = lesion_iou = boundary = None
    if pair.mask is not None:
        true_lesion = load_mask(pair.mask, size, size) > 0
        pred_lesion = result.lesion_mask > 0
        lesion_dice, lesion_iou = dice(true_lesion, pred_lesion), iou(true_lesion, pred_lesion)
        if isinstance(pair.mask, Outline):
            boundary = _boundary_f(pair.mask, pred_lesion)
    return ImageScore(
        stem=pair.stem,
        cervix_dice=dice(true_cervix, pred_cervix),
        cervix_iou=iou(true_cervix, pred_cervix),
        lesion_dice=lesion_dice,
        lesion_iou=lesion_iou,
        cervix_found=bool(result.cervix_found),
        cervix_box_iou=_box_iou(pair, result.cervix_mask),
        lesion_boundary_f=boundary,
    )


def _boundary_f(outline: Outline, predicted: Any) -> float | None:
    """Boundary F of the predicted lesion against the stroke (at the stroke's size)."""
    stroke = outline.stroke()
    if not stroke.any():
        return None  # a negative: its lesion share speaks for it, not an edge score
    height, width = stroke.shape
    small = cv2.resize(predicted.astype(np.uint8), (width, height), interpolation=cv2.INTER_NEAREST)
    return boundary_f(small, stroke)


def _box_iou(pair: LabelledImage, predicted: Any) -> float | None:
    """IoU of the truth box and the predicted cervix's bounding box (0 when none found)."""
    truth = pair.cervix_mask
    if not isinstance(truth, ShapeTruth):
        return None
    box = single_box(truth.shapes, CERVIX)
    if box is None:
        return None
    found = mask_box(predicted)
    return box_iou(box, found.as_tuple() if found else None)


def write_per_image(path: Path, scores: Sequence[ImageScore]) -> None:
    """One CSV row per image, written atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with io.StringIO(newline="") as handle:
        writer = SafeCsvWriter(csv.writer(handle))  # image names are file names
        writer.writerow(
            [
                "image",
                "cervix_found",
                "cervix_dice",
                "cervix_iou",
                "lesion_dice",
                "lesion_iou",
                "cervix_box_iou",
            ]
        )
        for s in scores:
            writer.writerow(
                [
                    s.stem,
                    int(s.cervix_found),
                    *(
                        "" if v is None else f"{v:.4f}"
                        for v in (
                            s.cervix_dice,
                            s.cervix_iou,
                            s.lesion_dice,
                            s.lesion_iou,
                            s.cervix_box_iou,
                        )
                    ),
                ]
            )
        write_atomic(path, handle.getvalue().encode("utf-8"), mode=PLAIN_MODE)
