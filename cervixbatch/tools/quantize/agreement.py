"""How closely one stage's model (INT8, another runtime or precision) reproduces a
reference model's *results*: the masks ``process`` writes, not the raw model grid.

Per stage, the candidate model replaces the reference model in an otherwise identical
pipeline, so the figure is that stage's alone: stage 1's through the cervix mask (after
the clean-up that keeps the largest component and fills holes), stage 2's through the
lesion mask drawn in the reference's own cervix crop (after ``min_lesion_fraction``). A
pixel that flips on the model grid but never reaches a written mask does not count;
one that does, counts at the photo's full size.
"""

from __future__ import annotations

import dataclasses
import statistics
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import structlog

from cervixbatch.errors import InputRejected
from cervixbatch.imaging.frames import Frame, ReadLimits
from cervixbatch.imaging.reader import read_input
from cervixbatch.segmentation.scores import dice
from cervixbatch.segmentation.two_stage import Pipeline, Predictor

__all__ = ["StageAgreement", "mask_agreement", "read_frames"]

log = structlog.get_logger(__name__)


@dataclasses.dataclass(slots=True)
class StageAgreement:
    """Dice between reference and candidate masks, one per photo, with the photo's name."""

    scores: list[float] = dataclasses.field(default_factory=list)
    names: list[str] = dataclasses.field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        """Count, mean, lowest and the photo of the lowest (1.0 for no photos)."""
        if not self.scores:
            return {"images": 0, "mean_dice": 1.0, "min_dice": 1.0, "worst_image": None}
        worst = min(range(len(self.scores)), key=self.scores.__getitem__)
        return {
            "images": len(self.scores),
            "mean_dice": round(statistics.fmean(self.scores), 5),
            "min_dice": round(self.scores[worst], 5),
            "worst_image": self.names[worst],
        }


def mask_agreement(
    reference: Pipeline,
    cervix: Predictor,
    lesion: Predictor,
    photos: Sequence[Path],
    *,
    batch_size: int,
    on_batch: Callable[[int], None] | None = None,
) -> dict[str, StageAgreement]:
    """Per stage, the agreement of ``cervix`` / ``lesion`` with ``reference``'s models on
    ``photos``. Stage 2 is scored on photos where the reference finds a cervix.
    Unreadable photos are skipped."""
    settings = reference.settings
    with_cervix = Pipeline(cervix, reference.lesion, settings)
    with_lesion = Pipeline(reference.cervix, lesion, settings)
    out = {"cervix": StageAgreement(), "lesion": StageAgreement()}
    for start in range(0, len(photos), batch_size):
        frames, names = read_frames(reference, photos[start : start + batch_size])
        expected = reference.run(frames)
        for name, ref, got in zip(names, expected, with_cervix.run(frames), strict=True):
            out["cervix"].scores.append(dice(ref.cervix_mask, got.cervix_mask))
            out["cervix"].names.append(name)
        for name, ref, got in zip(names, expected, with_lesion.run(frames), strict=True):
            if ref.cervix_found:
                out["lesion"].scores.append(dice(ref.lesion_mask, got.lesion_mask))
                out["lesion"].names.append(name)
        if on_batch is not None:
            on_batch(len(frames))
    return out


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
