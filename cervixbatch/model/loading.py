"""Model files as people have them: ``.keras`` archives, Keras 2 HDF5 full models, and
Keras 2 HDF5 weights-only files loaded into the built-in seed architecture of their stage.

Each loader is tried in turn; a file that fits none gets an error that names every loader
and why it failed. What was loaded (format and architecture) travels with the model, so
logs, model cards and ``cervixbatch model-info`` can say it.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from cervixbatch.errors import ModelError
from cervixbatch.imaging.digest import feed_sha256
from cervixbatch.model.stage_names import Stage

__all__ = [
    "SEED_INPUT_SIZES",
    "LoadedModel",
    "WeightsLayout",
    "configured_descriptions",
    "describe_file",
    "file_sha256",
    "inspect_weights",
    "load_model_file",
]

_ZIP_MAGIC = b"PK\x03\x04"
_HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"
# The seeds' working sizes: stage 1 at 128×128, stage 2 at 512×512 (the weights do not say).
SEED_INPUT_SIZES: dict[str, int] = {Stage.CERVIX: 128, Stage.LESION: 512}


def file_sha256(*paths: Path) -> str:
    """The hex sha256 of the concatenated bytes of ``paths`` (a model's version)."""
    digest = hashlib.sha256()
    for path in paths:
        with path.open("rb") as handle:
            feed_sha256(digest, handle.read)
    return digest.hexdigest()


@dataclasses.dataclass(frozen=True, slots=True)
class LoadedModel:
    """A Keras model and what it was loaded from."""

    model: Any
    version: str  # sha256 of the file(s)
    format: str  # "keras", "keras2-h5", "keras2-h5-weights" or "builtin"
    architecture: str  # a short human-readable description

    @property
    def description(self) -> str:
        """``format: architecture``, for logs and cards."""
        return f"{self.format}: {self.architecture}"


@dataclasses.dataclass(frozen=True, slots=True)
class WeightsLayout:
    """What the weight shapes of a Keras 2 HDF5 file say about its network."""

    convolutions: int  # layers with a 4-D kernel, transposed ones included
    transposed: int  # layers named like Conv2DTranspose
    batchnorms: int
    input_channels: int
    filters: int  # the first convolution's width
    head_channels: int  # the last (1×1) convolution's output channels
    head_kernel: tuple[int, int]
    keras_version: str


def _seed_custom_objects() -> dict[str, Any]:
    """Names the seeds compiled with: loading with compile=False never calls them, but a
    file's config may still name them, so they must resolve without the seed's code."""
    from cervixbatch.model import losses

    def my_iou_metric(y_true: Any, y_pred: Any) -> Any:  # seed 000's metric (tf.py_func)
        return losses.iou_coef(y_true, y_pred > 0.5)

    return {
        "dice_coef": losses.dice_coef,
        "dice_coef_loss": losses.dice_coef_loss,
        "bce_dice_loss": losses.bce_dice_loss,
        "iou_coef": losses.iou_coef,
        "my_iou_metric": my_iou_metric,
        "get_iou_vector": my_iou_metric,
    }


def _magic(path: Path) -> bytes:
    with path.open("rb") as handle:
        return handle.read(8)


def _keras_archive(path: Path, stage: str, input_size: int | None) -> LoadedModel:  # noqa: ARG001
    import keras

    if _magic(path)[:4] != _ZIP_MAGIC:
        raise ValueError("not a .keras archive (no zip header)")
    model = keras.models.load_model(path, compile=False, custom_objects=_seed_custom_objects())
    return LoadedModel(model, file_sha256(path), "keras", _describe(model))


def _keras2_full(path: Path, stage: str, input_size: int | None) -> LoadedModel:  # noqa: ARG001
    import h5py
    import keras

    if _magic(path) != _HDF5_MAGIC:
        raise ValueError("not an HDF5 file")
    with h5py.File(path, "r") as handle:
        if "model_config" not in handle.attrs:
            raise ValueError("no model config in the file (it holds weights only)")
        version = _attr_text(handle.attrs.get("keras_version", b"?"))
    model = _single_io(
        keras.models.load_model(path, compile=False, custom_objects=_seed_custom_objects())
    )
    return LoadedModel(
        model, file_sha256(path), "keras2-h5", f"{_describe(model)}; written by Keras {version}"
    )


def _single_io(model: Any) -> Any:
    """The same layers behind one input and one output tensor. Keras 2 saved a functional
    model's inputs as a list, so Keras 3 warns at every call with a bare tensor."""
    import keras

    inputs, outputs = getattr(model, "inputs", None), getattr(model, "outputs", None)
    if not inputs or not outputs or len(inputs) != 1 or len(outputs) != 1:
        return model  # _check_shape refuses it with a clear message
    return keras.Model(inputs=inputs[0], outputs=outputs[0], name=model.name)


def _seed_weights(path: Path, stage: str, input_size: int | None) -> LoadedModel:
    if _magic(path) != _HDF5_MAGIC:
        raise ValueError("not an HDF5 file")
    layout = inspect_weights(path)
    size = input_size or SEED_INPUT_SIZES[stage]
    model, architecture = _build_seed(layout, stage, size)
    try:
        model.load_weights(path)
    except Exception as exc:
        raise ValueError(f"the weights do not fit {architecture}: {exc}") from exc
    return LoadedModel(
        model,
        file_sha256(path),
        "keras2-h5-weights",
        f"{architecture}; weights written by Keras {layout.keras_version}",
    )


_LOADERS: tuple[tuple[str, Callable[[Path, str, int | None], LoadedModel]], ...] = (
    (".keras archive", _keras_archive),
    ("Keras 2 HDF5 full model", _keras2_full),
    ("Keras 2 HDF5 weights into the seed architecture", _seed_weights),
)


def load_model_file(path: Path, stage: str, *, input_size: int | None = None) -> LoadedModel:
    """Loads ``path`` for ``stage`` ("cervix" or "lesion") with the first loader that fits.

    ``input_size`` is the square size a weights-only file is built at (weights do not
    carry it); None takes the seed's size for the stage.
    """
    if not path.is_file():
        raise ModelError(f"{stage} model {path} does not exist")
    failures = []
    for name, loader in _LOADERS:
        try:
            return loader(path, stage, input_size)
        except Exception as exc:  # noqa: BLE001 - every failure is reported below, by loader
            failures.append(f"{name}: {_first_line(exc)}")
    tried = "; ".join(failures)
    raise ModelError(f"{stage} model {path} cannot be loaded. Tried {tried}")


def describe_file(path: Path, stage: str) -> str:
    """What ``path`` holds, ``format: architecture``, read without TensorFlow (for the
    report's "models in use"); "unreadable" when it is none of the known formats."""
    import zipfile

    import h5py

    try:
        magic = _magic(path)
        if magic[:4] == _ZIP_MAGIC:
            with zipfile.ZipFile(path) as archive:
                config = json.loads(archive.read("config.json"))
            return f"keras: {config.get('config', {}).get('name', '?')}"
        if magic != _HDF5_MAGIC:
            return "unreadable"
        with h5py.File(path, "r") as handle:
            if "model_config" in handle.attrs:
                config = json.loads(_attr_text(handle.attrs["model_config"]))
                name = config.get("config", {}).get("name", "?")
                version = _attr_text(handle.attrs.get("keras_version", "?"))
                return f"keras2-h5: {name}; written by Keras {version}"
        layout = inspect_weights(path)
    except (OSError, ValueError, KeyError, zipfile.BadZipFile):
        return "unreadable"
    width = "base_filters" if stage == Stage.CERVIX else "n_filters"
    return (
        f"keras2-h5-weights: seed {stage} UNet ({width}={layout.filters}, "
        f"batchnorm={layout.batchnorms > 0}, head {layout.head_channels})"
    )


def configured_descriptions(refs: dict[str, str]) -> dict[str, str]:
    """sha256 → description of each configured model (``{"cervix": ref, ...}``), for
    files that exist; results record the sha256, this tells what it stands for."""
    named: dict[str, str] = {}
    demo = Path(__file__).parent / "demo"
    for stage, ref in refs.items():
        if ref == "builtin:demo":
            files = (demo / f"{stage}.json", demo / f"{stage}.weights.npz")
            if all(f.is_file() for f in files):
                named[file_sha256(*files)] = "builtin: demo"
            continue
        path = Path(ref)
        if path.is_file():
            named[file_sha256(path)] = describe_file(path, stage)
    return named


def inspect_weights(path: Path) -> WeightsLayout:
    """Reads a Keras 2 HDF5 file's weight shapes (full-model or weights-only layout)."""
    import h5py

    with h5py.File(path, "r") as handle:
        group = handle.get("model_weights", handle)
        names = [_attr_text(n) for n in group.attrs.get("layer_names", [])]
        if not names:
            raise ValueError("no Keras layer weights in the file")
        written_by = handle.attrs.get("keras_version", b"?")
        version = _attr_text(group.attrs.get("keras_version", written_by))
        kernels: list[tuple[str, tuple[int, ...]]] = []
        batchnorms = 0
        for name in names:
            layer = group[name]
            weights = [_attr_text(w) for w in layer.attrs.get("weight_names", [])]
            shapes = {w.rsplit("/", 1)[-1].split(":")[0]: tuple(layer[w].shape) for w in weights}
            if "moving_mean" in shapes:
                batchnorms += 1
            elif "kernel" in shapes and len(shapes["kernel"]) == 4:
                kernels.append((name, shapes["kernel"]))
    if not kernels:
        raise ValueError("no convolution kernels in the file")
    first, last = kernels[0][1], kernels[-1][1]
    return WeightsLayout(
        convolutions=len(kernels),
        transposed=sum(1 for name, _ in kernels if "transpose" in name.lower()),
        batchnorms=batchnorms,
        input_channels=int(first[2]),
        filters=int(first[3]),
        head_channels=int(last[3]),
        head_kernel=(int(last[0]), int(last[1])),
        keras_version=version,
    )


def _build_seed(layout: WeightsLayout, stage: str, size: int) -> tuple[Any, str]:
    """The stage's seed UNet with the hyperparameters the weight shapes imply."""
    from cervixbatch.model.unet import build_cervix_unet, build_lesion_unet

    if layout.head_kernel != (1, 1):
        raise ValueError(f"the last convolution is {layout.head_kernel}, not a 1×1 sigmoid head")
    if stage == Stage.CERVIX:
        if layout.batchnorms or layout.transposed:
            raise ValueError(
                "the weights have BatchNorm or transposed convolutions: they look like the "
                "seed lesion UNet, not the cervix one (is this the lesion stage's file?)"
            )
        depth, rest = divmod(layout.convolutions - 3, 4)
        if rest or depth < 1:
            raise ValueError(f"{layout.convolutions} convolutions fit no depth of the cervix UNet")
        model = build_cervix_unet(
            size,
            input_channels=layout.input_channels,
            base_filters=layout.filters,
            depth=depth,
            output_channels=layout.head_channels,
        )
        arch = (
            f"seed cervix UNet (base_filters={layout.filters}, depth={depth}, "
            f"{size}x{size}x{layout.input_channels}, head {layout.head_channels})"
        )
        return model, arch
    depth, rest = divmod(layout.convolutions - 3, 5)
    if rest or depth < 1:
        raise ValueError(f"{layout.convolutions} convolutions fit no depth of the lesion UNet")
    batchnorm = layout.batchnorms > 0
    if batchnorm and layout.batchnorms != 4 * depth + 2:
        raise ValueError(f"{layout.batchnorms} BatchNorm layers do not fit depth {depth}")
    model = build_lesion_unet(
        size,
        input_channels=layout.input_channels,
        n_filters=layout.filters,
        depth=depth,
        batchnorm=batchnorm,
        output_channels=layout.head_channels,
    )
    arch = (
        f"seed lesion UNet (n_filters={layout.filters}, depth={depth}, batchnorm={batchnorm}, "
        f"{size}x{size}x{layout.input_channels}, head {layout.head_channels})"
    )
    return model, arch


def _describe(model: Any) -> str:
    shape = "x".join(str(d) for d in model.input_shape[1:])
    head = model.output_shape[-1]
    return f"{model.name} ({shape}, head {head}, {int(model.count_params()):,} parameters)"


def _attr_text(value: Any) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    line = text.splitlines()[0]
    return line if len(line) <= 300 else line[:297] + "..."
