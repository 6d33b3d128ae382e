"""``cervixbatch process``: register every file under some paths, then process the queue
until it is empty."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path

from cervixbatch.cli.progress import progress_bar
from cervixbatch.config import Config
from cervixbatch.intake.rules import InputRule, own_paths
from cervixbatch.store.schema import Status
from cervixbatch.worker.batch_state import BatchOutcome
from cervixbatch.worker.one_shot import one_shot_worker
from cervixbatch.worker.runner import Runner

__all__ = ["ProcessTotals", "process_paths"]


@dataclasses.dataclass(slots=True)
class ProcessTotals:
    """What a one-shot run did, for its summary line and exit status."""

    inputs: int = 0
    known: int = 0
    done: int = 0
    rejected: int = 0
    failed: int = 0
    queued: int = 0  # left in the queue: work was paused (disk space, a disk error)
    paused: str | None = None


def process_paths(config: Config, paths: Sequence[Path]) -> ProcessTotals:
    """Registers the files under ``paths`` and processes everything queued, then returns.

    Failures of ours are retried (``batch.max_attempts``) before an input counts as failed.
    """
    totals = ProcessTotals()
    with one_shot_worker(config, kind="process") as run:
        runner = run.runner
        ids: set[int] = set()
        excluded = own_paths(config)
        for root in paths:
            for file in InputRule(root.resolve(), excluded=excluded).files():
                registration = runner.registrar.register(file)
                if registration is None:
                    continue  # vanished or unreadable before it could be hashed
                totals.inputs += 1
                totals.known += not registration.created
                ids.add(registration.input_id)
        queued = _count_queued(runner)
        with progress_bar("process", total=queued) as advance:

            def on_batch(outcome: BatchOutcome) -> None:
                advance(run.finished(outcome))
                run.presence.beat()

            runner.process_until_empty(on_batch=on_batch)
        _tally(runner, ids, totals)
        if totals.queued:
            totals.paused = runner.paused
    return totals


def _count_queued(runner: Runner) -> int:
    return runner.queue_counts().by_status[Status.QUEUED.value]


def _tally(runner: Runner, ids: set[int], totals: ProcessTotals) -> None:
    from sqlalchemy import select

    from cervixbatch.store.schema import Input

    if not ids:
        return
    with runner.db.read_session() as session:
        for (status,) in session.execute(select(Input.status).where(Input.id.in_(ids))):
            if status == Status.DONE:
                totals.done += 1
            elif status == Status.REJECTED:
                totals.rejected += 1
            elif status == Status.FAILED:
                totals.failed += 1
            elif status == Status.QUEUED:
                totals.queued += 1
