"""The backfill's driver: the one process that talks to the database.

    recover → register the sources (hashed on the cluster) → until the queue is empty:
      claim a wave (the runner's claims, leases renewed by its heartbeat) → the Ray plan
      → commit what comes back, ``commit_batch`` inputs per transaction (BatchCommit,
      then AfterCommit: staged outputs published under the claim's fence)

Exactly once: an input's row says done only through ``BatchCommit`` under this driver's
claim, after its outputs are on disk. A task lost with its node is run again by Ray and
overwrites its staged files atomically; a wave Ray gives up on sends its uncommitted
inputs back to the queue (an attempt spent), and the next wave takes them. A driver
killed mid-run leaves its claims to lapse; the next run (any host) recovers them.
"""

from __future__ import annotations

import dataclasses
import resource
import time
from collections.abc import Iterable, Sequence
from pathlib import Path

import structlog

from cervixbatch.backfill.engine import EngineSettings, RayEngine
from cervixbatch.backfill.register import register_sources, tally_inputs
from cervixbatch.backfill.sources import SourceRejection
from cervixbatch.backfill.stages import InFlight, StageContext, shape_only
from cervixbatch.backfill.totals import BackfillTotals, ProgressLine
from cervixbatch.config import Config
from cervixbatch.errors import CervixbatchError, FailReason
from cervixbatch.model.loaded import Stages
from cervixbatch.worker.batch_state import BatchOutcome, WorkItem
from cervixbatch.worker.commit import AfterCommit, BatchCommit
from cervixbatch.worker.one_shot import one_shot_worker
from cervixbatch.worker.presence import WorkerPresence
from cervixbatch.worker.runner import Runner

__all__ = ["Driver", "WaveSettings", "backfill_ray"]

log = structlog.get_logger(__name__)

_MAX_LOST_WAVES = 5  # waves in a row the cluster fails before the run gives up


@dataclasses.dataclass(frozen=True, slots=True)
class WaveSettings:
    """How much the driver claims at once."""

    # Claimed per wave: the plan streams them, then the next wave. Each wave starts its
    # actor pool afresh (the models loaded again), so a wave should last minutes; its
    # leases are renewed in one statement (IN list: under SQLite's 32766 parameters).
    inputs: int = 4096


def backfill_ray(
    config: Config,
    candidates: Iterable[Path | SourceRejection],
    *,
    address: str | None,
    settings: EngineSettings,
    wave: WaveSettings | None = None,
) -> BackfillTotals:
    """Registers ``candidates`` and processes the queue on a Ray cluster; returns the
    totals. Raises ClusterUnreachable when ``address`` does not answer."""
    wave = wave or WaveSettings()
    engine = RayEngine(address, settings)
    sequential = dataclasses.replace(
        config, batch=dataclasses.replace(config.batch, pipeline=False)
    )
    totals = BackfillTotals(engine="ray")
    try:
        with one_shot_worker(config, kind="backfill", runner_config=sequential) as run:
            runner, stages = run.runner, run.stages
            pair = (stages.cervix_version, stages.lesion_version)
            ids = register_sources(
                runner.db, runner.registrar, candidates, totals, engine.hash, pair
            )
            driver = Driver(runner, engine, config, stages, totals)
            driver.run(wave.inputs, run.presence)
            tally_inputs(runner.db, ids, totals)
            runner.outbox.remove_temp_files()  # temp files of a lost task's dead writer
    finally:
        engine.close()
    totals.driver_peak_rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return totals


class Driver:
    """Claims waves, runs them on the cluster, commits what comes back."""

    def __init__(
        self,
        runner: Runner,
        engine: RayEngine | None,  # None: only claims and commits (the commit bench)
        config: Config,
        stages: Stages,
        totals: BackfillTotals,
    ) -> None:
        self.runner = runner
        self.engine = engine
        self.config = config
        self.totals = totals
        self.phases = runner.phases
        self.context = StageContext(config, shape_only(stages), runner.limits, runner.sop_filter)
        # Results are not forwarded from a backfill: its own after-commit, without a forwarder.
        self.after = AfterCommit(config, runner.db, runner.outbox, runner.registrar, None)

    def run(self, wave_size: int, presence: WorkerPresence) -> None:
        """Until nothing is claimable: a wave at a time."""
        assert self.engine is not None
        progress = ProgressLine(self.runner.queue_counts().claimable)
        clock = time.perf_counter()
        lost_in_a_row = 0
        while work := self.claim(wave_size):
            pending = {item.claimed.id: item for item in work}
            try:
                for flights in self.engine.run(work, self.context, self.config):
                    self.commit(flights, pending)
                    progress.advance(len(flights))
                    presence.finished(len(flights))
            except CervixbatchError:
                raise
            except Exception as exc:
                lost_in_a_row += 1
                self.totals.lost_waves += 1
                log.error("backfill_wave_lost", inputs=len(pending), error=type(exc).__name__)  # noqa: TRY400
                if lost_in_a_row >= _MAX_LOST_WAVES:
                    self._give_back(pending.values(), exc)
                    raise
            else:
                lost_in_a_row = 0
            self._give_back(pending.values(), None)
        progress.advance(0, force=True)
        self.totals.seconds += time.perf_counter() - clock

    def claim(self, wave_size: int) -> list[WorkItem]:
        """Claims up to ``wave_size`` inputs, ``batch.size`` per claim (the runner's)."""
        runner, work = self.runner, list[WorkItem]()
        while len(work) < wave_size and self.phases.paused is None:
            claimed = self.phases.claim(time.perf_counter())
            if not claimed:
                break
            runner.leases.hold(item.claimed.id for item in claimed)
            work.extend(claimed)
        return work

    def commit(self, flights: Sequence[InFlight], pending: dict[int, WorkItem]) -> None:
        """One transaction for ``flights``: the runner's commit, then what follows it."""
        runner, totals = self.runner, self.totals
        work = [flight.item for flight in flights if flight.item.claimed.id in pending]
        outcome = BatchOutcome(inputs=len(work))
        runner.leases.release(item.claimed.id for item in work)
        clock = time.perf_counter()
        # input by input if the database refuses a row: one bad input fails alone
        self.phases.record(work, outcome, shared_time=False)
        self.after.run(work)
        totals.commit_seconds += time.perf_counter() - clock
        runner.leases.progress()
        for item in work:
            pending.pop(item.claimed.id, None)
        for flight in flights:
            totals.model_calls = (totals.model_calls or 0) + flight.model_calls
            for node, mb in flight.peak_rss_mb.items():
                totals.peak_rss_mb[node] = max(totals.peak_rss_mb.get(node, 0.0), mb)
        totals.note_commit(len(work))
        totals.frames += sum(len(item.results) for item in work)

    def _give_back(self, left: Iterable[WorkItem], exc: BaseException | None) -> None:
        """Inputs of a wave that never came back: to the queue (an attempt spent)."""
        left = list(left)
        if not left:
            return
        detail = f"the cluster lost the task: {type(exc).__name__}" if exc else "not returned"
        for item in left:
            item.fail(FailReason.INTERNAL_ERROR, detail)
            item.decoded = None
        outcome = BatchOutcome(inputs=len(left))
        self.runner.leases.release(item.claimed.id for item in left)
        with self.runner.db.session() as session:
            commit = BatchCommit(
                session,
                owner=self.runner.owner,
                outcome=outcome,
                max_attempts=self.config.batch.max_attempts,
                writer=self.phases.writer,
                on_disk_error=self.phases.pause_after_disk_error,
            )
            for item in left:
                commit.record(item, ms=0.0)
        commit.events.replay(log)
        self.after.run(left)
