"""How closely one stage's model (INT8, another runtime or precision) reproduces a
reference model's *results*: the masks ``process`` writes, not the raw model grid.

Per stage, the candidate model replaces the reference model in an otherwise identical
pipeline, so the figure is that stage's alone: stage 1's through the cervix mask (after
the clean-up that keeps the largest component and fills holes), stage 2's through the
lesion mask drawn in the reference's own cervix crop (after ``min_lesion_fraction``). A
pixel that flips on the model grid but never reaches a written mask does not count;
one that does, counts at the photo's full size.

Beside the Dice, what a reader of the report would see change: the share of photos whose
lesion decision flips (``report.lesion_positive_threshold``, the report's rule) and the
largest change of a photo's lesion fraction.
"""

from __future__ import annotations

import dataclasses
import statistics
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import structlog

from cervixbatch.config import ReportConfig
from cervixbatch.errors import InputRejected
from cervixbatch.imaging.frames import Frame, ReadLimits
from cervixbatch.imaging.reader import read_input
from cervixbatch.segmentation.scores import dice
from cervixbatch.segmentation.two_stage import FrameResult, Pipeline, Predictor

__all__ = [
    "DEFAULT_POSITIVE_THRESHOLD",
    "StageAgreement",
    "frames_agreement",
    "lesion_positive",
    "mask_agreement",
    "read_frames",
]

log = structlog.get_logger(__name__)

DEFAULT_POSITIVE_THRESHOLD = ReportConfig().lesion_positive_threshold  # [report]'s default


@dataclasses.dataclass(slots=True)
class StageAgreement:
    """Per photo: the Dice between reference and candidate masks, whether the photo's
    lesion decision flipped (lesion-positive at the report's threshold under one and not
    the other) and how far its lesion fraction moved; with the photo's name."""

    scores: list[float] = dataclasses.field(default_factory=list)
    names: list[str] = dataclasses.field(default_factory=list)
    flips: list[bool] = dataclasses.field(default_factory=list)
    fraction_changes: list[float] = dataclasses.field(default_factory=list)
    positive_threshold: float = DEFAULT_POSITIVE_THRESHOLD

    def add(self, name: str, reference: FrameResult, candidate: FrameResult, dice_: float) -> None:
        """One photo's figures."""
        self.scores.append(dice_)
        self.names.append(name)
        threshold = self.positive_threshold
        self.flips.append(
            lesion_positive(reference, threshold) != lesion_positive(candidate, threshold)
        )
        self.fraction_changes.append(abs(reference.lesion_fraction - candidate.lesion_fraction))

    def summary(self) -> dict[str, Any]:
        """Count, mean and lowest Dice with the photo of the lowest, the lesion decisions
        flipped (count and share) and the largest change of lesion fraction with its
        photo. No photos: the figures of perfect agreement."""
        if not self.scores:
            return {
                "images": 0,
                "mean_dice": 1.0,
                "min_dice": 1.0,
                "worst_image": None,
                "positive_threshold": self.positive_threshold,
                "decision_flips": 0,
                "decision_flip_share": 0.0,
                "flipped_images": [],
                "max_lesion_fraction_change": 0.0,
                "largest_fraction_change_image": None,
            }
        worst = min(range(len(self.scores)), key=self.scores.__getitem__)
        moved = max(range(len(self.scores)), key=self.fraction_changes.__getitem__)
        flipped = [name for name, flip in zip(self.names, self.flips, strict=True) if flip]
        return {
            "images": len(self.scores),
            "mean_dice": round(statistics.fmean(self.scores), 5),
            "min_dice": round(self.scores[worst], 5),
            "worst_image": self.names[worst],
            "positive_threshold": self.positive_threshold,
            "decision_flips": len(flipped),
            "decision_flip_share": round(len(flipped) / len(self.scores), 5),
            "flipped_images": flipped[:20],
            "max_lesion_fraction_change": round(self.fraction_changes[moved], 5),
            "largest_fraction_change_image": self.names[moved],
        }


def lesion_positive(result: FrameResult, threshold: float) -> bool:
    """The report's rule: a frame is lesion-positive when it has a cervix and its lesion
    fraction (lesion over cervix area) is above the threshold."""
    return result.cervix_found and result.lesion_fraction > threshold


def mask_agreement(
    reference: Pipeline,
    cervix: Predictor,
    lesion: Predictor,
    photos: Sequence[Path],
    *,
    batch_size: int,
    positive_threshold: float = DEFAULT_POSITIVE_THRESHOLD,
    on_batch: Callable[[int], None] | None = None,
) -> dict[str, StageAgreement]:
    """Per stage, the agreement of ``cervix`` / ``lesion`` with ``reference``'s models on
    ``photos``. Stage 2 is scored on photos where the reference finds a cervix. A lesion
    decision can flip through either stage (stage 1 moves the area the fraction is of).
    Unreadable photos are skipped."""
    out = {
        "cervix": StageAgreement(positive_threshold=positive_threshold),
        "lesion": StageAgreement(positive_threshold=positive_threshold),
    }
    for start in range(0, len(photos), batch_size):
        frames, names = read_frames(reference, photos[start : start + batch_size])
        frames_agreement(reference, cervix, lesion, frames, names, out=out)
        if on_batch is not None:
            on_batch(len(frames))
    return out


def frames_agreement(
    reference: Pipeline,
    cervix: Predictor | None,
    lesion: Predictor | None,
    frames: Sequence[Frame],
    names: Sequence[str],
    *,
    out: dict[str, StageAgreement],
) -> None:
    """Adds one batch of decoded frames to ``out``, per stage whose candidate is given
    (None: that stage is not scored)."""
    settings = reference.settings
    expected = reference.run(frames)
    if cervix is not None:
        with_cervix = Pipeline(cervix, reference.lesion, settings).run(frames)
        for name, ref, got in zip(names, expected, with_cervix, strict=True):
            out["cervix"].add(name, ref, got, dice(ref.cervix_mask, got.cervix_mask))
    if lesion is not None:
        with_lesion = Pipeline(reference.cervix, lesion, settings).run(frames)
        for name, ref, got in zip(names, expected, with_lesion, strict=True):
            if ref.cervix_found:
                out["lesion"].add(name, ref, got, dice(ref.lesion_mask, got.lesion_mask))


def read_frames(pipeline: Pipeline, paths: Sequence[Path]) -> tuple[list[Frame], list[str]]:
    """The first frame of each photo, decoded at a reduced scale where the stages' inputs
    allow it, with the photo's name; unreadable photos are skipped (logged by reason,
    never by name)."""
    side = 2 * max(*pipeline.cervix.input_size, *pipeline.lesion.input_size)
    frames, names = [], []
    for path in paths:
        try:
            decoded = read_input(path, ReadLimits(), min_working_side=side)
        except InputRejected as exc:
            log.warning("photo_skipped", reason=exc.reason.value)
            continue
        frames.append(decoded.frames[0])
        names.append(path.name)
    return frames, names
