"""``cervixbatch bench --runtimes … --precisions …``: runtimes and precisions side by side.

Every variant (a runtime with a precision) runs on the same models and photos in one
bench run: the model-only bound, end to end per size, and its agreement with TensorFlow
float32 (the reference: what the model was trained in) — per stage, the mean and lowest
Dice between the variant's masks and the reference's on the bench photos. INT8 needs a
quantized model: the bench models are quantized first, on synthetic calibration photos
of their own (``cervixbatch quantize``'s code).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cervixbatch.config import Config, Precision, Runtime
from cervixbatch.errors import CervixbatchError

if TYPE_CHECKING:
    from cervixbatch.model.loaded import Stages
    from cervixbatch.segmentation.two_stage import Pipeline

__all__ = [
    "Variant",
    "agreement_with",
    "parse_variants",
    "quantize_bench_models",
    "render_table",
    "variant_config",
]

_CALIBRATION = {True: 6, False: 24}  # synthetic calibration photos (tiny, seed-size models)


@dataclasses.dataclass(frozen=True, slots=True)
class Variant:
    """One runtime with one precision."""

    runtime: Runtime
    precision: Precision

    @property
    def name(self) -> str:
        """E.g. ``openvino/int8``."""
        return f"{self.runtime.value}/{self.precision.value}"


def parse_variants(
    runtimes: Sequence[Runtime], precisions: Sequence[Precision]
) -> tuple[list[Variant], list[str]]:
    """Every runtime with every precision, minus what cannot run (INT8 on TensorFlow),
    which is returned as notes instead."""
    chosen: list[Variant] = []
    notes: list[str] = []
    for runtime in runtimes:
        for precision in precisions:
            if runtime is Runtime.TENSORFLOW and precision is Precision.INT8:
                notes.append("tensorflow/int8 skipped: INT8 runs on OpenVINO only")
                continue
            variant = Variant(runtime, precision)
            if variant not in chosen:
                chosen.append(variant)
    if not chosen:
        raise CervixbatchError("bench: no runnable runtime and precision among those given")
    return chosen, notes


def variant_config(config: Config, variant: Variant, root: Path) -> Config:
    """The bench configuration for one variant: its own database and outbox (a fresh
    queue), the gate off (the bench reports the agreement, it does not refuse)."""
    from cervixbatch.config import DatabaseConfig, PathsConfig

    folder = root / variant.name.replace("/", "-")
    return dataclasses.replace(
        config,
        paths=PathsConfig(inbox=config.paths.inbox, outbox=folder / "outbox"),
        database=DatabaseConfig(url=f"sqlite:///{folder / 'bench.db'}"),
        models=dataclasses.replace(
            config.models,
            runtime=variant.runtime,
            precision=variant.precision,
            min_agreement_dice=0.0,
        ),
    )


def quantize_bench_models(
    config: Config, root: Path, *, tiny: bool, seed: int, trained: bool = False
) -> None:
    """INT8 models of the bench models, beside them, calibrated on synthetic photos.

    Random-weight models are quantized plainly (every layer in INT8: nothing to keep in
    float for); trained ones as ``cervixbatch quantize`` does, with accuracy control."""
    from cervixbatch.tools.quantize.run import QuantizeOptions, quantize_models
    from cervixbatch.tools.synth.v1 import write_dataset

    # trained models: calibration and the accuracy check need a real sample (a fifth of it
    # is held out for the card); random ones only need their ranges
    count = _CALIBRATION[tiny] * (5 if trained else 1)
    folder = root / "calibration"
    write_dataset(folder, count, seed=seed + 7, size=(320, 240) if tiny else (800, 600))
    options = QuantizeOptions(
        images=folder / "images",
        count=count,
        held_out=max(1, count // 5),
        max_drop=None if trained else 0.0,
    )
    quantize_models(config, options)


def agreement_with(
    reference: Pipeline,
    stages: Stages,
    photos: Sequence[Path],
    batch_size: int,
    positive_threshold: float,
) -> dict[str, dict[str, Any]]:
    """Per stage, how closely the masks made with ``stages``' model of that stage match
    ``reference``'s (tools/quantize/agreement.py): count, mean and lowest Dice, the lesion
    decisions flipped at the report's threshold, the largest lesion-fraction change."""
    from cervixbatch.tools.quantize.agreement import mask_agreement

    agreed = mask_agreement(
        reference,
        stages.cervix,
        stages.lesion,
        photos,
        batch_size=batch_size,
        positive_threshold=positive_threshold,
    )
    return {stage: agreement.summary() for stage, agreement in agreed.items()}


def render_table(rows: Sequence[dict[str, Any]], sizes: Sequence[str]) -> str:
    """The variants side by side, for people (the JSON report has every figure)."""
    head = ["variant", "model-only img/s", "× tf/float32"]
    for size in sizes:
        head += [f"e2e {size}", "× first"]
    head += ["agree cervix", "agree lesion"]
    lines = [" | ".join(head)]
    for row in rows:
        cells = [
            row["variant"],
            f"{row['model_only']['images_per_s']:.2f}",
            _maybe(row["ratios"].get("model_only_vs_tensorflow_float32")),
        ]
        for size in sizes:
            cells += [
                f"{row['end_to_end'][size]['images_per_s']:.2f}",
                _maybe(row["ratios"]["end_to_end_vs_first"].get(size)),
            ]
        for stage in ("cervix", "lesion"):
            agreed = row["agreement"][stage]
            cells.append(
                f"{agreed['mean_dice']:.4f} (min {agreed['min_dice']:.4f}, flips "
                f"{agreed['decision_flip_share']:.1%}, Δ fraction "
                f"{agreed['max_lesion_fraction_change']:.3f})"
            )
        lines.append(" | ".join(cells))
    return "\n".join(lines)


def _maybe(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"
