"""``cervixbatch bench``: images/second of the real path against the seed-style loop and
against the model-only bound, measured in one run on the same synthetic photos.

Three paths, each warmed up (traced) before it is timed:

- the SEED LOOP (:func:`seed_loop`), written as the seed projects work: per image a full
  ``cv2.imread``, straight ``cv2.resize`` calls, ``model.predict`` on one image per stage,
  full-resolution post-processing, ``cv2.imwrite`` and one SQLite transaction;
- END TO END: the real code path (a real Config in a temp dir, ``open_database``,
  ``Runner``: register → claim → read → both stages → write → commit);
- MODEL ONLY: both stages on ready tensors at the batch size, via ``predict_batch``.

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
import resource
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import cv2
import numpy as np

from cervixbatch.config import Config, Precision, Runtime
from cervixbatch.tools.bench_paths import measure_variant
from cervixbatch.tools.bench_runtimes import (
    Variant,
    agreement_with,
    parse_variants,
    quantize_bench_models,
    variant_config,
)
from cervixbatch.tools.bench_seed_loop import load_plain, seed_loop

if TYPE_CHECKING:
    from cervixbatch.runner import Stages

__all__ = [
    "DEFAULT_SIZES",
    "TINY_SIZES",
    "BenchOptions",
    "bench_steps",
    "dumps",
    "run_bench",
    "seed_loop",
]

DEFAULT_SIZES: tuple[tuple[int, int], ...] = ((4128, 3096), (1600, 1200))
TINY_SIZES: tuple[tuple[int, int], ...] = ((320, 240),)
_WARMUP = 2  # photos per path run before timing: traces the graphs, fills caches
_REFERENCE = Variant(Runtime.TENSORFLOW, Precision.FLOAT32)  # what the agreement is against


@dataclasses.dataclass(frozen=True, slots=True)
class BenchOptions:
    """What to measure."""

    count: int = 16
    sizes: tuple[tuple[int, int], ...] = DEFAULT_SIZES
    tiny: bool = False  # tiny models: a smoke run of every path in seconds
    precision: Precision | None = None  # None: models.precision of the configuration
    runtimes: tuple[Runtime, ...] = ()  # with precisions: every pair, side by side
    precisions: tuple[Precision, ...] = ()
    batch_size: int | None = None  # None: batch.size of the configuration
    seed: int = 0


def bench_steps(options: BenchOptions) -> int:
    """How often ``run_bench`` calls ``on_step``: the seed loop and each variant per size."""
    variants, _ = _variants(options)
    return len(options.sizes) * (1 + len(variants))


def run_bench(
    config: Config, options: BenchOptions, on_step: Callable[[int], None] | None = None
) -> dict[str, Any]:
    """Measures the paths (every variant's, with ``--runtimes``/``--precisions``) and returns
    the report (JSON-ready). ``on_step(1)`` is called after each measured path of each size.
    """
    step = on_step or (lambda _n: None)
    from cervixbatch.model.device import configure_tensorflow

    started = time.perf_counter()
    info = configure_tensorflow()
    variants, notes = _variants(options)
    with tempfile.TemporaryDirectory(prefix="cervixbatch-bench-") as tmp:
        root = Path(tmp)
        cervix_path, lesion_path = _save_models(root / "models", tiny=options.tiny)
        bench_config = _bench_config(config, root, cervix_path, lesion_path, options)
        if any(v is not None and v.precision is Precision.INT8 for v in variants):
            quantize_bench_models(bench_config, root, tiny=options.tiny, seed=options.seed)
        photos: dict[str, tuple[list[Path], list[Path]]] = {}
        per_size: dict[str, Any] = {}
        seed_models = load_plain(cervix_path), load_plain(lesion_path)
        for size in options.sizes:
            name = f"{size[0]}x{size[1]}"
            photos[name] = (
                _photos(root / f"photos-{name}", options.count, size, options.seed),
                _photos(root / f"warm-{name}", _WARMUP, size, options.seed + 1),
            )
            seed_loop(photos[name][1], *seed_models, root / f"seed-warm-{name}")  # warm-up
            per_size[name] = {
                "seed_loop": seed_loop(photos[name][0], *seed_models, root / f"seed-{name}")
            }
            step(1)
        del seed_models
        rows = _measure_variants(bench_config, root, variants, photos, options, step)
    first = rows[0]
    for name, entry in per_size.items():
        entry["end_to_end"] = first["end_to_end"][name]
        entry["ratios"] = {
            "end_to_end_vs_seed_loop": _ratio(entry["end_to_end"], entry["seed_loop"]),
            "end_to_end_vs_model_only": _ratio(entry["end_to_end"], first["model_only"]),
        }
    report: dict[str, Any] = {
        "count": options.count,
        "batch_size": bench_config.batch.size,
        "runtime": first["runtime"],
        "precision": {"end_to_end": first["precision"], "seed_loop": "float32"},
        "models": {"tiny": options.tiny, **first["inputs"]},
        "overlay_max_side": bench_config.output.overlay_max_side,
        "model_only": first["model_only"],
        "sizes": per_size,
    }
    if variants != [None]:
        report["variants"] = [{k: v for k, v in row.items() if k != "inputs"} for row in rows]
        report["notes"] = notes
    report |= {
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "machine": _machine(info.device, cpu_bf16=info.cpu_bf16),
        "wall_s": round(time.perf_counter() - started, 1),
    }
    return report


def _variants(options: BenchOptions) -> tuple[list[Variant | None], list[str]]:
    """The variants asked for; ``[None]`` (the configured runtime and precision) without."""
    if not options.runtimes and not options.precisions:
        return [None], []
    chosen, notes = parse_variants(
        options.runtimes or (Runtime.AUTO,), options.precisions or (Precision.AUTO,)
    )
    return list(chosen), notes


def _measure_variants(  # noqa: PLR0917 - one private helper of run_bench
    config: Config,
    root: Path,
    variants: Sequence[Variant | None],
    photos: dict[str, tuple[list[Path], list[Path]]],
    options: BenchOptions,
    step: Callable[[int], None],
) -> list[dict[str, Any]]:
    """Each variant's model-only bound and end to end per size; with variants, also its
    agreement with TensorFlow float32 on the first size's photos."""
    from cervixbatch.runner import load_stages, pipeline_for
    from cervixbatch.tools.quantize import stage_samples

    reference: Stages | None = None
    samples: Any = None
    if variants != [None]:
        reference_config = variant_config(config, _REFERENCE, root)
        reference = load_stages(reference_config)
        first_photos = next(iter(photos.values()))[0]
        samples = stage_samples(
            pipeline_for(reference_config, reference), first_photos, config.batch.size
        )
    rows = []
    for variant in variants:
        run_config = config if variant is None else variant_config(config, variant, root)
        stages = load_stages(run_config)
        row = measure_variant(
            run_config, stages, photos, repeats=2 if options.tiny else 3, step=step
        )
        if reference is not None:
            row["variant"] = f"{stages.runtime}/{stages.precision}"
            row["agreement"] = agreement_with(reference, stages, samples, run_config)
        rows.append(row)
        del stages
    base = rows[0]
    tf32 = next((r for r in rows if r.get("variant") == _REFERENCE.name), None)
    for row in rows:
        row["ratios"] = {
            "model_only_vs_tensorflow_float32": _ratio(row["model_only"], tf32["model_only"])
            if tf32
            else None,
            "end_to_end_vs_first": {
                size: _ratio(row["end_to_end"][size], base["end_to_end"][size])
                for size in row["end_to_end"]
            },
        }
    return rows


def _bench_config(
    config: Config, root: Path, cervix: Path, lesion: Path, options: BenchOptions
) -> Config:
    """The user's settings (batch, output, thresholds, limits) with temp paths and the
    bench models; inputs are kept where they are."""
    from cervixbatch.config import AfterAction, DatabaseConfig, PathsConfig

    return dataclasses.replace(
        config,
        paths=PathsConfig(inbox=root / "inbox", outbox=root / "outbox"),
        database=DatabaseConfig(url=f"sqlite:///{root / 'state' / 'bench.db'}"),
        watch=dataclasses.replace(config.watch, after=AfterAction.KEEP, archive=root / "archive"),
        batch=dataclasses.replace(
            config.batch, size=options.batch_size or config.batch.size, max_attempts=1
        ),
        models=dataclasses.replace(
            config.models,
            cervix=str(cervix),
            lesion=str(lesion),
            precision=options.precision or config.models.precision,
            cache=root / "model-cache",  # never the user's cache: these models are throwaway
        ),
    )


# -- helpers ---------------------------------------------------------------------------------


def _save_models(folder: Path, *, tiny: bool) -> tuple[Path, Path]:
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


def _photos(folder: Path, count: int, size: tuple[int, int], seed: int) -> list[Path]:
    """``count`` distinct synthetic JPEGs of ``size`` (distinct bytes: no deduplication)."""
    from cervixbatch.tools.synth import write_dataset

    stems = write_dataset(folder, count, seed=seed, size=size)
    return [folder / "images" / f"{stem}.jpg" for stem in stems]


def _ratio(a: dict[str, Any], b: dict[str, Any]) -> float:
    return round(a["images_per_s"] / b["images_per_s"], 3)


def _machine(device: str, *, cpu_bf16: bool) -> dict[str, Any]:
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
