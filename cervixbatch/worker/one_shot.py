"""A worker for one run that ends (``cervixbatch process``, ``backfill``): the database
opened, the models loaded, the Runner and its presence row started and dead workers'
claims recovered; on the way out, the presence row says how the run ended (finished, or
the error's type) and the database is let go. The daemon has a lifecycle of its own."""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Iterator
from typing import TYPE_CHECKING

from cervixbatch.model.loaded import Stages
from cervixbatch.model.pair import load_stages
from cervixbatch.store.db import open_configured
from cervixbatch.worker.presence import WorkerPresence
from cervixbatch.worker.runner import Runner

if TYPE_CHECKING:
    from cervixbatch.config import Config
    from cervixbatch.worker.batch_state import BatchOutcome

__all__ = ["OneShot", "one_shot_worker"]


@dataclasses.dataclass(frozen=True, slots=True)
class OneShot:
    """The runner of a one-shot run, its presence row and the models it loaded."""

    runner: Runner
    presence: WorkerPresence
    stages: Stages

    def finished(self, outcome: BatchOutcome) -> int:
        """Counts a batch's finished inputs (any terminal state) on the worker's row;
        returns how many there were."""
        finished = outcome.done + outcome.rejected + outcome.failed
        self.presence.finished(finished, failed=outcome.failed)
        return finished


@contextlib.contextmanager
def one_shot_worker(
    config: Config, *, kind: str, runner_config: Config | None = None
) -> Iterator[OneShot]:
    """A started worker of ``kind`` for the ``with`` block; ``runner_config`` (default
    ``config``) is what its Runner runs with."""
    db = open_configured(config)
    presence: WorkerPresence | None = None
    stop_reason, error = "error", None
    try:
        stages = load_stages(config)
        with Runner(runner_config or config, db, stages) as runner:
            presence = WorkerPresence.started(db, worker_id=runner.owner, kind=kind, stages=stages)
            runner.leases.set_beat(presence.beat)  # from the heartbeat thread, within batches
            runner.recover()
            yield OneShot(runner, presence, stages)
        stop_reason = "finished"
    except BaseException as exc:
        error = type(exc).__name__
        raise
    finally:
        if presence is not None:
            presence.stop(stop_reason, error=error)
        db.dispose()
