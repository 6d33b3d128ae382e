"""Which runtime runs the stage models, and the one place a stage is loaded with it.

TensorFlow (``model.stage.StageModel``) trains, runs on GPUs and is always there;
OpenVINO (``model.openvino_rt.OpenVinoStage``, the optional ``cervixbatch[openvino]``
extra) runs the same models faster on CPUs, and alone runs INT8. Both satisfy the
pipeline's ``Predictor`` and carry what the results record: version, runtime, precision.
"""

from __future__ import annotations

import importlib.util
from typing import Protocol

import numpy as np
import numpy.typing as npt

from cervixbatch.config import Config, Precision, Runtime
from cervixbatch.errors import ConfigError, ModelError
from cervixbatch.model.options import LoadOptions

__all__ = [
    "LoadedStage",
    "auto_choice",
    "auto_choices",
    "load_predictor",
    "openvino_available",
    "precision_label",
    "resolve_runtime",
]

OPENVINO_MISSING = (
    "the OpenVINO runtime is not installed: pip install 'cervixbatch[openvino]' "
    '(or set models.runtime = "tensorflow")'
)


class LoadedStage(Protocol):
    """A stage model ready for batches, whatever runs it."""

    @property
    def version(self) -> str: ...  # noqa: D102  (sha256 of the float model's file(s))

    @property
    def runtime(self) -> Runtime: ...  # noqa: D102

    @property
    def precision(self) -> Precision: ...  # noqa: D102

    @property
    def device(self) -> str: ...  # noqa: D102

    @property
    def input_size(self) -> tuple[int, int]: ...  # noqa: D102

    @property
    def input_channels(self) -> int: ...  # noqa: D102

    def predict_batch(self, images: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]: ...  # noqa: D102

    def warm_up(self) -> None: ...  # noqa: D102


def openvino_available() -> bool:
    """Whether the optional OpenVINO runtime is installed (without importing it)."""
    try:
        return importlib.util.find_spec("openvino") is not None
    except (ImportError, ValueError):  # blocked (sys.modules entry None) or broken
        return False


def resolve_runtime(requested: Runtime, precision: Precision, *, gpus: int) -> Runtime:
    """The runtime that will run the models.

    ``auto`` takes OpenVINO when it is installed and inference is on a CPU (no GPU), and
    for INT8, which only OpenVINO runs; TensorFlow otherwise (GPUs, and where OpenVINO is
    not installed).
    """
    if requested is Runtime.TENSORFLOW:
        if precision is Precision.INT8:
            raise ConfigError(
                'precision "int8" runs on OpenVINO only: set models.runtime to "openvino" '
                'or "auto", or choose another precision',
                key="models.precision",
            )
        return Runtime.TENSORFLOW
    if requested is Runtime.OPENVINO or precision is Precision.INT8:
        if not openvino_available():
            raise ModelError(OPENVINO_MISSING)
        return Runtime.OPENVINO
    return Runtime.OPENVINO if openvino_available() and gpus == 0 else Runtime.TENSORFLOW


def load_predictor(ref: str, stage: str, options: LoadOptions, *, gpus: int) -> LoadedStage:
    """Loads one stage's model (``builtin:demo`` or a file) on the chosen runtime."""
    from cervixbatch.model.stage import load_stage
    from cervixbatch.model.stage_names import Stage

    runtime = resolve_runtime(options.runtime, options.precision, gpus=gpus)
    if runtime is Runtime.OPENVINO:
        from cervixbatch.model.openvino_rt import load_openvino_stage

        return load_openvino_stage(ref, Stage(stage), options)
    return load_stage(
        ref,
        Stage(stage),
        batch_size=options.batch_size,
        precision=options.precision,
        input_size=options.input_size(stage),
        reduction=options.reduction(stage),
    )


_SHORT = {
    Precision.FLOAT32: "f32",
    Precision.MIXED_BFLOAT16: "bf16",
    Precision.MIXED_FLOAT16: "f16",
    Precision.INT8: "int8",
}


def precision_label(cervix: Precision, lesion: Precision) -> str:
    """What results and workers record as the precision: one name where both stages run
    at the same, else ``cervix/lesion`` in short (``int8/bf16``; ≤ 16 characters)."""
    if cervix is lesion:
        return cervix.value
    return f"{_SHORT.get(cervix, cervix.value)}/{_SHORT.get(lesion, lesion.value)}"


def auto_choices(config: Config) -> dict[str, str]:
    """Per configured stage, what ``models.precision`` gives on this machine and why,
    without loading a model: for ``model-info``, ``status`` and the report."""
    return {
        "cervix": auto_choice(config, config.models.cervix, "cervix"),
        "lesion": auto_choice(config, config.models.lesion, "lesion"),
    }


def auto_choice(config: Config, ref: str, stage: str) -> str:
    """What ``models.precision`` gives model ``ref`` of ``stage`` here, and why."""
    options = LoadOptions.from_config(config)
    if options.runtime is Runtime.TENSORFLOW or not openvino_available():
        return f"{options.precision.value} on TensorFlow (agreement cards are OpenVINO's)"
    if options.precision not in {Precision.AUTO, Precision.INT8}:
        return f"{options.precision.value}: models.precision"
    from cervixbatch.model.auto_precision import choose_precision
    from cervixbatch.model.int8 import check_int8_card, int8_paths
    from cervixbatch.model.loading import file_sha256
    from cervixbatch.model.openvino_rt import auto_bf16, model_files
    from cervixbatch.model.stage_names import Stage

    files = model_files(ref, Stage(stage))
    if not all(path.is_file() for path in files):
        return f"{ref} does not exist"
    version = file_sha256(*files)
    if options.precision is Precision.INT8:
        try:
            verdict = check_int8_card(
                int8_paths(ref, stage, options.cache),
                stage=stage,
                version=version,
                minimum=options.min_agreement_dice,
            )
        except ModelError as exc:
            return f"int8 (models.precision) is refused: {exc}"
        return f"int8 (models.precision), its card passes: {verdict.reason}"
    return choose_precision(ref, stage, version, options, cpu_bf16=auto_bf16()).reason
