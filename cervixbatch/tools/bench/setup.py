"""What every bench measures on, in one place: the options, the bench models (the seed
projects' sizes with random weights, or tiny ones), the synthetic photos, a bench
configuration in a temp folder, and the machine a figure was measured on.

The models have the seeds' sizes (stage 1 RGB 128×128, 32 filters; stage 2 grey 512×512,
16 filters) with random weights: speed does not depend on them. The stage-1 head is set
to call every pixel cervix, so stage 2 always runs, on the whole frame (the crop's worst
case), in every path alike.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import platform
import shutil
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from cervixbatch.config import Config, Precision, Runtime
from cervixbatch.errors import ModelError
from cervixbatch.model.int8 import int8_paths
from cervixbatch.model.options import cache_folder

__all__ = [
    "DEFAULT_SIZES",
    "TINY_SIZES",
    "WARMUP",
    "BenchOptions",
    "bench_photos",
    "configured_bench_models",
    "dumps",
    "machine_info",
    "make_bench_config",
    "ratio",
    "save_bench_models",
]

DEFAULT_SIZES: tuple[tuple[int, int], ...] = ((4128, 3096), (1600, 1200))
TINY_SIZES: tuple[tuple[int, int], ...] = ((320, 240),)
WARMUP = 2  # photos per path run before timing: traces the graphs, fills caches


@dataclasses.dataclass(frozen=True, slots=True)
class BenchOptions:
    """What to measure."""

    count: int = 16
    sizes: tuple[tuple[int, int], ...] = DEFAULT_SIZES
    tiny: bool = False  # tiny models (unless configured_models) and photos: a smoke run
    precision: Precision | None = None  # None: models.precision of the configuration
    runtimes: tuple[Runtime, ...] = ()  # with precisions: every pair, side by side
    precisions: tuple[Precision, ...] = ()
    batch_size: int | None = None  # None: batch.size of the configuration
    seed: int = 0
    # False: seed-size models with random weights (speed only); True: the configured
    # models (their INT8 agreement means something: quantized with accuracy control)
    configured_models: bool = False


def make_bench_config(
    config: Config,
    root: Path,
    options: BenchOptions,
    models: tuple[str, str],
    *,
    pipeline: bool | None = None,
    simulate_device_ms: float = 0.0,
) -> Config:
    """The user's settings (batch, output, thresholds, limits) with paths under ``root``,
    the bench models and the schedule (``None``: the configured one); inputs are kept
    where they are."""
    from cervixbatch.config import AfterAction, DatabaseConfig, PathsConfig

    return dataclasses.replace(
        config,
        paths=PathsConfig(inbox=root / "inbox", outbox=root / "outbox"),
        database=DatabaseConfig(url=f"sqlite:///{root / 'state' / 'bench.db'}"),
        watch=dataclasses.replace(config.watch, after=AfterAction.KEEP, archive=root / "archive"),
        batch=dataclasses.replace(
            config.batch,
            size=options.batch_size or config.batch.size,
            max_attempts=1,
            pipeline=config.batch.pipeline if pipeline is None else pipeline,
        ),
        models=dataclasses.replace(
            config.models,
            cervix=models[0],
            lesion=models[1],
            precision=options.precision or config.models.precision,
            simulate_device_ms=simulate_device_ms,
            cache=root / "model-cache",  # never the user's cache: these models are throwaway
        ),
    )


def save_bench_models(folder: Path, *, tiny: bool) -> tuple[Path, Path]:
    """Seed-size models (or tiny ones) with random weights, saved as .keras files."""
    import keras

    from cervixbatch.model.unet import build_cervix_unet, build_lesion_unet

    keras.utils.set_random_seed(0)
    if tiny:
        cervix = build_cervix_unet(32, base_filters=4, depth=2)
        lesion = build_lesion_unet(64, n_filters=4, depth=2)
    else:
        cervix, lesion = build_cervix_unet(128), build_lesion_unet(512)
    head = cervix.get_layer("mask")
    kernel, bias = head.get_weights()
    head.set_weights([np.zeros_like(kernel), bias + 6.0])  # every pixel cervix: see above
    folder.mkdir(parents=True, exist_ok=True)
    paths = folder / "cervix.keras", folder / "lesion.keras"
    cervix.save(paths[0])
    lesion.save(paths[1])
    return paths


def configured_bench_models(
    config: Config, folder: Path, cache: Path
) -> tuple[tuple[str, str], bool]:
    """The configured models' references to bench, and whether their INT8 models exist.

    Where both stages already have INT8 models whose cards pass the gate (made by
    `cervixbatch quantize`), the bench runs exactly those: the configured references, with
    a built-in model's INT8 files copied into the bench's ``cache``. Otherwise the models
    are written as .keras files into the bench's ``folder`` (built-in ones written out),
    so that INT8 models the bench makes land there, never beside the user's files.
    """
    from cervixbatch.model.stage import load_keras_model
    from cervixbatch.model.stage_names import Stage

    refs = config.models.cervix, config.models.lesion
    if _passing_int8(config, refs):
        user_cache = cache_folder(config)
        cache.mkdir(parents=True, exist_ok=True)
        for ref, stage in zip(refs, Stage, strict=True):
            if ref.startswith("builtin:"):
                assert user_cache is not None  # _passing_int8 found the files there
                found = int8_paths(ref, stage, user_cache)
                for path in (found.xml, found.bin, found.card):
                    shutil.copy2(path, cache / path.name)
        return refs, True
    folder.mkdir(parents=True, exist_ok=True)
    paths = folder / "cervix.keras", folder / "lesion.keras"
    sizes = config.models.cervix_input_size, config.models.lesion_input_size
    for stage, ref, size, path in zip(Stage, refs, sizes, paths, strict=True):
        load_keras_model(ref, stage, input_size=size or None).model.save(path)
    return (str(paths[0]), str(paths[1])), False


def _passing_int8(config: Config, refs: tuple[str, str]) -> bool:
    """Whether both stages have INT8 models the daemon would accept."""
    from cervixbatch.model.int8 import check_int8_card
    from cervixbatch.model.loading import file_sha256
    from cervixbatch.model.openvino_rt import model_files
    from cervixbatch.model.stage_names import Stage

    cache = cache_folder(config)
    for ref, stage in zip(refs, Stage, strict=True):
        if ref.startswith("builtin:") and cache is None:
            return False
        try:
            check_int8_card(
                int8_paths(ref, stage, cache),
                stage=stage,
                version=file_sha256(*model_files(ref, stage)),
                minimum=config.models.min_agreement_dice,
            )
        except (ModelError, OSError):
            return False
    return True


def bench_photos(folder: Path, count: int, size: tuple[int, int], seed: int) -> list[Path]:
    """``count`` distinct synthetic JPEGs of ``size`` (distinct bytes: no deduplication)."""
    from cervixbatch.tools.synth.v1 import write_dataset

    stems = write_dataset(folder, count, seed=seed, size=size)
    return [folder / "images" / f"{stem}.jpg" for stem in stems]


def ratio(a: dict[str, Any], b: dict[str, Any]) -> float:
    """How many times ``a``'s images/second ``b``'s is."""
    return round(a["images_per_s"] / b["images_per_s"], 3)


def machine_info(device: str, *, cpu_bf16: bool) -> dict[str, Any]:
    """The CPU, its cores, the device and the library versions a figure depends on."""
    import tensorflow as tf

    model = platform.processor()
    with contextlib.suppress(OSError):
        text = Path("/proc/cpuinfo").read_text(encoding="ascii", errors="replace")
        names = [
            line.split(":", 1)[1].strip()
            for line in text.splitlines()
            if ":" in line and line.startswith("model name")
        ]
        model = names[0] if names else model
    return {
        "cpu": model,
        "cores": len(os.sched_getaffinity(0)),
        "cpu_bf16": cpu_bf16,
        "device": device,
        "tensorflow": tf.__version__,
        "opencv": cv2.__version__,
    }


def dumps(report: dict[str, Any]) -> str:
    """The report as indented JSON."""
    return json.dumps(report, indent=2)
