"""Claim → read → pipeline → write → commit: one batch at a time. Used by ``process`` and
by the daemon alike; the daemon only adds discovery, its loop and its lifecycle.

The phases both schedules run are :mod:`cervixbatch.worker.batch_phases` (the Runner
builds them); the commit itself, one method per outcome, is :mod:`cervixbatch.worker.commit`;
registration is :mod:`cervixbatch.intake.registration`; the pipelined schedule (the
default) is :mod:`cervixbatch.worker.overlapped`.
"""

from __future__ import annotations

import dataclasses
import os
import threading
import time
from collections.abc import Callable, Sequence
from typing import Self

import structlog

from cervixbatch.config import Config
from cervixbatch.delivery.disposal import restore_held_files
from cervixbatch.delivery.forwarder import Forwarder
from cervixbatch.imaging.frames import ReadLimits
from cervixbatch.imaging.sop import SopClassFilter
from cervixbatch.intake.registration import Registrar
from cervixbatch.model.loaded import Stages
from cervixbatch.model.pair import pipeline_for
from cervixbatch.outputs.outbox import DIR_MODE, Outbox
from cervixbatch.segmentation.two_stage import Pipeline
from cervixbatch.store import leases, queue
from cervixbatch.store.db import Database
from cervixbatch.store.outage import DatabaseOutage, OutageWaiter
from cervixbatch.store.schema import Status
from cervixbatch.worker.batch_phases import BatchPhases, PhasePools
from cervixbatch.worker.batch_state import BatchOutcome, Phase, WorkItem
from cervixbatch.worker.commit import AfterCommit
from cervixbatch.worker.lease_keeper import LeaseKeeper
from cervixbatch.worker.overlapped import Overlap

__all__ = [
    "DiskState",
    "QueueCounts",
    "Runner",
]

log = structlog.get_logger(__name__)


def _worker_count(configured: int) -> int:
    # The cores this process may run on (taskset, cpusets), not the host's: a container
    # given 4 of 64 cores must not start 64 decoders.
    return configured or max(1, len(os.sched_getaffinity(0)))


@dataclasses.dataclass(frozen=True, slots=True)
class QueueCounts:
    """The queue as the database tells it now."""

    by_status: dict[str, int]  # every status, zero when none
    # Claims a dead worker (another machine's, or ours before a restart) left
    # "processing" whose lease ran out: work for any worker.
    expired_leases: int

    @property
    def claimable(self) -> int:
        """Inputs a claim could take now."""
        return self.by_status[Status.QUEUED.value] + self.expired_leases


@dataclasses.dataclass(frozen=True, slots=True)
class DiskState:
    """The outbox's disk, measured now."""

    paused: str | None  # why no new inputs are taken (a disk problem), or None
    low: bool  # free space is below ``limits.min_free_mb``
    free_mb: float  # infinite when no watermark is set


class Runner:
    """Processes queued inputs in batches; its :attr:`registrar` registers files and its
    :attr:`phases` are what every schedule runs a batch through."""

    def __init__(
        self, config: Config, db: Database, stages: Stages, *, owner: str | None = None
    ) -> None:
        self.db = db
        self.stages = stages
        self.owner = owner or leases.make_owner()
        # Files over max_file_mb are refused before a byte of them is hashed.
        limits = ReadLimits.from_config(config.limits)
        self.registrar = Registrar(db, max_file_bytes=limits.max_file_bytes)
        config.paths.outbox.mkdir(parents=True, exist_ok=True, mode=DIR_MODE)
        self.outbox = Outbox(config.paths.outbox)
        pipeline = pipeline_for(config, stages)
        # Renews the leases of the batch in hand (and pings systemd's watchdog) throughout.
        self.leases = LeaseKeeper(
            db,
            self.owner,
            lease_seconds=config.batch.lease_seconds,
            stall_seconds=config.batch.stall_seconds,
        )
        sends = config.dicom.forward or config.dicomweb.stow_url or config.webhook.url
        self._forwarder = Forwarder(config, db) if sends else None
        # A database outage is waited out (store/outage.py); the service sets the
        # keepalive (the watchdog ping) and ``stopping`` (a stop ends the wait).
        self.outage = OutageWaiter(db, outage_seconds=config.database.outage_seconds)
        self.keepalive: Callable[[], object] = lambda: None
        self.stopping = threading.Event()
        self.phases = BatchPhases(
            config,
            db,
            stages,
            pipeline,
            owner=self.owner,
            outbox=self.outbox,
            leases=self.leases,
            pools=PhasePools(
                _worker_count(config.batch.read_workers), _worker_count(config.batch.write_workers)
            ),
            after=AfterCommit(config, db, self.outbox, self.registrar, self._forwarder),
            outage=self.outage,
            on_outage_wait=self._keep_alive_in_outage,
        )
        self._overlap: Overlap | None = None
        if config.batch.pipeline:  # batches overlap (cervixbatch/worker/overlapped.py)
            self._overlap = Overlap(self.phases)

    @property
    def config(self) -> Config:
        """The configuration the next claim works with."""
        return self.phases.config

    @property
    def pipeline(self) -> Pipeline:
        """The mask maths around both models (replaceable: the bench times its steps)."""
        return self.phases.pipeline

    @pipeline.setter
    def pipeline(self, pipeline: Pipeline) -> None:
        self.phases.pipeline = pipeline

    @property
    def limits(self) -> ReadLimits:
        """What an input may be (file size, image size, frames) before it is decoded."""
        return self.phases.limits

    @property
    def sop_filter(self) -> SopClassFilter:
        """The DICOM SOP classes segmented (``dicom.accept_classes``)."""
        return self.phases.sop_filter

    @property
    def in_flight(self) -> int:
        """Batches claimed and not yet handed back by :meth:`process_batch`."""
        return self._overlap.in_flight if self._overlap is not None else 0

    def finish_in_flight(self) -> list[BatchOutcome]:
        """Lets every batch in flight finish (a drain); returns their outcomes."""
        return self._overlap.finish_in_flight() if self._overlap is not None else []

    def close(self) -> None:
        """Finishes the batches in flight, then stops the thread pools and the heartbeat."""
        if self._overlap is not None:
            self._overlap.close()
        self.phases.pools.shutdown()
        self.leases.close()
        if self._forwarder is not None:
            self._forwarder.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    # -- start-up, and what the service reads --------------------------------------------

    def apply_config(self, config: Config) -> None:
        """Runs with a reloaded configuration from the next claim on: what is read afresh
        for every batch (``batch.size``) follows it, while the pools, the outbox and the
        models keep what they were built with (``cervixbatchd.reload`` changes no more)."""
        self.phases.config = config

    def queue_counts(self) -> QueueCounts:
        """Inputs per status, and the expired claims of dead workers."""
        with self.db.read_session() as session:
            return QueueCounts(queue.status_counts(session), leases.expired_leases(session))

    def disk_state(self) -> DiskState:
        """Measures the outbox's disk now: whether work is paused, and the free space."""
        paused = self.paused
        watermark = self.phases.watermark
        return DiskState(paused, low=watermark.low, free_mb=watermark.free)

    def recover(self) -> tuple[int, int]:
        """Frees inputs of dead workers and removes the temp files of dead writers; returns
        (requeued, failed)."""
        with self.db.session() as session:
            requeued, failed = leases.recover(session, max_attempts=self.config.batch.max_attempts)
        temps = self.phases.sweep()
        restore_held_files(self.config.paths.inbox)  # a disposal cut short by a crash
        if requeued or failed or temps.removed or temps.kept_live or temps.kept_unknown:
            log.info(
                "recovered",
                requeued=requeued,
                failed=failed,
                temp_files=temps.removed,
                temp_files_in_flight=temps.kept_live,  # a live worker's: left alone
                temp_files_not_ours=temps.kept_unknown,  # another host's: its own restart
            )
        return requeued, failed

    def forward_pending(self) -> int:
        """Queues the forwarding of results a stop left "pending"; returns how many."""
        return self._forwarder.submit_pending() if self._forwarder is not None else 0

    # -- processing ----------------------------------------------------------------------

    @property
    def paused(self) -> str | None:
        """Why no new inputs are taken right now (a disk problem), or None."""
        return self.phases.paused

    def claim_work(self, clock: float) -> list[WorkItem]:
        """Claims up to ``batch.size`` queued inputs (:meth:`BatchPhases.claim`)."""
        return self.phases.claim(clock)

    def process_batch(self) -> BatchOutcome | None:
        """Claims up to ``batch.size`` inputs and takes them to a terminal state (or back to
        the queue for a retry). None when nothing was queued or work is paused.

        Pipelined, it claims until several batches are in flight and returns the outcome
        of the oldest once it has committed; None when nothing is in flight."""
        if self._overlap is not None:
            return self._overlap.process_batch()
        phases = self.phases
        if phases.paused is not None:
            return None
        clock = time.perf_counter()
        work = phases.claim(clock)
        if not work:
            return None
        outcome = BatchOutcome(inputs=len(work))
        ids = [item.claimed.id for item in work]
        self.leases.hold(ids)  # renewed through read, segmentation and write alike
        try:
            t0 = time.perf_counter()
            for _ in phases.pools.readers.map(phases.read, work):
                self.leases.progress()  # one more input read
            t1 = time.perf_counter()
            self._segment(work)
            t2 = time.perf_counter()
            phases.write_results(work)
            t3 = time.perf_counter()
        finally:
            # Before the commit: a renewal racing it would take its end for a lost lease.
            self.leases.release(ids)
        phase_ms: dict[str, float] = {
            Phase.CLAIM: (t0 - clock) * 1000,
            Phase.READ: (t1 - t0) * 1000,
            Phase.SEGMENT: (t2 - t1) * 1000,
            Phase.WRITE: (t3 - t2) * 1000,
        }
        phases.commit(work, outcome, phase_ms)
        phases.after_commit(work, outcome, phase_ms)
        return outcome

    def process_until_empty(
        self, on_batch: Callable[[BatchOutcome], None] | None = None
    ) -> BatchOutcome:
        """Processes batches until the queue is empty (or work is paused); returns the
        totals."""
        total = BatchOutcome()
        while (outcome := self.process_batch()) is not None:
            total.add(outcome)
            if on_batch is not None:
                on_batch(outcome)
        return total

    def _segment(self, work: Sequence[WorkItem]) -> None:
        jobs = [(item, frame) for item in work if item.decoded for frame in item.decoded.frames]
        size = self.config.batch.size
        for start in range(0, len(jobs), size):
            self.leases.progress()  # a 1000-frame DICOM is long work, not a hung worker
            self.phases.segment(jobs[start : start + size])

    def _keep_alive_in_outage(self) -> None:
        """Between two looks at a database that is down: the watchdog is told the worker
        lives; a stop asked for meanwhile ends the wait (recovery takes the claims)."""
        self.keepalive()
        if self.stopping.is_set():
            raise DatabaseOutage("stopping while the database is out of reach")
