"""What ``cervixbatch quantize`` calibrates and validates on: each stage's inputs as
inference gives them (stage 1 the whole photo, stage 2 the crop that the float stage 1
found, made by the pipeline's own functions), and the float model's masks of them."""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import numpy.typing as npt

from cervixbatch.segmentation.two_stage import (
    Pipeline,
    PipelineSettings,
    Predictor,
    cervix_input,
    lesion_input,
    min_lesion_cells,
)
from cervixbatch.tools.quantize.agreement import read_frames
from cervixbatch.tools.quantize.search import VALIDATION_ITEMS, ValidationItem, grid_mask

__all__ = ["StageSamples", "fingerprint", "stage_samples", "validation_items"]


Floats = npt.NDArray[np.float32]


@dataclasses.dataclass(slots=True)
class StageSamples:
    """Model inputs of a set of photos, per stage, with the name of each sample's photo."""

    cervix: list[Floats] = dataclasses.field(default_factory=list)
    cervix_names: list[str] = dataclasses.field(default_factory=list)
    lesion: list[Floats] = dataclasses.field(default_factory=list)
    lesion_names: list[str] = dataclasses.field(default_factory=list)
    lesion_min_cells: list[float] = dataclasses.field(default_factory=list)
    lesion_cervix_cells: list[float] = dataclasses.field(default_factory=list)
    skipped: int = 0

    def of(self, stage: str) -> tuple[list[Floats], list[str]]:
        """The inputs of one stage and the photo each came from."""
        if stage == "cervix":
            return self.cervix, self.cervix_names
        return self.lesion, self.lesion_names


def stage_samples(pipeline: Pipeline, photos: Sequence[Path], batch_size: int) -> StageSamples:
    """Each photo's stage-1 input and, where the float stage 1 finds a cervix, the
    stage-2 input of its crop. Unreadable files are skipped and counted."""
    samples = StageSamples()
    for start in range(0, len(photos), batch_size):
        chunk = photos[start : start + batch_size]
        frames, names = read_frames(pipeline, chunk)
        samples.skipped += len(chunk) - len(frames)
        size1, channels1 = pipeline.cervix.input_size, pipeline.cervix.input_channels
        size2, channels2 = pipeline.lesion.input_size, pipeline.lesion.input_channels
        for frame, name, result in zip(frames, names, pipeline.run(frames), strict=True):
            samples.cervix.append(cervix_input(frame.rgb, size1, channels1))
            samples.cervix_names.append(name)
            if result.crop is not None:
                samples.lesion.append(lesion_input(result.crop, size2, channels2))
                samples.lesion_names.append(name)
                assert result.source is not None  # a crop always comes with its source
                fraction = pipeline.settings.min_lesion_fraction
                samples.lesion_min_cells.append(min_lesion_cells(result.source, fraction))
                samples.lesion_cervix_cells.append(min_lesion_cells(result.source, 1.0))
    return samples


def fingerprint(photos: Sequence[Path]) -> str:
    """sha256 over the calibration photos' own sha256s, in name order: the same set of
    bytes gives the same fingerprint wherever it lies."""
    digest = hashlib.sha256()
    for path in sorted(photos, key=lambda p: p.name):
        with path.open("rb") as handle:
            digest.update(hashlib.file_digest(handle, "sha256").digest())
    return digest.hexdigest()


def validation_items(
    stage: Predictor, name: str, samples: StageSamples, settings: PipelineSettings
) -> list[ValidationItem]:
    """The first calibration inputs with the float model's cleaned masks of them."""
    inputs, _ = samples.of(name)
    inputs = inputs[:VALIDATION_ITEMS]
    zeros = [0.0] * len(inputs)
    cells = samples.lesion_min_cells if name == "lesion" else zeros
    cervix_cells = samples.lesion_cervix_cells if name == "lesion" else zeros
    if not inputs:
        return []
    probs = stage.predict_batch(np.stack(inputs))
    return [
        ValidationItem(x, grid_mask(name, prob, settings, min_cells), min_cells, cervix)
        for x, prob, min_cells, cervix in zip(inputs, probs, cells, cervix_cells, strict=False)
    ]
