"""``cervixbatch evaluate``: the two stages end to end (the code ``process`` runs) against
ground-truth masks, with Dice and IoU per stage."""

from __future__ import annotations

import csv
import dataclasses
import statistics
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from cervixbatch.errors import CervixbatchError, InputRejected
from cervixbatch.imaging.frames import ReadLimits
from cervixbatch.imaging.reader import read_input
from cervixbatch.outputs.spreadsheet import SafeCsvWriter
from cervixbatch.pipeline import Pipeline
from cervixbatch.tools.dataset import LabelledImage, load_mask, pair_images
from cervixbatch.tools.scores import dice, iou, kaggle_score

__all__ = ["Evaluation", "ImageScore", "evaluate", "summarise"]


@dataclasses.dataclass(frozen=True, slots=True)
class ImageScore:
    """The scores of one image."""

    stem: str
    cervix_dice: float
    cervix_iou: float
    lesion_dice: float
    lesion_iou: float
    cervix_found: bool


@dataclasses.dataclass(frozen=True, slots=True)
class Evaluation:
    """Per-stage aggregates and the per-image scores behind them."""

    images: int
    stages: dict[str, dict[str, float]]
    scores: list[ImageScore]

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {"images": self.images, "stages": self.stages}


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
    cervix_masks: Path,
    lesion_masks: Path,
    *,
    batch_size: int = 8,
    min_working_side: int | None = None,
    on_progress: Callable[[int], None] | None = None,
) -> Evaluation:
    """Runs ``pipeline`` over every labelled image and scores both stages."""
    pairs = pair_images(images, lesion_masks, cervix_masks)
    scores: list[ImageScore] = []
    for start in range(0, len(pairs), batch_size):
        chunk = pairs[start : start + batch_size]
        frames = [_frame(pair, min_working_side) for pair in chunk]
        results = pipeline.run(frames)
        for pair, result in zip(chunk, results, strict=True):
            scores.append(_score(pair, result))
        if on_progress is not None:
            on_progress(len(chunk))
    stages = {
        "cervix": summarise([s.cervix_dice for s in scores], [s.cervix_iou for s in scores]),
        "lesion": summarise([s.lesion_dice for s in scores], [s.lesion_iou for s in scores]),
    }
    return Evaluation(images=len(scores), stages=stages, scores=scores)


def _frame(pair: LabelledImage, min_working_side: int | None) -> Any:
    try:
        return read_input(pair.image, ReadLimits(), min_working_side=min_working_side).frames[0]
    except InputRejected as exc:
        raise CervixbatchError(f"evaluation image {pair.image.name}: {exc}") from exc


def _score(pair: LabelledImage, result: Any) -> ImageScore:
    assert pair.mask is not None
    assert pair.cervix_mask is not None
    size = result.cervix_mask.shape
    true_cervix = load_mask(pair.cervix_mask, size) > 0
    true_lesion = load_mask(pair.mask, size) > 0
    pred_cervix = result.cervix_mask > 0
    pred_lesion = result.lesion_mask > 0
    return ImageScore(
        stem=pair.stem,
        cervix_dice=dice(true_cervix, pred_cervix),
        cervix_iou=iou(true_cervix, pred_cervix),
        lesion_dice=dice(true_lesion, pred_lesion),
        lesion_iou=iou(true_lesion, pred_lesion),
        cervix_found=bool(result.cervix_found),
    )


def write_per_image(path: Path, scores: Sequence[ImageScore]) -> None:
    """One CSV row per image."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = SafeCsvWriter(csv.writer(handle))  # image names are file names
        writer.writerow(
            ["image", "cervix_found", "cervix_dice", "cervix_iou", "lesion_dice", "lesion_iou"]
        )
        for s in scores:
            writer.writerow(
                [
                    s.stem,
                    int(s.cervix_found),
                    f"{s.cervix_dice:.4f}",
                    f"{s.cervix_iou:.4f}",
                    f"{s.lesion_dice:.4f}",
                    f"{s.lesion_iou:.4f}",
                ]
            )
