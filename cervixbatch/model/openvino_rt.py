"""The OpenVINO runtime: a stage model converted once, compiled for the CPU, run in batches.

The Keras model becomes an OpenVINO model (``openvino.convert_model`` of the same
forward function TensorFlow runs: the model, then the mean over its sigmoid channels)
with a free batch dimension. Where there is a cache folder the converted model is kept
there as IR, keyed by the sha256 of the model's file(s), so later starts neither import
Keras to load the model nor convert it again; a changed model file has another sha256,
hence another entry. At load the model is reshaped to a fixed batch and compiled with the
throughput hint: the CPU's streams each take a slice of the batch at once.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import structlog

from cervixbatch.config import Precision, Runtime
from cervixbatch.errors import ModelError
from cervixbatch.model.auto_precision import PrecisionChoice, choose_precision
from cervixbatch.model.device import CPU_BF16_AUTO
from cervixbatch.model.int8 import check_int8_card, int8_paths
from cervixbatch.model.loading import file_sha256
from cervixbatch.model.options import LoadOptions
from cervixbatch.model.stage import DEMO_DIR, OutputReduction, load_stage, reduce_output
from cervixbatch.model.stage_names import Stage

__all__ = [
    "OpenVinoStage",
    "auto_bf16",
    "compile_stage",
    "convert_keras",
    "float_ir",
    "load_openvino_stage",
    "model_files",
    "save_ir",
]

log = structlog.get_logger(__name__)

_IR_NAME = "model.xml"
_HINTS = {
    Precision.FLOAT32: "f32",
    # INT8: the quantized layers run in int8 whatever the hint; the layers quantize kept
    # in float must run in float32, or a CPU with AMX/AVX512_BF16 runs them in bfloat16,
    # and the lesion stage's INT8 then agreed exactly as badly as bfloat16 itself
    # (AnnoCerv validation, issue 27: mean Dice 0.928, 2 of 43 decisions flipped)
    Precision.INT8: "f32",
    Precision.MIXED_BFLOAT16: "bf16",
    Precision.MIXED_FLOAT16: "f16",
}


class OpenVinoStage:
    """One stage compiled by OpenVINO for the CPU; a ``Predictor`` like ``StageModel``."""

    def __init__(
        self,
        compiled: Any,
        *,
        stage: Stage,
        version: str,
        source: str,
        batch_size: int,
        precision: Precision,
        precision_reason: str = "",
    ) -> None:
        import openvino as ov

        self.stage = stage
        self.version = version
        self.source = source
        self.batch_size = batch_size
        self.precision = precision
        self.precision_reason = precision_reason or f"{precision.value}: asked for"
        self.runtime = Runtime.OPENVINO
        self.device = "CPU"
        self._compiled = compiled
        shape = compiled.input(0).shape
        self._slice = int(shape[0])  # images per inference request
        self._shape = (int(shape[1]), int(shape[2]), int(shape[3]))
        self._requests = math.ceil(batch_size / self._slice)
        self._queue = ov.AsyncInferQueue(compiled, self._requests)
        self._out: npt.NDArray[np.float32] | None = None
        self._queue.set_callback(self._collect)

    @property
    def input_size(self) -> tuple[int, int]:
        """(height, width) this stage works at."""
        return self._shape[0], self._shape[1]

    @property
    def input_channels(self) -> int:
        """1 for grayscale models, 3 for RGB."""
        return self._shape[2]

    def warm_up(self) -> None:
        """Runs every request once: the first real batch pays no lazy initialisation."""
        self.predict_batch(np.zeros((self.batch_size, *self._shape), np.float32))

    def _collect(self, request: Any, start: int) -> None:
        assert self._out is not None
        result = request.get_output_tensor(0).data
        stop = min(start + self._slice, self._out.shape[0])
        self._out[start:stop] = result[: stop - start]

    def predict_batch(self, images: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
        """Probabilities (N x H x W, float32) for N ≥ 0 images (N x H x W x C, 0..1).

        Slices of the compiled batch run concurrently, one per request; the last is padded.
        """
        count = images.shape[0]
        height, width = self.input_size
        self._out = out = np.empty((count, height, width), dtype=np.float32)
        for start in range(0, count, self._slice):
            chunk = images[start : start + self._slice]
            if chunk.shape[0] < self._slice:
                padded = np.zeros((self._slice, *self._shape), dtype=np.float32)
                padded[: chunk.shape[0]] = chunk
                chunk = padded
            # share_inputs=False: the request copies the slice, so ``images`` may be reused
            self._queue.start_async({0: np.ascontiguousarray(chunk)}, userdata=start)
        self._queue.wait_all()
        self._out = None
        return out


def model_files(ref: str, stage: Stage) -> tuple[Path, ...]:
    """The files whose bytes make a model's version (as ``model.stage`` hashes them)."""
    if ref == "builtin:demo":
        return DEMO_DIR / f"{stage}.json", DEMO_DIR / f"{stage}.weights.npz"
    return (Path(ref),)


def load_openvino_stage(ref: str, stage: Stage, options: LoadOptions) -> OpenVinoStage:
    """Loads one stage on OpenVINO: the INT8 model for ``int8`` (checked against its card),
    else the float model, from the cache when it holds this version, converted otherwise."""
    files = model_files(ref, stage)
    if not all(path.is_file() for path in files):
        load_stage(ref, stage, batch_size=1, precision=Precision.FLOAT32)  # its clear error
        raise ModelError(f"{stage} model {ref} does not exist")  # pragma: no cover
    version = file_sha256(*files)
    choice = _resolve_precision(ref, stage, version, options)
    precision = choice.precision
    if precision is Precision.INT8:
        paths = int8_paths(ref, stage, options.cache)
        check_int8_card(paths, stage=stage, version=version, minimum=options.min_agreement_dice)
        model = _core().read_model(paths.xml)
    else:
        model = float_ir(
            ref,
            stage,
            version,
            options.cache,
            input_size=options.input_size(stage.value),
            reduction=options.reduction(stage.value),
        )
    compiled = compile_stage(model, options.batch_size, precision)
    loaded = OpenVinoStage(
        compiled,
        stage=stage,
        version=version,
        source=ref,
        batch_size=options.batch_size,
        precision=precision,
        precision_reason=choice.reason,
    )
    log.info(
        "openvino_stage_compiled",
        stage=str(stage),
        precision=precision.value,
        why=choice.reason,
        requests=loaded._requests,  # noqa: SLF001
        images_per_request=loaded._slice,  # noqa: SLF001
    )
    return loaded


def _resolve_precision(
    ref: str, stage: Stage, version: str, options: LoadOptions
) -> PrecisionChoice:
    """``auto`` on OpenVINO: per stage, the fastest precision whose agreement card passes
    (``model.auto_precision``: INT8, else bfloat16 where the CPU computes it natively,
    else float32). Any other precision is what was asked for."""
    requested = options.precision
    if requested is not Precision.AUTO:
        return PrecisionChoice(requested, f"{requested.value}: models.precision")
    return choose_precision(ref, str(stage), version, options, cpu_bf16=auto_bf16())


def auto_bf16() -> bool:
    """Whether ``auto`` may consider bfloat16 here: OpenVINO computes it natively on this
    CPU (AVX512_BF16, AMX) and the measured decision ``model.device.CPU_BF16_AUTO`` allows
    it; emulated bfloat16 is slower than float32."""
    return CPU_BF16_AUTO and "BF16" in _core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")


def float_ir(
    ref: str,
    stage: Stage,
    version: str,
    cache: Path | None,
    *,
    input_size: int | None = None,
    reduction: OutputReduction = OutputReduction.MEAN,
) -> Any:
    """The float OpenVINO model of one stage: from the cache, or converted (and cached).

    A weights-only file's build size and a seed-faithful output reduction change the
    model, so they are part of the cache entry's name."""
    variant = (f"-{input_size}" if input_size else "") + (
        f"-{reduction}" if reduction is not OutputReduction.MEAN else ""
    )
    entry = cache / f"{stage}-{version}{variant}" if cache is not None else None
    if entry is not None and (entry / _IR_NAME).is_file():
        try:
            model = _core().read_model(entry / _IR_NAME)
        except RuntimeError as exc:  # a file damaged or from a newer OpenVINO: convert again
            log.warning("ir_cache_unreadable", stage=str(stage), error=str(exc)[:200])
        else:
            log.info("ir_cache_hit", stage=str(stage), version=version[:12])
            return model
    keras_stage = load_stage(
        ref, stage, batch_size=1, precision=Precision.FLOAT32, input_size=input_size
    )
    model = convert_keras(keras_stage.model, reduction)
    if entry is not None:
        save_ir(model, entry, meta={"stage": str(stage), "version": version, "source": ref})
        log.info("ir_cache_written", stage=str(stage), version=version[:12])
    return model


def convert_keras(keras_model: Any, reduction: OutputReduction = OutputReduction.MEAN) -> Any:
    """The OpenVINO model of a Keras stage model: input N x H x W x C (N free), output
    N x H x W, the channels reduced as ``StageModel`` reduces them (``reduce_output``)."""
    import openvino as ov
    import tensorflow as tf

    shape = tuple(int(d) for d in keras_model.input_shape[1:])

    def forward(x: Any) -> Any:
        return reduce_output(keras_model(x, training=False), reduction)

    spec = tf.TensorSpec((None, *shape), tf.float32)
    function = tf.function(forward, input_signature=[spec])
    try:
        # share_weights=False: the OpenVINO model owns its weights, so the Keras model
        # may be freed (and cannot be changed underneath it)
        return ov.convert_model(function, share_weights=False)
    except Exception as exc:
        raise ModelError(f"OpenVINO cannot convert this model: {exc}") from exc


def save_ir(model: Any, folder: Path, *, meta: dict[str, Any]) -> None:
    """Writes ``model`` as IR into ``folder`` atomically: into a temporary sibling folder,
    fsynced, then renamed; a concurrent writer of the same entry loses the rename, not
    data. Weights stay float32 (``compress_to_fp16=False``): the masks must not move."""
    import openvino as ov

    folder.parent.mkdir(parents=True, exist_ok=True)
    temp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
    try:
        ov.save_model(model, temp / _IR_NAME, compress_to_fp16=False)
        (temp / "meta.json").write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
        for path in temp.iterdir():
            _fsync(path)
        if folder.exists():  # unreadable: replaced
            shutil.rmtree(folder)
        try:
            temp.rename(folder)
        except OSError:
            if not (folder / _IR_NAME).is_file():
                raise
        _fsync(folder.parent)
    finally:
        shutil.rmtree(temp, ignore_errors=True)


def compile_stage(model: Any, batch_size: int, precision: Precision) -> Any:
    """Compiles ``model`` for the CPU with the throughput hint.

    The hint gives the CPU several streams (e.g. one per core); each inference request
    runs on one. So the batch is cut into one slice per stream, the model reshaped to the
    slice (fixed shapes: compiled once), and ``OpenVinoStage`` runs the slices at once.
    """
    config: dict[str, Any] = {"PERFORMANCE_HINT": "THROUGHPUT"}
    if precision in _HINTS:
        config["INFERENCE_PRECISION_HINT"] = _HINTS[precision]
    core = _core()
    streams = core.compile_model(_fixed(model, 1), "CPU", config)
    per_stream = max(1, int(streams.get_property("OPTIMAL_NUMBER_OF_INFER_REQUESTS")))
    slice_size = math.ceil(batch_size / min(per_stream, batch_size))
    if slice_size == 1:
        return streams
    return core.compile_model(_fixed(model, slice_size), "CPU", config)


def _fixed(model: Any, batch: int) -> Any:
    shape = model.input(0).partial_shape
    fixed = model.clone()
    fixed.reshape({0: [batch, *(d.get_length() for d in list(shape)[1:])]})
    return fixed


_CORE: Any = None


def _core() -> Any:
    """One OpenVINO Core per process (it holds the plugins)."""
    global _CORE  # noqa: PLW0603
    if _CORE is None:
        import openvino as ov

        _CORE = ov.Core()
    return _CORE


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
