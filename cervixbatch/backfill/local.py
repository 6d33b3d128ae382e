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
from cervixbatch.store.db import open_configured
from cervixbatch.worker.batch_state import BatchOutcome
from cervixbatch.worker.presence import WorkerPresence
from cervixbatch.worker.runner import Runner, load_stages

__all__ = ["backfill_local"]


def backfill_local(config: Config, candidates: Iterable[Path | SourceRejection]) -> BackfillTotals:
    """Registers ``candidates`` and processes the queue with the configured runner."""
    db = open_configured(config)
    totals = BackfillTotals(engine="local", model_calls=None)
    presence: WorkerPresence | None = None
    stop_reason, error = "error", None
    try:
        stages = load_stages(config)
        with Runner(config, db, stages) as runner:
            presence = WorkerPresence.started(
                db, worker_id=runner.owner, kind="backfill", stages=stages
            )
            runner.leases.set_beat(presence.beat)
            runner.recover()
            pair = (stages.cervix_version, stages.lesion_version)
            ids = register_sources(db, runner.registrar, candidates, totals, hash_here, pair)
            progress = ProgressLine(runner.queue_counts().claimable)
            clock = time.perf_counter()

            def on_batch(outcome: BatchOutcome) -> None:
                finished = outcome.done + outcome.rejected + outcome.failed
                progress.advance(finished)
                assert presence is not None
                presence.finished(finished, failed=outcome.failed)
                totals.committed += finished
                totals.frames += outcome.frames

            runner.process_until_empty(on_batch=on_batch)
            totals.seconds = time.perf_counter() - clock
            progress.advance(0, force=True)
            tally_inputs(db, ids, totals)
        stop_reason = "finished"
    except BaseException as exc:
        error = type(exc).__name__
        raise
    finally:
        if presence is not None:
            presence.stop(stop_reason, error=error)
        db.dispose()
    return totals
