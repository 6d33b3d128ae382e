"""``backfill --engine local``: the same sources through today's runner on this machine
(register, then process until the queue is empty): the reference the Ray plan is
measured against."""

from __future__ import annotations

import time
from collections.abc import Iterable
from pathlib import Path

from cervixbatch.backfill.register import hash_here, register_sources, tally_inputs
from cervixbatch.backfill.sources import SourceRejection
from cervixbatch.backfill.totals import BackfillTotals, ProgressLine
from cervixbatch.config import Config
from cervixbatch.worker.batch_state import BatchOutcome
from cervixbatch.worker.one_shot import one_shot_worker

__all__ = ["backfill_local"]


def backfill_local(config: Config, candidates: Iterable[Path | SourceRejection]) -> BackfillTotals:
    """Registers ``candidates`` and processes the queue with the configured runner."""
    totals = BackfillTotals(engine="local", model_calls=None)
    with one_shot_worker(config, kind="backfill") as run:
        runner, stages = run.runner, run.stages
        pair = (stages.cervix_version, stages.lesion_version)
        ids = register_sources(runner.db, runner.registrar, candidates, totals, hash_here, pair)
        progress = ProgressLine(runner.queue_counts().claimable)
        clock = time.perf_counter()

        def on_batch(outcome: BatchOutcome) -> None:
            finished = run.finished(outcome)
            progress.advance(finished)
            totals.note_commit(finished)
            totals.frames += outcome.frames

        runner.process_until_empty(on_batch=on_batch)
        totals.seconds = time.perf_counter() - clock
        progress.advance(0, force=True)
        tally_inputs(runner.db, ids, totals)
    return totals
