"""Where a stage's INT8 model lives, its agreement card, and the gate that reads the card.

``cervixbatch quantize`` (``tools.quantize``) writes, beside a model file ``m.keras``:
``m.int8.xml`` and ``m.int8.bin`` (the OpenVINO IR) and ``m.int8.card.json``; for
``builtin:demo`` the same names (``demo-cervix.int8.*``) in the model cache. The card
says which float model was quantized (its sha256), on which calibration photos, and how
well the INT8 masks agree with the float masks on held-out photos. An INT8 model is used
only when its card matches the float model in use and the IR files, and shows agreement
of at least ``models.min_agreement_dice`` on every stage.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

from cervixbatch.errors import ModelError
from cervixbatch.model.stage import file_sha256

__all__ = ["CARD_FORMAT", "Int8Paths", "check_int8_card", "int8_paths", "read_card"]

CARD_FORMAT = "cervixbatch-int8-card/1"


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
            f"no INT8 model card {path.name} in {path.parent}: run `cervixbatch quantize` "
            "(or choose another models.precision)"
        ) from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelError(f"INT8 model card {path} cannot be read: {exc}") from exc
    if not isinstance(card, dict) or card.get("format") != CARD_FORMAT:
        raise ModelError(f"{path} is not an INT8 model card of this version ({CARD_FORMAT})")
    return card


def check_int8_card(paths: Int8Paths, *, stage: str, version: str, minimum: float) -> None:
    """Refuses (ModelError) an INT8 model whose card is missing, made from another float
    model, does not match the IR files, or shows agreement below ``minimum``."""
    card = read_card(paths.card)
    try:
        float_sha = card["float_model"]["sha256"]
        files = card["int8_model"]
        agreement = float(card["agreement"]["mean_dice"])
        held_out = int(card["agreement"]["held_out"])
    except (KeyError, TypeError, ValueError) as exc:
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
    if agreement < minimum:
        raise ModelError(
            f"the INT8 {stage} model agrees with the float model at mean Dice "
            f"{agreement:.4f} on {held_out} held-out photos, below models.min_agreement_dice "
            f"= {minimum:.4f}: refused. Quantize with more or other photos, or use "
            'models.precision = "float32"'
        )
