"""``cervixbatch quantize``: INT8 models for the OpenVINO runtime, with their agreement card.

Post-training quantization with NNCF: the float OpenVINO model of each stage runs over
calibration photos (the user's own, or synthetic ones with a warning) to set the INT8
ranges. Then float and INT8 results are compared on held-out photos, never used for
calibration: per stage the mean Dice between the masks ``process`` writes with the float
and with the INT8 model of that stage, and the largest disagreement
(``tools/agreement.py``).
The card records that, the calibration set and the float model's sha256;
``model.int8.check_int8_card`` reads it at every start.

Both stages see what inference gives them: stage 1 the whole photo, stage 2 the crop
that the float stage 1 found, made by the pipeline's own functions.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import os
import random
import tempfile
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import structlog

from cervixbatch.config import Config, Precision
from cervixbatch.errors import CervixbatchError
from cervixbatch.intake.rules import InputRule
from cervixbatch.model.int8 import CARD_FORMAT, Int8Paths, int8_paths
from cervixbatch.model.runtime import cache_folder
from cervixbatch.outputs.atomic import fsync_dir
from cervixbatch.segmentation.two_stage import Pipeline, PipelineSettings
from cervixbatch.tools.quantize.agreement import StageAgreement, mask_agreement
from cervixbatch.tools.quantize.calibration import fingerprint, stage_samples, validation_items
from cervixbatch.tools.quantize.search import (
    quantize_stage,
    quantized_operations,
)
from cervixbatch.version import __version__

__all__ = [
    "QuantizeOptions",
    "StageCard",
    "quantize_models",
]

log = structlog.get_logger(__name__)

Floats = npt.NDArray[np.float32]
_SYNTH_SIZE = (800, 600)  # the stages see 128-512 px inputs; synth takes ~1 s a photo


@dataclasses.dataclass(frozen=True, slots=True)
class QuantizeOptions:
    """What to calibrate on and how many photos to hold out for the agreement."""

    images: Path | None = None  # None: synthetic photos (a warning says so)
    count: int = 300  # calibration photos (NNCF's advice: about 300)
    held_out: int = 50  # photos for the agreement, never calibrated on
    seed: int = 0  # shuffles the photos before the split; seeds synthetic photos
    # how far the validation agreement may drop before the most sensitive layers go back
    # to float (tools/int8_search.py); None: half the gate's margin, (1 - minimum) / 2;
    # 0: plain post-training quantization, every layer in INT8
    max_drop: float | None = None


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
    passed: bool  # mean_dice >= models.min_agreement_dice: the daemon will use it


def quantize_models(
    config: Config,
    options: QuantizeOptions,
    *,
    on_progress: Callable[[str], None] | None = None,
) -> list[StageCard]:
    """Quantizes both configured stages and writes each INT8 model with its card."""
    from cervixbatch.model.openvino_rt import OpenVinoStage, compile_stage, float_ir, model_files
    from cervixbatch.model.stage import Stage, file_sha256

    say = on_progress or (lambda _text: None)
    cache = cache_folder(config)
    with _photo_set(options) as (photos, description):
        calibration, held_out = _split(photos, options)
        say(f"{len(calibration)} calibration photos, {len(held_out)} held out")
        refs = {"cervix": config.models.cervix, "lesion": config.models.lesion}
        float_models: dict[str, Any] = {}
        float_stages: dict[str, OpenVinoStage] = {}
        versions: dict[str, str] = {}
        for name, ref in refs.items():
            stage = Stage(name)
            versions[name] = file_sha256(*model_files(ref, stage))
            float_models[name] = float_ir(ref, stage, versions[name], cache)
            float_stages[name] = OpenVinoStage(
                compile_stage(float_models[name], config.batch.size, Precision.FLOAT32),
                stage=stage,
                version=versions[name],
                source=ref,
                batch_size=config.batch.size,
                precision=Precision.FLOAT32,
            )
        pipeline = Pipeline(float_stages["cervix"], float_stages["lesion"], _settings(config))
        say("reading photos")
        calib = stage_samples(pipeline, calibration, config.batch.size)
        description["skipped"] = calib.skipped
        description["fingerprint"] = fingerprint(calibration)
        int8: dict[str, tuple[Any, OpenVinoStage]] = {}
        methods: dict[str, dict[str, Any]] = {}
        max_drop = _max_drop(config, options)
        for name, ref in refs.items():
            inputs, _ = calib.of(name)
            if not inputs:
                raise CervixbatchError(
                    f"no calibration input for the {name} stage: stage 1 found no cervix in "
                    "any calibration photo"
                )
            say(f"quantizing the {name} stage on {len(inputs)} inputs")
            methods[name] = {"max_drop": max_drop}
            quantized = quantize_stage(
                float_models[name],
                name,
                inputs,
                validation_items(float_stages[name], name, calib, pipeline.settings),
                pipeline.settings,
                max_drop=max_drop,
            )
            methods[name].update(quantized_operations(float_models[name], quantized))
            int8[name] = (
                quantized,
                OpenVinoStage(
                    compile_stage(quantized, config.batch.size, Precision.INT8),
                    stage=Stage(name),
                    version=versions[name],
                    source=ref,
                    batch_size=config.batch.size,
                    precision=Precision.INT8,
                ),
            )
        say(f"comparing float32 and INT8 masks on {len(held_out)} held-out photos")
        agreed = mask_agreement(
            pipeline, int8["cervix"][1], int8["lesion"][1], held_out, batch_size=config.batch.size
        )
        cards = []
        for name, ref in refs.items():
            card = _card(
                name,
                float_model={"source": ref, "sha256": versions[name]},
                calibration={**description, "inputs": len(calib.of(name)[0]), **methods[name]},
                agreement=agreed[name],
                threshold=_threshold(config, name),
            )
            paths = int8_paths(ref, name, cache)
            _write_int8(int8[name][0], card, paths)
            cards.append(_summary(name, paths, card, config.models.min_agreement_dice))
            log.info(
                "int8_model_written",
                stage=name,
                mean_dice=card["agreement"]["mean_dice"],
                held_out=card["agreement"]["held_out"],
            )
    return cards


# -- photos ----------------------------------------------------------------------------------


@contextmanager
def _photo_set(options: QuantizeOptions) -> Iterator[tuple[list[Path], dict[str, Any]]]:
    """The user's photos, or synthetic ones in a temporary folder (removed afterwards)."""
    if options.images is not None:
        photos = sorted(InputRule(options.images).files())
        if len(photos) < 2:
            raise CervixbatchError(
                f"{options.images} holds {len(photos)} files: at least 2 photos are needed "
                f"(one to calibrate, one to check), about {options.count} recommended"
            )
        yield photos, {"source": "folder", "folder": str(options.images)}
        return
    from cervixbatch.tools.synth.v1 import write_dataset

    log.warning(
        "calibrating_on_synthetic_photos",
        detail="no --images given: the agreement is measured on synthetic photos, not yours",
    )
    with tempfile.TemporaryDirectory(prefix="cervixbatch-quantize-") as tmp:
        total = options.count + options.held_out
        stems = write_dataset(Path(tmp), total, seed=options.seed, size=_SYNTH_SIZE)
        photos = [Path(tmp) / "images" / f"{stem}.jpg" for stem in stems]
        yield photos, {"source": "synthetic", "synth_seed": options.seed, "size": _SYNTH_SIZE}


def _split(photos: Sequence[Path], options: QuantizeOptions) -> tuple[list[Path], list[Path]]:
    """Held-out photos first (a fifth at most, at least one), the rest for calibration;
    shuffled with the seed so that a folder sorted by date is not split by date."""
    order = list(photos)
    random.Random(options.seed).shuffle(order)  # noqa: S311 - a reproducible split, no secret
    held = min(options.held_out, max(1, len(order) // 5))
    return order[held : held + options.count], order[:held]


def _settings(config: Config) -> PipelineSettings:
    return PipelineSettings.from_config(config.models)


# -- quantization and the card ----------------------------------------------------------------


def _max_drop(config: Config, options: QuantizeOptions) -> float:
    if options.max_drop is not None:
        return options.max_drop
    return round(max(0.0, (1.0 - config.models.min_agreement_dice) / 2), 6)


def _threshold(config: Config, stage: str) -> float | str:
    if stage == "cervix":
        return config.models.cervix_threshold
    return config.models.lesion_threshold


def _card(
    stage: str,
    *,
    float_model: dict[str, str],
    calibration: dict[str, Any],
    agreement: StageAgreement,
    threshold: float | str,
) -> dict[str, Any]:
    import nncf
    import openvino as ov

    summary = agreement.summary()
    return {
        "format": CARD_FORMAT,
        "stage": stage,
        "float_model": float_model,
        "calibration": calibration,
        "agreement": {
            "held_out": summary["images"],
            "threshold": threshold,
            "mean_dice": summary["mean_dice"] if summary["images"] else 0.0,
            "min_dice": summary["min_dice"] if summary["images"] else 0.0,
            "largest_disagreement": {"image": summary["worst_image"], "dice": summary["min_dice"]}
            if summary["images"]
            else None,
            "measured": (
                "float32 vs INT8 on held-out photos (OpenVINO, this CPU): Dice of the masks "
                "`process` writes, at full size, with only this stage's model swapped"
            ),
        },
        "versions": {
            "cervixbatch": __version__,
            "openvino": ov.get_version(),
            "nncf": nncf.__version__,
        },
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
    }


def _write_int8(model: Any, card: dict[str, Any], paths: Int8Paths) -> None:
    """IR and card into place: each file written to a temporary name and renamed, the card
    last. A reader between the renames sees files that do not match the card: refused."""
    import openvino as ov

    from cervixbatch.model.stage import file_sha256

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


def _summary(stage: str, paths: Int8Paths, card: dict[str, Any], minimum: float) -> StageCard:
    agreement_ = card["agreement"]
    worst = agreement_["largest_disagreement"] or {"image": "", "dice": 0.0}
    return StageCard(
        stage=stage,
        paths=paths,
        mean_dice=agreement_["mean_dice"],
        min_dice=agreement_["min_dice"],
        worst_image=worst["image"],
        held_out=agreement_["held_out"],
        calibration=card["calibration"]["inputs"],
        passed=agreement_["mean_dice"] >= minimum,
    )
