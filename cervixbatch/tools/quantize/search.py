"""NNCF quantization of one stage, with accuracy control against the float model.

Plain post-training quantization puts every convolution in INT8. Where that moves the
masks too much, ``nncf.quantize_with_accuracy_control`` ranks the quantized operations by
how much each moves them and returns the most sensitive ones to float, one group at a
time, until the agreement with the float model on a validation set (calibration photos,
never the held-out ones the card reports) has dropped by at most ``max_drop``. The
agreement is that of the stage's masks on its own grid, cleaned as the pipeline cleans
them (stage 1: the largest component, holes filled; stage 2: regions under
``min_lesion_fraction`` dropped), so a flip that no written mask would show costs nothing.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import statistics
import sys
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from cervixbatch.segmentation.roi import drop_small_regions
from cervixbatch.segmentation.scores import dice
from cervixbatch.segmentation.two_stage import PipelineSettings, cervix_component, lesion_cut

__all__ = [
    "ValidationItem",
    "grid_mask",
    "item_score",
    "quantize_stage",
    "quantized_operations",
]

Floats = npt.NDArray[np.float32]
Mask = npt.NDArray[np.uint8]
VALIDATION_ITEMS = 96  # enough to rank ~20 layer groups; each check re-runs them all


@dataclasses.dataclass(frozen=True, slots=True)
class ValidationItem:
    """One validation input with what the float model made of it."""

    inputs: Floats
    reference: Mask  # the float model's cleaned mask on the grid
    min_cells: float = 0.0  # stage 2: min_lesion_fraction in grid cells for this photo
    cervix_cells: float = 0.0  # stage 2: the photo's cervix area in grid cells (0: unknown)


def item_score(
    stage: str, item: ValidationItem, got: Mask, positive_threshold: float | None
) -> float:
    """One validation input's agreement: the Dice of the cleaned grid masks, and 0 where
    the lesion decision flips (stage 2, the fraction of the cervix above the report's
    threshold under one model and not the other), so that the search returns to float
    first the layers that change a reader's answer, not only those that move borders."""
    score = dice(item.reference, got)
    if stage != "lesion" or positive_threshold is None or item.cervix_cells <= 0:
        return score
    was = int(item.reference.sum()) / item.cervix_cells > positive_threshold
    now = int(got.sum()) / item.cervix_cells > positive_threshold
    return score if was == now else 0.0


def grid_mask(stage: str, prob: Floats, settings: PipelineSettings, min_cells: float = 0.0) -> Mask:
    """A stage's probability map as the pipeline turns it into a mask, on the model grid."""
    if stage == "cervix":
        return cervix_component(prob, settings)
    scores = (prob * 255.0).astype(np.uint8)
    cut = lesion_cut(settings)
    drop_small_regions(scores, cut, min_cells)
    return (scores > cut).astype(np.uint8)


def quantize_stage(
    model: Any,
    stage: str,
    inputs: Sequence[Floats],
    validation: Sequence[ValidationItem],
    settings: PipelineSettings,
    *,
    max_drop: float,
    positive_threshold: float | None = None,
) -> Any:
    """The INT8 OpenVINO model of one stage; with ``validation`` items and ``max_drop``
    > 0, accuracy-controlled (see the module's docstring), else plain. With
    ``positive_threshold``, a stage-2 input whose lesion decision flips scores 0."""
    import nncf

    nncf.set_log_level(logging.WARNING)
    calibration = nncf.Dataset(list(inputs), lambda x: x[None])
    # NNCF draws progress bars on stdout, which is the commands' output (bench's JSON)
    with contextlib.redirect_stdout(sys.stderr):
        if not validation or max_drop <= 0:
            return nncf.quantize(model, calibration, subset_size=len(inputs))

        def agreement(compiled: Any, items: Iterable[ValidationItem]) -> tuple[float, list[float]]:
            scores = []
            for item in items:
                prob = np.asarray(compiled(item.inputs[None])[0])[0]
                got = grid_mask(stage, prob, settings, item.min_cells)
                scores.append(item_score(stage, item, got, positive_threshold))
            return statistics.fmean(scores), scores

        return nncf.quantize_with_accuracy_control(
            model,
            calibration,
            nncf.Dataset(list(validation), lambda item: item.inputs[None]),
            agreement,
            max_drop=max_drop,
            drop_type=nncf.DropType.ABSOLUTE,
            subset_size=len(inputs),
        )


def quantized_operations(float_model: Any, quantized: Any) -> dict[str, Any]:
    """How the INT8 model came out: its convolutions and how many of them run in INT8
    (those fed by a quantizer); the rest stayed in float."""
    convolutions = sum(1 for op in float_model.get_ops() if "Convolution" in op.get_type_name())
    int8 = 0
    for op in quantized.get_ops():
        if "Convolution" not in op.get_type_name():
            continue
        feeds = (op.input_value(i).get_node() for i in range(op.get_input_size()))
        if any(_quantizer_above(node) for node in feeds):
            int8 += 1
    return {"method": "nncf", "convolutions": convolutions, "convolutions_in_int8": int8}


def _quantizer_above(node: Any, depth: int = 3) -> bool:
    """Whether a FakeQuantize feeds ``node`` directly or through a few converts."""
    for _ in range(depth):
        if node.get_type_name() == "FakeQuantize":
            return True
        if node.get_input_size() == 0:
            return False
        node = node.input_value(0).get_node()
    return node.get_type_name() == "FakeQuantize"
