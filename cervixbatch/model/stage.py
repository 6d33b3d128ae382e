"""A loaded stage model: its version, its working size, and one compiled batched call.

Inference is ``model(x, training=False)`` inside a ``tf.function`` with a fixed batch
shape; the last batch is padded, so the graph is traced once and never again.
``model.predict`` would cost 50-150 ms per call and leak memory when called in a loop.
"""

from __future__ import annotations

import dataclasses
import enum
import json
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from cervixbatch.config import Precision, Runtime
from cervixbatch.errors import ModelError
from cervixbatch.model.device import (
    configure_tensorflow,
    fitting_batch_size,
    resolve_precision,
    use_xla,
)
from cervixbatch.model.loading import LoadedModel, file_sha256, load_model_file
from cervixbatch.model.stage_names import Stage

__all__ = [
    "DEMO_DIR",
    "OutputReduction",
    "StageModel",
    "activation_bytes",
    "load_keras_model",
    "load_stage",
    "reduce_output",
    "with_precision",
]

DEMO_DIR = Path(__file__).parent / "demo"


class OutputReduction(enum.StrEnum):
    """How a model's output channels become one score per pixel."""

    MEAN = "mean"  # the probabilities averaged over channels
    # seed 001's to_binary_mask up to its Otsu step: each channel 255 where its probability
    # (x 255) exceeds 1e-5, then cv2's BGR→gray weights; ``roi.otsu_binary`` finishes it
    SEED_GRAY = "seed_gray"


_SEED_SENSITIVITY = 1e-5  # seed 001's ``t``, on the 0..255 scale
_GRAY_WEIGHTS = {1: (1.0,), 3: (0.114, 0.587, 0.299)}  # cv2.COLOR_BGR2GRAY, channel 0 = "B"


def reduce_output(y: Any, reduction: OutputReduction) -> Any:
    """One score per pixel (N x H x W) from a model's sigmoid output (N x H x W x C), in
    TensorFlow ops: both runtimes build their compiled call from this."""
    import tensorflow as tf

    y = tf.cast(y, tf.float32)
    if reduction is OutputReduction.SEED_GRAY:
        channels = int(y.shape[-1])
        weights = _GRAY_WEIGHTS.get(channels, (1.0 / channels,) * channels)
        bits = tf.cast(y * 255.0 > _SEED_SENSITIVITY, tf.float32) * 255.0
        return tf.tensordot(bits, tf.constant(weights, tf.float32), axes=[[3], [0]])
    # several sigmoid channels (the seed's 3-channel head) are averaged into one mask
    return tf.reduce_mean(y, axis=-1)


@dataclasses.dataclass(slots=True)
class StageModel:
    """One stage, ready to run on batches of preprocessed images."""

    stage: Stage
    model: Any
    version: str  # sha256 of the model file(s)
    source: str
    batch_size: int
    precision: Precision
    device: str
    jit_compile: bool = False  # XLA: on GPUs only (see model.device.use_xla)
    format: str = "keras"  # what the file was: see model.loading.LoadedModel
    architecture: str = ""
    reduction: OutputReduction = OutputReduction.MEAN
    _call: Any = dataclasses.field(default=None, repr=False)

    @property
    def runtime(self) -> Runtime:
        """TensorFlow runs this stage (``model.openvino_rt`` is the other runtime)."""
        return Runtime.TENSORFLOW

    @property
    def input_size(self) -> tuple[int, int]:
        """(height, width) this stage works at."""
        shape = self.model.input_shape
        return int(shape[1]), int(shape[2])

    @property
    def input_channels(self) -> int:
        """1 for grayscale models, 3 for RGB."""
        return int(self.model.input_shape[3])

    def __post_init__(self) -> None:
        import tensorflow as tf

        height, width = self.input_size
        spec = tf.TensorSpec((self.batch_size, height, width, self.input_channels), tf.float32)
        model, reduction = self.model, self.reduction

        def forward(x: Any) -> Any:
            return reduce_output(model(x, training=False), reduction)

        with tf.device(self.device):
            self._call = tf.function(
                forward,
                input_signature=[spec],
                reduce_retracing=True,
                jit_compile=self.jit_compile,
            )

    def warm_up(self) -> None:
        """Traces and runs the compiled call once, so the first real batch pays no
        tracing (about a second): a daemon that says READY answers at full speed."""
        height, width = self.input_size
        self.predict_batch(np.zeros((1, height, width, self.input_channels), np.float32))

    def predict_batch(self, images: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
        """Probabilities (N x H x W, float32) for N ≥ 0 images (N x H x W x C, float32 0..1).

        N may be anything: images go through in chunks of ``batch_size``, the last padded.
        """
        count = images.shape[0]
        height, width = self.input_size
        out = np.empty((count, height, width), dtype=np.float32)
        for start in range(0, count, self.batch_size):
            chunk = images[start : start + self.batch_size]
            n = chunk.shape[0]
            if n < self.batch_size:
                padded = np.zeros((self.batch_size, *chunk.shape[1:]), dtype=np.float32)
                padded[:n] = chunk
                chunk = padded
            out[start : start + n] = self._call(chunk).numpy()[:n]
        return out


def load_stage(
    ref: str,
    stage: Stage,
    *,
    batch_size: int,
    precision: Precision,
    input_size: int | None = None,
    reduction: OutputReduction = OutputReduction.MEAN,
) -> StageModel:
    """Loads ``builtin:demo`` or a model file (see ``model.loading``) for one stage and
    checks its shape. ``input_size`` sets the size of a weights-only file's network.

    On a GPU the compiled call's batch may be smaller than ``batch_size`` (what fits in
    its memory); ``predict_batch`` still takes any number of images.
    """
    info = configure_tensorflow()
    chosen = resolve_precision(precision, info)
    loaded = load_keras_model(ref, stage, input_size=input_size)
    model, version = loaded.model, loaded.version
    _check_shape(model, ref, stage)
    if chosen is not Precision.FLOAT32:
        model = with_precision(model, chosen)
    return StageModel(
        stage=stage,
        model=model,
        version=version,
        source=ref,
        batch_size=fitting_batch_size(batch_size, activation_bytes(model, chosen), info),
        precision=chosen,
        device=info.device,
        jit_compile=use_xla(info),
        format=loaded.format,
        architecture=loaded.architecture,
        reduction=reduction,
    )


def load_keras_model(ref: str, stage: Stage, *, input_size: int | None = None) -> LoadedModel:
    """The float Keras model of ``builtin:demo`` or of a model file, for one stage."""
    if ref.startswith("builtin:"):
        return _load_builtin(ref.removeprefix("builtin:"), stage)
    return load_model_file(Path(ref), stage.value, input_size=input_size)


def activation_bytes(model: Any, precision: Precision) -> int:
    """An upper bound of one image's activations in inference: every layer's output at
    once (TensorFlow frees most of them early), at the compute dtype's width."""
    width = 4 if precision is Precision.FLOAT32 else 2
    total = 0
    for layer in model.layers:
        try:
            shape = layer.output.shape
        except (AttributeError, ValueError):  # a layer used twice has no single output
            continue
        total += int(np.prod([d or 1 for d in shape[1:]], dtype=np.int64))
    return total * width


def with_precision(model: Any, precision: Precision) -> Any:
    """A copy of ``model`` whose layers compute in ``precision`` (weights stay float32).

    The output layers stay float32, as Keras advises: a sigmoid in bfloat16 has 8 bits of
    mantissa, which moves pixels across the 0.5 threshold; the 1×1 head costs nothing.
    """
    import keras

    config = model.get_config()
    outputs = {entry[0] for entry in _output_entries(config.get("output_layers", []))}
    for layer in config["layers"]:
        if layer["class_name"] == "InputLayer" or layer["name"] in outputs:
            continue
        layer["config"]["dtype"] = {
            "module": "keras",
            "class_name": "DTypePolicy",
            "config": {"name": precision.value},
            "registered_name": None,
        }
    clone = keras.Model.from_config(config)
    clone.set_weights(model.get_weights())
    return clone


def _output_entries(entries: Any) -> list[list[Any]]:
    """A functional config's ``output_layers``: one [name, node, tensor] or a list of them."""
    if entries and isinstance(entries[0], str):
        return [entries]
    return list(entries)


def _load_builtin(name: str, stage: Stage) -> LoadedModel:
    """Shipped models: architecture JSON plus float16 weights (half the size), cast back."""
    import keras

    folder = DEMO_DIR if name == "demo" else None
    if folder is None:
        raise ModelError(f"unknown built-in model 'builtin:{name}' (only 'builtin:demo' exists)")
    arch, weights = folder / f"{stage}.json", folder / f"{stage}.weights.npz"
    if not arch.is_file() or not weights.is_file():
        raise ModelError(
            f"the built-in demo {stage} model is not part of this installation "
            f"(missing {weights.name}); run scripts/train_demo_models.py or set "
            f"models.{stage} to a .keras file"
        )
    model = keras.Model.from_config(json.loads(arch.read_text(encoding="utf-8")))
    with np.load(weights) as packed:
        model.set_weights([packed[f"w{i}"].astype(np.float32) for i in range(len(packed.files))])
    shape = "x".join(str(d) for d in model.input_shape[1:])
    return LoadedModel(
        model, file_sha256(arch, weights), "builtin", f"{model.name} ({shape}, demo)"
    )


def pack_builtin(model: Any, folder: Path, stage: Stage) -> str:
    """Writes ``model`` in the shipped form (JSON + float16 weights); returns its version."""
    folder.mkdir(parents=True, exist_ok=True)
    arch, weights = folder / f"{stage}.json", folder / f"{stage}.weights.npz"
    arch.write_text(json.dumps(model.get_config()), encoding="utf-8")
    arrays = {f"w{i}": w.astype(np.float16) for i, w in enumerate(model.get_weights())}
    np.savez_compressed(weights, **arrays)
    return file_sha256(arch, weights)


def _check_shape(model: Any, ref: str, stage: Stage) -> None:
    inputs = getattr(model, "inputs", None) or []
    if len(inputs) != 1:
        raise ModelError(f"{stage} model {ref} must have one image input, not {len(inputs)}")
    in_shape = tuple(model.input_shape)
    out_shape = tuple(model.output_shape)
    if len(in_shape) != 4 or in_shape[1] is None or in_shape[2] is None or in_shape[3] is None:
        raise ModelError(
            f"{stage} model {ref} must take images of a fixed size (N, H, W, C), not {in_shape}"
        )
    if in_shape[3] not in (1, 3):
        raise ModelError(f"{stage} model {ref} must take 1 or 3 channels, not {in_shape[3]}")
    if len(out_shape) != 4 or out_shape[1:3] != in_shape[1:3]:
        raise ModelError(
            f"{stage} model {ref} must output a mask of its input's height and width "
            f"(got output {out_shape} for input {in_shape})"
        )
