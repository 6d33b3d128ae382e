"""``cervixbatch quantize``: INT8 models for the OpenVINO runtime, with their agreement card.

Post-training quantization with NNCF, on three disjoint sets of photos:

- **fit** (most of the calibration photos): each stage's inputs as inference gives them
  (stage 1 the whole photo, stage 2 the crop the float stage 1 makes, cut by the
  pipeline's own functions) set the INT8 ranges, and the accuracy-controlled search
  (``search.py``) returns the layers that move the masks most to float;
- **selection** (a share of the calibration photos the search never saw): each try of
  the search, from the loosest ``max_drop`` to stricter ones, is checked there with the
  gate's own figures (written masks, lesion decisions); the first try that clears the
  gate is kept, so what stays in float is chosen on photos out of the search's sample;
- **held out** (never calibrated on, never used to choose): the figures the card
  records and the daemon gates on (``model.int8.card_verdict``).
"""

from __future__ import annotations

import dataclasses
import random
import tempfile
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import structlog

from cervixbatch.config import Config, Precision
from cervixbatch.errors import CervixbatchError
from cervixbatch.intake.rules import InputRule
from cervixbatch.model.auto_precision import bf16_card_path
from cervixbatch.model.int8 import Int8Paths, card_verdict, int8_paths
from cervixbatch.model.options import cache_folder
from cervixbatch.model.stage_names import Stage
from cervixbatch.segmentation.two_stage import Pipeline, PipelineSettings
from cervixbatch.tools.quantize.agreement import (
    StageAgreement,
    frames_agreement,
    read_frames,
)
from cervixbatch.tools.quantize.calibration import fingerprint, stage_samples, validation_items
from cervixbatch.tools.quantize.card import (
    StageCard,
    agreement_figures,
    make_card,
    stage_card,
    write_bf16_card,
    write_int8,
)
from cervixbatch.tools.quantize.search import quantize_stage, quantized_operations

__all__ = ["QuantizeOptions", "quantize_models"]

log = structlog.get_logger(__name__)

_SYNTH_SIZE = (800, 600)  # the stages see 128-512 px inputs; synth takes ~1 s a photo
# each try halves max_drop: the search returns more layers to float
_TRIES = 3


@dataclasses.dataclass(frozen=True, slots=True)
class QuantizeOptions:
    """What to calibrate on and how many photos to hold out for the agreement."""

    images: Path | None = None  # None: synthetic photos (a warning says so)
    count: int = 300  # calibration photos (NNCF's advice: about 300)
    held_out: int = 50  # photos for the agreement, never calibrated on
    # calibration photos the search never sees, where its tries are checked (at most a
    # fifth of the calibration photos; 0: no check, the first try is kept)
    selection: int = 60
    seed: int = 0  # shuffles the photos before the split; seeds synthetic photos
    # how far the validation agreement may drop before the most sensitive layers go back
    # to float (search.py); None: half the gate's margin, (1 - minimum) / 2; 0: plain
    # post-training quantization, every layer in INT8, no further try
    max_drop: float | None = None


def quantize_models(
    config: Config,
    options: QuantizeOptions,
    *,
    on_progress: Callable[[str], None] | None = None,
) -> list[StageCard]:
    """Quantizes both configured stages and writes each INT8 model with its card."""
    from cervixbatch.model.loading import file_sha256
    from cervixbatch.model.openvino_rt import (
        OpenVinoStage,
        auto_bf16,
        compile_stage,
        float_ir,
        model_files,
    )

    say = on_progress or (lambda _text: None)
    cache = cache_folder(config)
    positive = config.report.lesion_positive_threshold
    minimum = config.models.min_agreement_dice
    with _photo_set(options) as (photos, description):
        calibration, held_out = _split(photos, options)
        fit, selection = _selection_split(calibration, options.selection)
        say(
            f"{len(fit)} calibration photos, {len(selection)} more to choose among the "
            f"tries, {len(held_out)} held out"
        )
        refs = {"cervix": config.models.cervix, "lesion": config.models.lesion}
        float_models: dict[str, Any] = {}
        float_stages: dict[str, OpenVinoStage] = {}
        versions: dict[str, str] = {}

        def compiled(name: str, model: Any, precision: Precision) -> OpenVinoStage:
            return OpenVinoStage(
                compile_stage(model, config.batch.size, precision),
                stage=Stage(name),
                version=versions[name],
                source=refs[name],
                batch_size=config.batch.size,
                precision=precision,
            )

        for name, ref in refs.items():
            versions[name] = file_sha256(*model_files(ref, Stage(name)))
            float_models[name] = float_ir(ref, Stage(name), versions[name], cache)
            float_stages[name] = compiled(name, float_models[name], Precision.FLOAT32)
        pipeline = Pipeline(float_stages["cervix"], float_stages["lesion"], _settings(config))
        say("reading photos")
        calib = stage_samples(pipeline, fit, config.batch.size)
        description |= {"skipped": calib.skipped, "fingerprint": fingerprint(calibration)}
        chooser = _Decoded(pipeline, selection, config.batch.size, positive, minimum)
        int8: dict[str, tuple[Any, OpenVinoStage]] = {}
        methods: dict[str, dict[str, Any]] = {}
        tries: dict[str, list[dict[str, Any]]] = {}
        for name in refs:
            inputs, _ = calib.of(name)
            if not inputs:
                raise CervixbatchError(
                    f"no calibration input for the {name} stage: stage 1 found no cervix in "
                    "any calibration photo"
                )
            validation = validation_items(float_stages[name], name, calib, pipeline.settings)
            tries[name] = []
            for max_drop in _ladder(_max_drop(config, options)):
                say(f"quantizing the {name} stage on {len(inputs)} inputs, max drop {max_drop}")
                quantized = quantize_stage(
                    float_models[name],
                    name,
                    inputs,
                    validation,
                    pipeline.settings,
                    max_drop=max_drop,
                    positive_threshold=positive,
                )
                int8[name] = (quantized, compiled(name, quantized, Precision.INT8))
                methods[name] = {
                    "max_drop": max_drop,
                    **quantized_operations(float_models[name], quantized),
                }
                tries[name].append(_try(name, methods[name], chooser, int8[name][1]))
                if tries[name][-1]["passed"]:
                    break
        say(f"comparing float32 and INT8 masks on {len(held_out)} held-out photos")
        held = _Decoded(pipeline, held_out, config.batch.size, positive, minimum)
        agreed = held.agreement(int8["cervix"][1], int8["lesion"][1])
        if auto_bf16():  # else auto never runs bfloat16 here: nothing to measure
            say(f"comparing float32 and bfloat16 masks on {len(held_out)} held-out photos")
            bf16 = {n: compiled(n, float_models[n], Precision.MIXED_BFLOAT16) for n in refs}
            bf16_agreed = held.agreement(bf16["cervix"], bf16["lesion"])
            for name, ref in refs.items():
                write_bf16_card(
                    bf16_card_path(ref, name, cache),
                    name,
                    float_model={"source": ref, "sha256": versions[name]},
                    agreement=agreement_figures(bf16_agreed[name], _threshold(config, name)),
                )
        cards = []
        for name, ref in refs.items():
            card = make_card(
                name,
                float_model={"source": ref, "sha256": versions[name]},
                calibration={**description, "inputs": len(calib.of(name)[0]), **methods[name]},
                agreement=agreement_figures(agreed[name], _threshold(config, name)),
                selection=tries[name],
            )
            cards.append(_write(name, int8_paths(ref, name, cache), int8[name][0], card, minimum))
    return cards


def _write(
    name: str, paths: Int8Paths, model: Any, card: dict[str, Any], minimum: float
) -> StageCard:
    """Writes one stage's INT8 model and card; its summary, with the gate's verdict."""
    write_int8(model, card, paths)
    summary = stage_card(name, paths, card, minimum)
    log.info("int8_model_written", stage=name, passed=summary.passed, reason=summary.reason)
    return summary


def _try(name: str, method: dict[str, Any], chooser: _Decoded, stage: Any) -> dict[str, Any]:
    """One try of the search, checked on the selection photos."""
    passed, figures = chooser.check(name, stage)
    tried = {**method, "selection": figures, "passed": passed}
    log.info("int8_try", stage=name, **tried)
    return tried


class _Decoded:
    """A set of photos decoded once, on which candidates are compared with the float
    pipeline, one stage swapped at a time (``agreement.frames_agreement``)."""

    def __init__(
        self,
        pipeline: Pipeline,
        photos: Sequence[Path],
        batch_size: int,
        positive: float,
        minimum: float,
    ) -> None:
        self._pipeline = pipeline
        self._batches = [
            read_frames(pipeline, photos[start : start + batch_size])
            for start in range(0, len(photos), batch_size)
        ]
        self._positive = positive
        self._minimum = minimum

    def agreement(self, cervix: Any | None, lesion: Any | None) -> dict[str, StageAgreement]:
        """Each given candidate's agreement with the float stage it replaces."""
        out = {
            "cervix": StageAgreement(positive_threshold=self._positive),
            "lesion": StageAgreement(positive_threshold=self._positive),
        }
        for frames, names in self._batches:
            frames_agreement(self._pipeline, cervix, lesion, frames, names, out=out)
        return out

    def check(self, stage: str, candidate: Any) -> tuple[bool, dict[str, Any]]:
        """Whether ``candidate`` clears the gate on these photos (always, when there are
        none), and its figures there."""
        if not self._batches:
            return True, {}
        agreed = self.agreement(
            candidate if stage == "cervix" else None, candidate if stage == "lesion" else None
        )
        figures = agreement_figures(agreed[stage], "")
        verdict = card_verdict({"agreement": figures}, stage=stage, minimum=self._minimum)
        keep = (
            "held_out",
            "mean_dice",
            "min_dice",
            "decision_flips",
            "decision_flip_share",
            "max_lesion_fraction_change",
        )
        return verdict.passed, {key: figures[key] for key in keep}


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


def _selection_split(calibration: Sequence[Path], wanted: int) -> tuple[list[Path], list[Path]]:
    """The calibration photos the search fits on, and those it never sees, where its tries
    are checked: ``wanted`` at most, a fifth of the calibration photos at most."""
    count = min(wanted, len(calibration) // 5)
    return list(calibration[count:]), list(calibration[:count])


def _ladder(max_drop: float) -> list[float]:
    """The tries' ``max_drop``, loosest first (most layers in INT8: fastest); plain
    quantization (0) is a single try."""
    if max_drop <= 0:
        return [0.0]
    return [round(max_drop / 2**step, 6) for step in range(_TRIES)]


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
