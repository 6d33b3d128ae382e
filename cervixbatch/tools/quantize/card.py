"""The agreement card ``cervixbatch quantize`` writes beside each INT8 model, and the
files put into place with it.

The card's ``agreement`` holds the held-out figures the daemon gates on
(``model.int8.card_verdict``): the mean and lowest Dice of the written masks, the lesion
decisions flipped and the largest change of lesion fraction. ``selection`` says how the
layers kept in float were chosen: each try's figures on the calibration photos the
search never saw.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import os
import tempfile
from pathlib import Path
from typing import Any

from cervixbatch.model.int8 import CARD_FORMAT, Int8Paths, card_verdict
from cervixbatch.outputs.atomic import fsync_dir
from cervixbatch.tools.quantize.agreement import StageAgreement
from cervixbatch.version import __version__

__all__ = [
    "StageCard",
    "agreement_figures",
    "make_card",
    "stage_card",
    "write_bf16_card",
    "write_int8",
]

MEASURED = (
    "float32 vs INT8 on held-out photos (OpenVINO, this CPU): Dice of the masks `process` "
    "writes, at full size, with only this stage's model swapped; a lesion decision flips "
    "when the photo is lesion-positive (lesion fraction above positive_threshold, the "
    "report's rule) under one model and not the other"
)


@dataclasses.dataclass(frozen=True, slots=True)
class StageCard:
    """What quantizing one stage gave."""

    stage: str
    paths: Int8Paths
    mean_dice: float
    min_dice: float
    worst_image: str
    held_out: int
    calibration: int
    convolutions_in_int8: int | None  # None: not counted (plain quantization of old cards)
    decision_flip_share: float
    decision_flips: int
    max_lesion_fraction_change: float
    passed: bool  # the gate (model.int8.card_verdict): the daemon will use it
    reason: str  # the gate's sentence: the figures, and what fails


def agreement_figures(agreement: StageAgreement, threshold: float | str) -> dict[str, Any]:
    """The card's ``agreement`` block from one stage's agreement on held-out photos."""
    summary = agreement.summary()
    images = summary["images"]
    return {
        "held_out": images,
        "threshold": threshold,
        "mean_dice": summary["mean_dice"] if images else 0.0,
        "min_dice": summary["min_dice"] if images else 0.0,
        "largest_disagreement": (
            {"image": summary["worst_image"], "dice": summary["min_dice"]} if images else None
        ),
        "positive_threshold": summary["positive_threshold"],
        "decision_flips": summary["decision_flips"],
        "decision_flip_share": summary["decision_flip_share"],
        "flipped_images": summary["flipped_images"],
        "max_lesion_fraction_change": summary["max_lesion_fraction_change"],
        "largest_fraction_change_image": summary["largest_fraction_change_image"],
        "measured": MEASURED,
    }


def make_card(
    stage: str,
    *,
    float_model: dict[str, str],
    calibration: dict[str, Any],
    agreement: dict[str, Any],
    selection: list[dict[str, Any]],
) -> dict[str, Any]:
    """The card of one stage's INT8 model (the IR files' sha256 are added on writing)."""
    import nncf
    import openvino as ov

    return {
        "format": CARD_FORMAT,
        "stage": stage,
        "precision": "int8",
        "float_model": float_model,
        "calibration": calibration,
        "selection": selection,
        "agreement": agreement,
        "versions": {
            "cervixbatch": __version__,
            "openvino": ov.get_version(),
            "nncf": nncf.__version__,
        },
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
    }


def write_int8(model: Any, card: dict[str, Any], paths: Int8Paths) -> None:
    """IR and card into place: each file written to a temporary name and renamed, the card
    last. A reader between the renames sees files that do not match the card: refused."""
    import openvino as ov

    from cervixbatch.model.loading import file_sha256

    folder = paths.xml.parent
    folder.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".int8-", dir=folder) as tmp:
        staged = Path(tmp) / "model.xml"
        ov.save_model(model, staged, compress_to_fp16=False)
        staged_bin = staged.with_suffix(".bin")
        card["int8_model"] = {
            "xml": paths.xml.name,
            "bin": paths.bin.name,
            "xml_sha256": file_sha256(staged),
            "bin_sha256": file_sha256(staged_bin),
        }
        staged_card = Path(tmp) / "card.json"
        staged_card.write_text(json.dumps(card, indent=2) + "\n", encoding="utf-8")
        # OpenVINO finds the weights by the XML's own name: NAME.xml reads NAME.bin
        moves = ((staged_bin, paths.bin), (staged, paths.xml), (staged_card, paths.card))
        for source, target in moves:
            with source.open("rb") as handle:
                os.fsync(handle.fileno())
            source.replace(target)
        fsync_dir(folder)  # the renames themselves reach the disk


def write_bf16_card(
    path: Path, stage: str, *, float_model: dict[str, str], agreement: dict[str, Any]
) -> None:
    """The agreement card of OpenVINO bfloat16 against float32 for one stage (no model
    files: bfloat16 runs the float IR), written atomically; ``auto`` reads it."""
    import openvino as ov

    card = {
        "format": CARD_FORMAT,
        "stage": stage,
        "precision": "bfloat16",
        "float_model": float_model,
        "agreement": {**agreement, "measured": MEASURED.replace("INT8", "OpenVINO bfloat16")},
        "versions": {"cervixbatch": __version__, "openvino": ov.get_version()},
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(
        "w", encoding="utf-8", dir=path.parent, prefix=".bf16-", delete=False
    ) as handle:
        handle.write(json.dumps(card, indent=2) + "\n")
        handle.flush()
        os.fsync(handle.fileno())
    Path(handle.name).replace(path)
    fsync_dir(path.parent)


def stage_card(stage: str, paths: Int8Paths, card: dict[str, Any], minimum: float) -> StageCard:
    """The summary of a written card, with the gate's verdict."""
    agreement = card["agreement"]
    worst = agreement["largest_disagreement"] or {"image": "", "dice": 0.0}
    verdict = card_verdict(card, stage=stage, minimum=minimum)
    return StageCard(
        stage=stage,
        paths=paths,
        mean_dice=agreement["mean_dice"],
        min_dice=agreement["min_dice"],
        worst_image=worst["image"],
        held_out=agreement["held_out"],
        calibration=card["calibration"]["inputs"],
        convolutions_in_int8=card["calibration"].get("convolutions_in_int8"),
        decision_flip_share=agreement["decision_flip_share"],
        decision_flips=agreement["decision_flips"],
        max_lesion_fraction_change=agreement["max_lesion_fraction_change"],
        passed=verdict.passed,
        reason=verdict.reason,
    )
