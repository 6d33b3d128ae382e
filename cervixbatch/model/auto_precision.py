"""``models.precision = "auto"`` on OpenVINO: per stage, the fastest precision that passes.

1. INT8, where ``cervixbatch quantize`` wrote an INT8 model of this very float model
   whose card passes the gate (``model.int8.check_int8_card``: held-out mean Dice and
   lesion decisions flipped) and in which some convolution runs in INT8 (accuracy
   control may return every layer to float: that model is float32 by another name);
2. else bfloat16, where the CPU computes it natively and a bfloat16 card passes the same
   gate: ``quantize`` measures float32 against OpenVINO bfloat16 on the same held-out
   photos and writes ``NAME.bf16.card.json`` beside the INT8 card (measured once, kept
   like a card, refused when the float model changed);
3. else float32, which is the reference every agreement is measured against.

A precision whose agreement was never measured does not pass. Each choice carries the
sentence that says why, for the log, ``model-info``, ``status`` and the report.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from cervixbatch.config import Precision
from cervixbatch.errors import ModelError
from cervixbatch.model.int8 import card_verdict, check_int8_card, int8_paths, read_card
from cervixbatch.model.options import LoadOptions

__all__ = ["PrecisionChoice", "bf16_card_path", "choose_precision"]


@dataclasses.dataclass(frozen=True, slots=True)
class PrecisionChoice:
    """The precision one stage runs at under ``auto``, and why."""

    precision: Precision
    reason: str


def bf16_card_path(ref: str, stage: str, cache: Path | None) -> Path:
    """Where the bfloat16 agreement card of a stage lives: beside its INT8 card."""
    card = int8_paths(ref, stage, cache).card
    return card.with_name(card.name.replace(".int8.card.json", ".bf16.card.json"))


def choose_precision(
    ref: str, stage: str, version: str, options: LoadOptions, *, cpu_bf16: bool
) -> PrecisionChoice:
    """The fastest precision of ``stage`` (model ``ref`` with sha256 ``version``) whose
    agreement card passes the gate on this machine; float32 when none does."""
    refused = []
    try:
        paths = int8_paths(ref, stage, options.cache)
    except ModelError as exc:
        refused.append(f"int8: {exc}")
    else:
        if paths.card.is_file():
            try:
                verdict = check_int8_card(
                    paths, stage=stage, version=version, minimum=options.min_agreement_dice
                )
            except ModelError as exc:
                refused.append(f"int8 refused: {exc}")
            else:
                if _int8_convolutions(paths.card) != 0:
                    return PrecisionChoice(
                        Precision.INT8, f"int8, its card passes: {verdict.reason}"
                    )
                refused.append(
                    "int8: its card passes, but quantize's search kept every convolution in "
                    "float (no INT8 layer, so no INT8 speed)"
                )
        else:
            refused.append("int8: no INT8 model (`cervixbatch quantize` makes one)")
    if not cpu_bf16:
        refused.append("bfloat16: not native on this CPU")
    else:
        passed, why = _bf16_verdict(ref, stage, version, options)
        if passed:
            return PrecisionChoice(
                Precision.MIXED_BFLOAT16,
                f"bfloat16, its card passes: {why} ({'; '.join(refused)})",
            )
        refused.append(why)
    return PrecisionChoice(Precision.FLOAT32, "float32: " + "; ".join(refused))


def _int8_convolutions(card_path: Path) -> int | None:
    """How many convolutions of the INT8 model run in INT8, from its card (None: unknown,
    e.g. a card written before quantize counted them)."""
    count = read_card(card_path).get("calibration", {}).get("convolutions_in_int8")
    return None if count is None else int(count)


def _bf16_verdict(ref: str, stage: str, version: str, options: LoadOptions) -> tuple[bool, str]:
    """Whether the bfloat16 card of this model passes, and the sentence that says why."""
    try:
        path = bf16_card_path(ref, stage, options.cache)
        card = read_card(path)
    except ModelError as exc:
        return False, f"bfloat16: {exc}"
    if card.get("float_model", {}).get("sha256") != version:
        return False, "bfloat16: its card is of another float model (run `cervixbatch quantize`)"
    verdict = card_verdict(card, stage=stage, minimum=options.min_agreement_dice)
    if verdict.passed:
        return True, verdict.reason
    return False, f"bfloat16 refused: {verdict.reason}"
