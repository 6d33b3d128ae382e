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

from cervixbatch.config import Precision, Runtime
from cervixbatch.errors import ConfigError, ModelError
from cervixbatch.model.options import LoadOptions, cache_folder

__all__ = [
    "LoadOptions",
    "LoadedStage",
    "cache_folder",
    "load_predictor",
    "openvino_available",
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
    from cervixbatch.model.stage import Stage, load_stage

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
