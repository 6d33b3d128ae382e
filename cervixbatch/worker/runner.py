"""Claim → read → pipeline → write → commit: one batch at a time. Used by ``process`` and
by the daemon alike; the daemon only adds discovery, its loop and its lifecycle.

The commit itself, one method per outcome, is :mod:`cervixbatch.worker.commit`;
registration is :mod:`cervixbatch.intake.registration`; the pipelined schedule is
:mod:`cervixbatch.worker.overlapped`.
"""

from __future__ import annotations

import dataclasses
import os
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Self

import structlog

from cervixbatch.config import Config
from cervixbatch.delivery.disposal import restore_held_files
from cervixbatch.delivery.forwarder import Forwarder
from cervixbatch.errors import FailReason, OutputError
from cervixbatch.imaging.frames import ReadLimits
from cervixbatch.imaging.sop import SopClassFilter
from cervixbatch.intake.registration import Registrar
from cervixbatch.model.pair import Stages, load_stages, pipeline_for
from cervixbatch.outputs.diskspace import DiskWatermark
from cervixbatch.outputs.frame_writer import FrameWriter
from cervixbatch.outputs.outbox import DIR_MODE, FrameOutputs, Outbox
from cervixbatch.outputs.staging import stage_for, sweep_stages
from cervixbatch.store import queue
from cervixbatch.store.db import Database
from cervixbatch.store.outage import DatabaseOutage, OutageWaiter, is_unavailable
from cervixbatch.store.runs import next_runs
from cervixbatch.store.schema import Status
from cervixbatch.testhooks import crash_if_poison
from cervixbatch.worker.batch_state import BatchOutcome, WorkItem
from cervixbatch.worker.commit import DISK_RETRY_SECONDS, AfterCommit, commit_batch
from cervixbatch.worker.lease_keeper import LeaseKeeper
from cervixbatch.worker.phases import read_item, working_side

if TYPE_CHECKING:
    from cervixbatch.worker.overlapped import Overlap

__all__ = [
    "BatchOutcome",
    "DiskState",
    "QueueCounts",
    "Runner",
    "Stages",
    "load_stages",
    "pipeline_for",
]

log = structlog.get_logger(__name__)

_DETAIL_CHARS = 2000  # an error's text kept in a row's detail (TensorFlow's can run long)


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
    """Processes queued inputs in batches; its :attr:`registrar` registers files."""

    def __init__(
        self, config: Config, db: Database, stages: Stages, *, owner: str | None = None
    ) -> None:
        self.config = config
        self.db = db
        self.stages = stages
        self.owner = owner or queue.make_owner()
        # Files over max_file_mb are refused before a byte of them is hashed.
        limits = ReadLimits.from_config(config.limits)
        self.registrar = Registrar(db, max_file_bytes=limits.max_file_bytes)
        config.paths.outbox.mkdir(parents=True, exist_ok=True, mode=DIR_MODE)
        self.outbox = Outbox(config.paths.outbox)
        self.pipeline = pipeline_for(config, stages)
        self.limits = ReadLimits.from_config(config.limits)
        self._min_working_side = working_side(config, stages.lesion.input_size)
        self.sop_filter = SopClassFilter(frozenset(config.dicom.accept_classes))
        # Renews the leases of the batch in hand (and pings systemd's watchdog) throughout.
        self.leases = LeaseKeeper(
            db,
            self.owner,
            lease_seconds=config.batch.lease_seconds,
            stall_seconds=config.batch.stall_seconds,
        )
        self._watermark = DiskWatermark(config.paths.outbox, config.limits.min_free_mb)
        self._disk_trouble_until = 0.0
        self._readers = ThreadPoolExecutor(
            _worker_count(config.batch.read_workers), thread_name_prefix="cervixbatch-read"
        )
        self._writers = ThreadPoolExecutor(
            _worker_count(config.batch.write_workers), thread_name_prefix="cervixbatch-write"
        )
        self._writer = FrameWriter(config, self.outbox, stages)
        sends = config.dicom.forward or config.dicomweb.stow_url or config.webhook.url
        self._forwarder = Forwarder(config, db) if sends else None
        self._after_commit = AfterCommit(config, db, self.outbox, self.registrar, self._forwarder)
        # A database outage is waited out (store/outage.py); the service sets the
        # keepalive (the watchdog ping) and ``stopping`` (a stop ends the wait).
        self.outage = OutageWaiter(db, outage_seconds=config.database.outage_seconds)
        self.keepalive: Callable[[], object] = lambda: None
        self.stopping = threading.Event()
        self._overlap: Overlap | None = None
        if config.batch.pipeline:  # batches overlap (cervixbatch/worker/overlapped.py)
            from cervixbatch.worker.overlapped import Overlap

            self._overlap = Overlap(self, _worker_count(config.batch.read_workers))

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
        self._readers.shutdown(wait=True)
        self._writers.shutdown(wait=True)
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
        self.config = config

    def queue_counts(self) -> QueueCounts:
        """Inputs per status, and the expired claims of dead workers."""
        with self.db.read_session() as session:
            return QueueCounts(queue.status_counts(session), queue.expired_leases(session))

    def disk_state(self) -> DiskState:
        """Measures the outbox's disk now: whether work is paused, and the free space."""
        paused = self.paused
        return DiskState(paused, low=self._watermark.low, free_mb=self._watermark.free)

    def recover(self) -> tuple[int, int]:
        """Frees inputs of dead workers and removes the temp files of dead writers; returns
        (requeued, failed)."""
        with self.db.session() as session:
            requeued, failed = queue.recover(session, max_attempts=self.config.batch.max_attempts)
        temps = self.outbox.remove_temp_files()
        sweep_stages(self.outbox)  # the staging folders of dead writers
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
        if self._watermark.check():
            return self._watermark.describe()
        left = self._disk_trouble_until - time.monotonic()
        if left > 0:
            return f"outputs failed with a disk error; trying again in {left:.0f} s"
        return None

    def claim_work(self, clock: float) -> list[WorkItem]:
        """Claims up to ``batch.size`` queued inputs, each with the run its results will
        be (2 and up for a reprocessed input: earlier runs keep their rows and files)."""
        with self.db.session() as session:
            claimed = queue.claim(
                session,
                owner=self.owner,
                limit=self.config.batch.size,
                lease_seconds=self.config.batch.lease_seconds,
                max_attempts=self.config.batch.max_attempts,
            )
            runs = next_runs(session, [c.id for c in claimed])
        return [
            WorkItem(
                claimed=c,
                run=runs[c.id],
                started=clock,
                stage=stage_for(self.outbox, c.id, runs[c.id], c.attempts),
            )
            for c in claimed
        ]

    def process_batch(self) -> BatchOutcome | None:
        """Claims up to ``batch.size`` inputs and takes them to a terminal state (or back to
        the queue for a retry). None when nothing was queued or work is paused.

        Pipelined, it claims until several batches are in flight and returns the outcome
        of the oldest once it has committed; None when nothing is in flight."""
        if self._overlap is not None:
            return self._overlap.process_batch()
        if self.paused is not None:
            return None
        clock = time.perf_counter()
        work = self.claim_work(clock)
        if not work:
            return None
        outcome = BatchOutcome(inputs=len(work))
        ids = [item.claimed.id for item in work]
        self.leases.hold(ids)  # renewed through read, segmentation and write alike
        try:
            t0 = time.perf_counter()
            for _ in self._readers.map(self._read, work):
                self.leases.progress()  # one more input read
            t1 = time.perf_counter()
            self._segment(work)
            t2 = time.perf_counter()
            self._write_outputs(work)
            t3 = time.perf_counter()
        finally:
            # Before the commit: a renewal racing it would take its end for a lost lease.
            self.leases.release(ids)
        self._commit(work, outcome)
        t4 = time.perf_counter()
        self._after_commit.run(work)
        outcome.frames = sum(len(w.results) for w in work)
        outcome.timings_ms = {
            "claim": (t0 - clock) * 1000,
            "read": (t1 - t0) * 1000,
            "segment": (t2 - t1) * 1000,
            "write": (t3 - t2) * 1000,
            "commit": (t4 - t3) * 1000,
        }
        outcome.log_done(log)
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

    def _read(self, item: WorkItem) -> None:
        """The registered bytes, read once, verified and decoded: nothing reads the path
        again. Paths that now hold other bytes are kept for registration after commit."""
        crash_if_poison(item.claimed.sha256)  # tests only: an input that kills its worker
        read_item(
            item, self.limits, min_working_side=self._min_working_side, sop_filter=self.sop_filter
        )

    def _segment(self, work: Sequence[WorkItem]) -> None:
        jobs = [(item, frame) for item in work if item.decoded for frame in item.decoded.frames]
        size = self.config.batch.size
        for start in range(0, len(jobs), size):
            self.leases.progress()  # a 1000-frame DICOM is long work, not a hung worker
            chunk = jobs[start : start + size]
            try:
                results = self.pipeline.run([frame for _, frame in chunk])
            except Exception as exc:  # noqa: BLE001 - recorded per input, retried
                # The log has ids and the error's type; its text goes to the rows' detail.
                log.error(  # noqa: TRY400 - a traceback's text is not for the journal
                    "segmentation_failed",
                    inputs=[i.claimed.id for i, _ in chunk],
                    error=type(exc).__name__,
                )
                detail = f"segmentation failed: {type(exc).__name__}: {exc}"[:_DETAIL_CHARS]
                for item, _ in chunk:
                    item.fail(FailReason.INTERNAL_ERROR, detail)
                continue
            for (item, _), result in zip(chunk, results, strict=True):
                item.results.append(result)

    def _write_outputs(self, work: Sequence[WorkItem]) -> None:
        jobs = [
            (item, index)
            for item in work
            if item.decoded and item.failure is None
            for index in range(len(item.results))
        ]
        written = list(self._writers.map(lambda job: self._write_frame(*job), jobs))
        for (item, _), outputs in zip(jobs, written, strict=True):
            if isinstance(outputs, OutputError):
                item.fail(FailReason.OUTPUT_ERROR, str(outputs))
                item.transient = outputs.transient
            else:
                item.outputs.append(outputs)

    def _write_frame(self, item: WorkItem, index: int) -> FrameOutputs | OutputError:
        assert item.decoded is not None
        try:
            return self._writer.write(item.decoded, index, item.results[index], stage=item.stage)
        except OutputError as exc:
            return exc
        finally:
            self.leases.progress()

    def _commit(self, work: Sequence[WorkItem], outcome: BatchOutcome) -> None:
        """One transaction for the whole batch (input by input if the database refuses a
        row): outputs are on disk before rows say done. A database that went away is
        waited for (``database.outage_seconds``) and the commit tried again: the fence
        keeps a claim taken over meanwhile from being recorded twice."""
        first_failure: float | None = None
        while True:
            try:
                commit_batch(
                    self.db,
                    work,
                    outcome,
                    owner=self.owner,
                    max_attempts=self.config.batch.max_attempts,
                    writer=self._writer,
                    on_disk_error=self._pause_after_disk_error,
                )
            except Exception as exc:
                now = time.monotonic()
                first_failure = now if first_failure is None else first_failure
                # A database that answers pings yet refuses this commit (a lock held for
                # ever) is given up on like an outage: after ``outage_seconds``.
                if not is_unavailable(exc) or now - first_failure >= self.outage.limit:
                    raise
                self.outage.wait(exc, on_wait=self._keep_alive_in_outage)
            else:
                return

    def _keep_alive_in_outage(self) -> None:
        """Between two looks at a database that is down: the watchdog is told the worker
        lives; a stop asked for meanwhile ends the wait (recovery takes the claims)."""
        self.keepalive()
        if self.stopping.is_set():
            raise DatabaseOutage("stopping while the database is out of reach")

    def _pause_after_disk_error(self) -> None:
        self._disk_trouble_until = time.monotonic() + DISK_RETRY_SECONDS
