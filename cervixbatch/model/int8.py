"""Where a stage's INT8 model lives, its agreement card, and the gate that reads the card.

``cervixbatch quantize`` (``tools.quantize``) writes, beside a model file ``m.keras``:
``m.int8.xml`` and ``m.int8.bin`` (the OpenVINO IR) and ``m.int8.card.json``; for
``builtin:demo`` the same names (``demo-cervix.int8.*``) in the model cache. The card
says which float model was quantized (its sha256), on which calibration photos, and how
well the INT8 masks agree with the float masks on held-out photos. An INT8 model is used
only when its card matches the float model in use and the IR files, and shows agreement
of at least ``models.min_agreement_dice`` on every stage and flips the lesion decision
(lesion-positive at the report's threshold) on at most ``MAX_DECISION_FLIP_SHARE`` of the
held-out photos.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

from cervixbatch.errors import ModelError
from cervixbatch.model.loading import file_sha256

__all__ = [
    "CARD_FORMAT",
    "MAX_DECISION_FLIP_SHARE",
    "CardVerdict",
    "Int8Paths",
    "card_verdict",
    "check_int8_card",
    "int8_paths",
    "read_card",
]

# /2: the agreement holds the lesion decisions flipped and the largest lesion-fraction
# change; a /1 card lacks them and is refused ("run quantize again")
CARD_FORMAT = "cervixbatch-int8-card/2"
# a model that flips more photos' lesion decisions than this is refused, whatever its Dice:
# a mean Dice of 0.99 can hide a lesion lost on one photo in fifty
MAX_DECISION_FLIP_SHARE = 0.02


@dataclasses.dataclass(frozen=True, slots=True)
class CardVerdict:
    """Whether a card's held-out agreement clears the gate, and the sentence that says why."""

    passed: bool
    reason: str
    mean_dice: float
    decision_flip_share: float
    max_lesion_fraction_change: float
    held_out: int


@dataclasses.dataclass(frozen=True, slots=True)
class Int8Paths:
    """The three files of one stage's INT8 model."""

    xml: Path
    bin: Path
    card: Path


def int8_paths(ref: str, stage: str, cache: Path | None) -> Int8Paths:
    """Beside the model file; for ``builtin:demo`` in the cache folder (the package's own
    folder may be read-only)."""
    if ref.startswith("builtin:"):
        if cache is None:
            raise ModelError(
                f"the INT8 {stage} model of {ref} lives in the model cache, and there is "
                "none: set models.cache (a folder)"
            )
        stem = cache / f"{ref.removeprefix('builtin:')}-{stage}"
    else:
        path = Path(ref)
        stem = path.with_name(path.name.rsplit(".", 1)[0])
    return Int8Paths(
        xml=stem.with_name(stem.name + ".int8.xml"),
        bin=stem.with_name(stem.name + ".int8.bin"),
        card=stem.with_name(stem.name + ".int8.card.json"),
    )


def read_card(path: Path) -> dict[str, Any]:
    """The card as a dict; a ModelError naming the file when it is missing or malformed."""
    try:
        card = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ModelError(
            f"no agreement card {path.name} in {path.parent}: run `cervixbatch quantize` "
            "(or choose another models.precision)"
        ) from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelError(f"agreement card {path} cannot be read: {exc}") from exc
    if not isinstance(card, dict) or card.get("format") != CARD_FORMAT:
        raise ModelError(
            f"{path} is not an agreement card of this version ({CARD_FORMAT}): run "
            "`cervixbatch quantize` again"
        )
    return card


def card_verdict(card: dict[str, Any], *, stage: str, minimum: float) -> CardVerdict:
    """The gate on a card's held-out figures: mean Dice of the written masks at least
    ``minimum`` and lesion decisions flipped on at most ``MAX_DECISION_FLIP_SHARE`` of the
    photos. A card without the figures fails, naming what it lacks."""
    precision = str(card.get("precision", "int8"))
    try:
        agreement = card["agreement"]
        mean = float(agreement["mean_dice"])
        flips = float(agreement["decision_flip_share"])
        change = float(agreement["max_lesion_fraction_change"])
        held_out = int(agreement["held_out"])
    except (KeyError, TypeError, ValueError) as exc:
        return CardVerdict(
            passed=False,
            reason=f"{stage} {precision}: the card lacks {exc}: run `cervixbatch quantize` again",
            mean_dice=0.0,
            decision_flip_share=1.0,
            max_lesion_fraction_change=1.0,
            held_out=0,
        )
    figures = (
        f"{stage} {precision}: mean Dice {mean:.4f}, lesion decision flipped on {flips:.1%} "
        f"of {held_out} held-out photos, largest lesion-fraction change {change:.3f}"
    )
    failures = []
    if held_out < 1:
        failures.append("no held-out photo")
    if mean < minimum:
        failures.append(f"Dice below models.min_agreement_dice = {minimum:.4f}")
    if flips > MAX_DECISION_FLIP_SHARE:
        failures.append(f"more than {MAX_DECISION_FLIP_SHARE:.0%} of decisions flipped")
    return CardVerdict(
        passed=not failures,
        reason="; ".join([figures, *failures]),
        mean_dice=mean,
        decision_flip_share=flips,
        max_lesion_fraction_change=change,
        held_out=held_out,
    )


def check_int8_card(paths: Int8Paths, *, stage: str, version: str, minimum: float) -> CardVerdict:
    """Refuses (ModelError) an INT8 model whose card is missing, made from another float
    model, does not match the IR files, or whose held-out agreement fails the gate
    (``card_verdict``); returns the verdict of a card that passes."""
    card = read_card(paths.card)
    try:
        float_sha = card["float_model"]["sha256"]
        files = card["int8_model"]
    except (KeyError, TypeError) as exc:
        raise ModelError(f"INT8 model card {paths.card} lacks {exc}") from exc
    if float_sha != version:
        raise ModelError(
            f"the INT8 {stage} model ({paths.xml.name}) was made from another {stage} "
            f"model (sha256 {float_sha[:12]}, in use {version[:12]}): run "
            "`cervixbatch quantize` again"
        )
    for path, key in ((paths.xml, "xml_sha256"), (paths.bin, "bin_sha256")):
        if not path.is_file() or file_sha256(path) != files.get(key):
            raise ModelError(
                f"{path.name} is missing or changed since its card was written: run "
                "`cervixbatch quantize` again"
            )
    verdict = card_verdict(card, stage=stage, minimum=minimum)
    if not verdict.passed:
        raise ModelError(
            f"the INT8 model agrees too little with the float model ({verdict.reason}): "
            "refused. Quantize with more or other photos, or use "
            'models.precision = "float32"'
        )
    return verdict
