"""The pipelined and the sequential schedules side by side (and the building blocks of
``bench --simulate-device``): images/second of the real path against the seed-style loop
and against the model-only bound, measured in one run on the same synthetic photos.

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
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import cv2
import numpy as np

from cervixbatch.config import Config, Precision
from cervixbatch.errors import CervixbatchError
from cervixbatch.tools.bench_seed_loop import load_plain, rates, seed_loop

if TYPE_CHECKING:
    from cervixbatch.imaging.frames import Frame
    from cervixbatch.pipeline import FrameResult, Pipeline
    from cervixbatch.runner import BatchOutcome, Stages

__all__ = [
    "DEFAULT_SIZES",
    "TINY_SIZES",
    "BenchOptions",
    "EndToEnd",
    "bench_photos",
    "dumps",
    "end_to_end_runner",
    "machine_info",
    "make_bench_config",
    "run_bench",
    "seed_loop",
]

DEFAULT_SIZES: tuple[tuple[int, int], ...] = ((4128, 3096), (1600, 1200))
TINY_SIZES: tuple[tuple[int, int], ...] = ((320, 240),)
_WARMUP = 2  # photos per path run before timing: traces the graphs, fills caches


@dataclasses.dataclass(frozen=True, slots=True)
class BenchOptions:
    """What to measure."""

    count: int = 16
    sizes: tuple[tuple[int, int], ...] = DEFAULT_SIZES
    tiny: bool = False  # tiny models: a smoke run of every path in seconds
    precision: Precision | None = None  # None: models.precision of the configuration
    batch_size: int | None = None  # None: batch.size of the configuration
    seed: int = 0


def run_bench(
    config: Config, options: BenchOptions, on_step: Callable[[int], None] | None = None
) -> dict[str, Any]:
    """Measures the paths and returns the report (JSON-ready).

    ``on_step(1)`` is called after each measured path of each size (3 per size).
    """
    step = on_step or (lambda _n: None)
    from cervixbatch.model.device import configure_tensorflow
    from cervixbatch.runner import load_stages

    started = time.perf_counter()
    info = configure_tensorflow()
    with tempfile.TemporaryDirectory(prefix="cervixbatch-bench-") as tmp:
        root = Path(tmp)
        cervix_path, lesion_path = _save_models(root / "models", tiny=options.tiny)
        models = str(cervix_path), str(lesion_path)
        pipelined = config.batch.pipeline
        other = "sequential" if pipelined else "pipelined"
        bench_config = make_bench_config(config, root / "e2e", options, models, pipeline=pipelined)
        other_config = make_bench_config(
            config, root / other, options, models, pipeline=not pipelined
        )
        stages = load_stages(bench_config)
        batch = bench_config.batch.size
        repeats = 2 if options.tiny else 3
        bounds = [_model_only(stages, batch, repeats=repeats)]
        seed_models = load_plain(cervix_path), load_plain(lesion_path)

        per_size: dict[str, Any] = {}
        with (
            end_to_end_runner(bench_config, stages) as e2e,
            end_to_end_runner(other_config, stages) as e2e_other,
        ):
            for size in options.sizes:
                name = f"{size[0]}x{size[1]}"
                photos = bench_photos(root / f"photos-{name}", options.count, size, options.seed)
                warm = bench_photos(root / f"warm-{name}", _WARMUP, size, options.seed + 1)
                seed_loop(warm, *seed_models, root / f"seed-warm-{name}")  # warm-up
                seed = seed_loop(photos, *seed_models, root / f"seed-{name}")
                step(1)
                e2e.run(warm)  # warm-up (the first size also traces the graphs)
                per_size[name] = {"seed_loop": seed, "end_to_end": e2e.run(photos)}
                step(1)
                e2e_other.run(warm)  # the other schedule, on its own database and outbox
                per_size[name][f"end_to_end_{other}"] = e2e_other.run(photos)
                step(1)
                bounds.append(_model_only(stages, batch, repeats=repeats))
    # The bound is the best of its runs (before and after each size): a conservative
    # denominator when something else on the machine slows one of them down.
    model_only = max(bounds, key=lambda bound: bound["images_per_s"])
    for entry in per_size.values():
        runs = {
            entry["end_to_end"]["mode"]: entry["end_to_end"],
            other: entry[f"end_to_end_{other}"],
        }
        entry["ratios"] = {
            "end_to_end_vs_seed_loop": _ratio(entry["end_to_end"], entry["seed_loop"]),
            "end_to_end_vs_model_only": _ratio(entry["end_to_end"], model_only),
            "pipelined_vs_sequential": _ratio(runs["pipelined"], runs["sequential"]),
        }
    return {
        "count": options.count,
        "batch_size": batch,
        "precision": {"end_to_end": stages.precision, "seed_loop": "float32"},
        "models": {
            "tiny": options.tiny,
            "cervix_input": [*stages.cervix.input_size, stages.cervix.input_channels],
            "lesion_input": [*stages.lesion.input_size, stages.lesion.input_channels],
        },
        "overlay_max_side": bench_config.output.overlay_max_side,
        "model_only": {**model_only, "runs_images_per_s": [b["images_per_s"] for b in bounds]},
        "sizes": per_size,
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "machine": machine_info(info.device, cpu_bf16=info.cpu_bf16),
        "wall_s": round(time.perf_counter() - started, 1),
    }


# -- the real path ---------------------------------------------------------------------------


class _TimedPipeline:
    """Wraps the runner's pipeline to add up its per-frame step timings."""

    def __init__(self, inner: Pipeline) -> None:
        self.inner = inner
        self.steps: Counter[str] = Counter()

    def run(self, frames: Sequence[Frame]) -> list[FrameResult]:
        results = self.inner.run(frames)
        for result in results:
            self.steps.update(result.timings_ms)
        return results


class EndToEnd:
    """One Runner on a fresh database; ``run`` registers photos and drains the queue."""

    def __init__(self, runner: Any) -> None:
        self.runner = runner
        self.pipelined = bool(runner.config.batch.pipeline)
        self.timed: _TimedPipeline | None = None
        if not self.pipelined:  # the pipelined stages call the steps, not ``run``
            self.timed = _TimedPipeline(runner.pipeline)
            runner.pipeline = self.timed

    def run(self, photos: Sequence[Path]) -> dict[str, Any]:
        """Registers and processes ``photos``; images/s, ms per step, CPU ms per image."""
        if self.timed is not None:
            self.timed.steps.clear()
        batches: list[BatchOutcome] = []
        started, cpu = time.perf_counter(), time.process_time()
        for path in photos:
            self.runner.registrar.register(path)
        registered, cpu_registered = time.perf_counter(), time.process_time()
        total = self.runner.process_until_empty(on_batch=batches.append)
        elapsed = time.perf_counter() - started
        processing_s = time.perf_counter() - registered
        if total.done != len(photos):
            raise CervixbatchError(
                f"bench: {total.done} of {len(photos)} photos done "
                f"({total.rejected} rejected, {total.failed} failed, {total.retried} retried)"
            )
        phases: Counter[str] = Counter()
        for outcome in batches:
            phases.update(outcome.timings_ms)
        pipe = self.timed.steps if self.timed is not None else phases
        steps = {
            "register": (registered - started) * 1000,
            "claim": phases["claim"],
            "decode": phases["read"],
            "resize": pipe["preprocess"] + pipe["preprocess2"],
            "stage1": pipe["stage1"],
            "roi": pipe["roi"] + pipe["locate"],
            "stage2": pipe["stage2"],
            "postprocess": pipe["postprocess"],
            "write": phases["write"],
            "commit": phases["commit"],
        }
        if not self.pipelined:
            steps["segment"] = phases["segment"]
        report = rates(len(photos), elapsed, Counter(steps))
        report["mode"] = "pipelined" if self.pipelined else "sequential"
        report["processing_images_per_s"] = round(len(photos) / processing_s, 3)
        if self.timed is not None:  # where the segment phase's time went, per image
            report["pipeline_steps_ms"] = {
                k: round(v / len(photos), 2) for k, v in sorted(self.timed.steps.items())
            }
        report["cpu_ms_per_image"] = {  # all threads of the process: CPU time, not wall
            "register": round((cpu_registered - cpu) * 1000 / len(photos), 2),
            "processing": round((time.process_time() - cpu_registered) * 1000 / len(photos), 2),
        }
        return report


@contextlib.contextmanager
def end_to_end_runner(config: Config, stages: Stages) -> Iterator[EndToEnd]:
    """A Runner on ``config``'s database (created, migrated), disposed of afterwards."""
    from cervixbatch.runner import Runner
    from cervixbatch.store.db import open_database

    db = open_database(config.database.url)
    try:
        with Runner(config, db, stages) as runner:
            yield EndToEnd(runner)
    finally:
        db.dispose()


def make_bench_config(
    config: Config,
    root: Path,
    options: BenchOptions,
    models: tuple[str, str],
    *,
    pipeline: bool,
    simulate_device_ms: float = 0.0,
) -> Config:
    """The user's settings (batch, output, thresholds, limits) with paths under ``root``,
    the bench models and the schedule; inputs are kept where they are."""
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
            pipeline=pipeline,
        ),
        models=dataclasses.replace(
            config.models,
            cervix=models[0],
            lesion=models[1],
            precision=options.precision or config.models.precision,
            simulate_device_ms=simulate_device_ms,
        ),
    )


# -- the model-only bound ------------------------------------------------------------------


def _model_only(stages: Stages, batch: int, *, repeats: int) -> dict[str, Any]:
    """Both stages on ready tensors, ``batch`` images per call; traced before timing."""
    rng = np.random.default_rng(0)
    totals: dict[str, float] = {}
    for name, model in (("stage1", stages.cervix), ("stage2", stages.lesion)):
        height, width = model.input_size
        x = rng.random((batch, height, width, model.input_channels), dtype=np.float32)
        model.predict_batch(x)  # traces
        start = time.perf_counter()
        for _ in range(repeats):
            model.predict_batch(x)
        totals[name] = (time.perf_counter() - start) * 1000 / (repeats * batch)
    per_image = totals["stage1"] + totals["stage2"]
    return {
        "images_per_s": round(1000 / per_image, 3),
        "steps_ms": {k: round(v, 2) for k, v in totals.items()},
    }


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


def bench_photos(folder: Path, count: int, size: tuple[int, int], seed: int) -> list[Path]:
    """``count`` distinct synthetic JPEGs of ``size`` (distinct bytes: no deduplication)."""
    from cervixbatch.tools.synth import write_dataset

    stems = write_dataset(folder, count, seed=seed, size=size)
    return [folder / "images" / f"{stem}.jpg" for stem in stems]


def _ratio(a: dict[str, Any], b: dict[str, Any]) -> float:
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
