"""The two measured paths of every bench: END TO END through the real ``Runner`` (a real
database, register → claim → read → both stages → write → commit, under either schedule)
and the MODEL-ONLY bound (both stages on ready tensors at the batch size, via
``predict_batch``). ``tools.bench`` runs them per variant and size (``measure_variant``),
``tools.bench_schedule`` and ``tools.bench_device`` per schedule."""

from __future__ import annotations

import contextlib
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from cervixbatch.config import Config
from cervixbatch.errors import CervixbatchError
from cervixbatch.tools.bench.seed_loop import rates

if TYPE_CHECKING:
    from cervixbatch.imaging.frames import Frame
    from cervixbatch.model.loaded import Stages
    from cervixbatch.segmentation.two_stage import FrameResult, Pipeline
    from cervixbatch.worker.batch_state import BatchOutcome

__all__ = ["EndToEnd", "end_to_end_runner", "measure_variant", "model_only"]


def measure_variant(
    config: Config,
    stages: Stages,
    photos: dict[str, tuple[list[Path], list[Path]]],
    *,
    repeats: int,
    step: Callable[[int], None],
) -> dict[str, Any]:
    """One variant: the model-only bound (best of its runs before and after each size: a
    conservative denominator when something else slows one down) and end to end."""
    batch = config.batch.size
    bounds = [model_only(stages, batch, repeats=repeats)]
    end_to_end: dict[str, Any] = {}
    with end_to_end_runner(config, stages) as e2e:
        for name, (measured, warm) in photos.items():
            e2e.run(warm)  # warm-up (the first size also fills the caches)
            end_to_end[name] = e2e.run(measured)
            step(1)
            bounds.append(model_only(stages, batch, repeats=repeats))
    best = max(bounds, key=lambda bound: bound["images_per_s"])
    return {
        "runtime": stages.runtime,
        "precision": stages.precision,
        "inputs": {
            "cervix_input": [*stages.cervix.input_size, stages.cervix.input_channels],
            "lesion_input": [*stages.lesion.input_size, stages.lesion.input_channels],
        },
        "model_only": {**best, "runs_images_per_s": [b["images_per_s"] for b in bounds]},
        "end_to_end": end_to_end,
    }


# -- the real path ---------------------------------------------------------------------------


class _TimedPipeline:
    """Wraps the sequential runner's pipeline to add up its per-frame step timings (from
    ``run``); every other attribute passes through."""

    def __init__(self, inner: Pipeline) -> None:
        self.inner = inner
        self.steps: Counter[str] = Counter()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

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
    from cervixbatch.store.db import open_configured
    from cervixbatch.worker.runner import Runner

    db = open_configured(config)
    try:
        with Runner(config, db, stages) as runner:
            yield EndToEnd(runner)
    finally:
        db.dispose()


# -- the model-only bound ------------------------------------------------------------------


def model_only(stages: Stages, batch: int, *, repeats: int) -> dict[str, Any]:
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
