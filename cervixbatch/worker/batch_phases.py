"""The phases every schedule runs a batch through, as one public object.

The sequential schedule (:class:`~cervixbatch.worker.runner.Runner`), the overlapped one
(:class:`~cervixbatch.worker.overlapped.Overlap`) and the Ray backfill's driver differ only
in how they order these calls; none reaches into another's state:

    claim → read (the readers pool) → segment a chunk → write one frame (the writers pool)
      → commit (waiting out a database outage) → after_commit (publish, dispose, forward,
      the batch's one summary event)

The Runner builds it (and its pools); ``paused`` is where a disk problem stops claiming.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING

import structlog

from cervixbatch.errors import FailReason, OutputError
from cervixbatch.imaging.frames import ReadLimits
from cervixbatch.imaging.sop import SopClassFilter
from cervixbatch.outputs.diskspace import DiskWatermark
from cervixbatch.outputs.frame_writer import FrameWriter
from cervixbatch.outputs.staging import stage_for, sweep_stages
from cervixbatch.store import leases
from cervixbatch.store.outage import is_unavailable
from cervixbatch.store.runs import next_runs
from cervixbatch.testhooks import crash_if_poison
from cervixbatch.worker.batch_state import BatchOutcome, Phase, WorkItem, add_ms
from cervixbatch.worker.commit import DISK_RETRY_SECONDS, commit_batch
from cervixbatch.worker.phases import finish_and_write, read_item, take_frame, working_side

if TYPE_CHECKING:
    from cervixbatch.config import Config
    from cervixbatch.imaging.frames import Frame
    from cervixbatch.model.loaded import Stages
    from cervixbatch.outputs.atomic import TempSweep
    from cervixbatch.outputs.outbox import FrameOutputs, Outbox
    from cervixbatch.segmentation.two_stage import FrameResult, Pipeline
    from cervixbatch.store.db import Database
    from cervixbatch.store.outage import OutageWaiter
    from cervixbatch.worker.commit import AfterCommit
    from cervixbatch.worker.lease_keeper import LeaseKeeper
    from cervixbatch.worker.overlapped_jobs import FrameJob

__all__ = ["BatchPhases", "PhasePools"]

log = structlog.get_logger(__name__)

_DETAIL_CHARS = 2000  # an error's text kept in a row's detail (TensorFlow's can run long)


class PhasePools:
    """The thread pools the phases run in: decoders (``readers``), encoders (``writers``)."""

    def __init__(self, read_workers: int, write_workers: int) -> None:
        self.read_workers = read_workers
        self.readers = ThreadPoolExecutor(read_workers, thread_name_prefix="cervixbatch-read")
        self.writers = ThreadPoolExecutor(write_workers, thread_name_prefix="cervixbatch-write")

    def shutdown(self) -> None:
        """Lets the work in hand finish, then stops both pools."""
        self.readers.shutdown(wait=True)
        self.writers.shutdown(wait=True)


class BatchPhases:
    """One worker's phases, for whichever schedule runs them.

    ``config`` is read afresh for every batch (a reload takes effect at the next claim);
    ``pipeline`` may be replaced (the bench wraps it to time its steps).
    """

    def __init__(
        self,
        config: Config,
        db: Database,
        stages: Stages,
        pipeline: Pipeline,
        *,
        owner: str,
        outbox: Outbox,
        leases: LeaseKeeper,
        pools: PhasePools,
        after: AfterCommit,
        outage: OutageWaiter,
        on_outage_wait: Callable[[], None],
    ) -> None:
        self.config = config
        self.db = db
        self.owner = owner
        self.outbox = outbox
        self.writer = FrameWriter(config, outbox, stages)
        self.pipeline = pipeline
        self.leases = leases
        self.pools = pools
        self.after = after
        self.limits = ReadLimits.from_config(config.limits)
        self.sop_filter = SopClassFilter(frozenset(config.dicom.accept_classes))
        self.min_working_side = working_side(config, stages.lesion.input_size)
        self.watermark = DiskWatermark(config.paths.outbox, config.limits.min_free_mb)
        self._disk_trouble_until = 0.0
        self._outage = outage
        self._on_outage_wait = on_outage_wait  # the watchdog told; a stop ends the wait

    def sweep(self) -> TempSweep:
        """Removes the temp files and staging folders of dead writers (a live worker's
        are left alone); returns what the temp-file sweep found."""
        temps = self.outbox.remove_temp_files()
        sweep_stages(self.outbox)
        return temps

    # -- claim ---------------------------------------------------------------------------

    @property
    def paused(self) -> str | None:
        """Why no new inputs are taken right now (a disk problem), or None."""
        if self.watermark.check():
            return self.watermark.describe()
        left = self._disk_trouble_until - time.monotonic()
        if left > 0:
            return f"outputs failed with a disk error; trying again in {left:.0f} s"
        return None

    def pause_after_disk_error(self) -> None:
        """Claims nothing for a while: the outbox's disk just failed a write."""
        self._disk_trouble_until = time.monotonic() + DISK_RETRY_SECONDS

    def claim(self, clock: float) -> list[WorkItem]:
        """Claims up to ``batch.size`` queued inputs, each with the run its results will
        be (2 and up for a reprocessed input: earlier runs keep their rows and files)."""
        with self.db.session() as session:
            claimed = leases.claim(
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

    # -- read, segment, write ------------------------------------------------------------

    def read(self, item: WorkItem) -> None:
        """The registered bytes, read once, verified and decoded: nothing reads the path
        again. Paths that now hold other bytes are kept for registration after commit."""
        crash_if_poison(item.claimed.sha256)  # tests only: an input that kills its worker
        read_item(
            item, self.limits, min_working_side=self.min_working_side, sop_filter=self.sop_filter
        )

    def segment(self, chunk: Sequence[tuple[WorkItem, Frame]]) -> None:
        """Both model calls for one chunk of frames, in one ``pipeline.run``; a failure
        fails the chunk's inputs (retried as allowed), never the batch."""
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
            return
        for (item, _), result in zip(chunk, results, strict=True):
            item.results.append(result)

    def write_result(self, item: WorkItem, index: int) -> FrameOutputs | OutputError:
        """The files of frame ``index``, whose result ``segment`` made (atomically, into
        the attempt's staging folder); the error instead when the outbox refuses them."""
        assert item.decoded is not None
        try:
            return self.writer.write(item.decoded, index, item.results[index], stage=item.stage)
        except OutputError as exc:
            return exc
        finally:
            self.leases.progress()

    def write_results(self, work: Sequence[WorkItem]) -> None:
        """Writes every segmented frame of ``work`` in the writers pool and puts the
        outputs on their inputs (or records why they failed)."""
        jobs = [
            (item, index)
            for item in work
            if item.decoded and item.failure is None
            for index in range(len(item.results))
        ]
        written = list(self.pools.writers.map(lambda job: self.write_result(*job), jobs))
        for (item, _), outputs in zip(jobs, written, strict=True):
            take_frame(item, None, outputs)

    def finish_and_write(
        self, job: FrameJob
    ) -> tuple[FrameResult | None, FrameOutputs | Exception]:
        """Full-size masks and measures of one frame segmented in steps, then its files."""
        try:
            return finish_and_write(job, self.pipeline, self.writer)
        finally:
            self.leases.progress()

    # -- commit --------------------------------------------------------------------------

    def record(
        self, work: Sequence[WorkItem], outcome: BatchOutcome, *, shared_time: bool = True
    ) -> None:
        """The batch's transaction (:func:`~cervixbatch.worker.commit.commit_batch`), once:
        a database that does not answer raises."""
        commit_batch(
            self.db,
            work,
            outcome,
            owner=self.owner,
            max_attempts=self.config.batch.max_attempts,
            writer=self.writer,
            on_disk_error=self.pause_after_disk_error,
            shared_time=shared_time,
        )

    def commit(
        self, work: Sequence[WorkItem], outcome: BatchOutcome, phase_ms: dict[str, float]
    ) -> None:
        """One transaction for the whole batch (input by input if the database refuses a
        row): outputs are on disk before rows say done. A database that went away is
        waited for (``database.outage_seconds``) and the commit tried again: the fence
        keeps a claim taken over meanwhile from being recorded twice. Its time is added
        to ``phase_ms``; the caller has released the batch's leases."""
        clock = time.perf_counter()
        first_failure: float | None = None
        while True:
            try:
                self.record(work, outcome)
            except Exception as exc:
                now = time.monotonic()
                first_failure = now if first_failure is None else first_failure
                # A database that answers pings yet refuses this commit (a lock held for
                # ever) is given up on like an outage: after ``outage_seconds``.
                if not is_unavailable(exc) or now - first_failure >= self._outage.limit:
                    raise
                self._outage.wait(exc, on_wait=self._on_outage_wait)
            else:
                add_ms(phase_ms, Phase.COMMIT, clock)
                return

    def after_commit(
        self, work: Sequence[WorkItem], outcome: BatchOutcome, phase_ms: dict[str, float]
    ) -> None:
        """What follows a commit (:class:`~cervixbatch.worker.commit.AfterCommit`), then
        the outcome's frames and timings, and the batch's one summary event."""
        self.after.run(work)
        outcome.frames = sum(len(item.results) for item in work)
        outcome.timings_ms = {str(phase): ms for phase, ms in phase_ms.items()}
        outcome.log_done(log)
