"""The Runner's pipelined schedule (the default, ``batch.pipeline = true``): reading,
segmenting and writing overlap across consecutive batches, so the accelerator is fed while
the CPU decodes the batches after its own and encodes the ones before.

    claim (the caller's thread) → read (pool: decode, stage-1 input)
      → segment (one thread owns both model calls; ROI and crops in a pool meanwhile)
      → write (pool: full-size masks, overlay, files) → commit (one thread)

At most :data:`DEPTH` batches are in flight (claimed and not yet handed back), so memory
is bounded whatever the queue holds and claiming waits for room; and a batch is claimed
only when the read stage is about to need it (:data:`READ_AHEAD`), so a worker never sits
on photos another worker could be reading. Each stage takes batches in claim order, so
batches commit in claim order. The sequential schedule's guarantees hold: a batch's
outputs are on disk before its transaction says done (write precedes commit, both through
the worker's :class:`~cervixbatch.worker.batch_phases.BatchPhases`); the leases of
everything in flight are renewed while it is in flight; a crash leaves claims
``processing`` for recovery; :meth:`Overlap.finish_in_flight` (SIGTERM, close) lets what is
in flight finish. A failed commit (the database's trouble) stops the pipeline: the error
reaches the caller, later batches stay claimed for recovery, as before.
"""

from __future__ import annotations

import collections
import contextlib
import math
import queue as queues
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import numpy.typing as npt
import structlog

from cervixbatch.errors import FailReason
from cervixbatch.segmentation.steps import Step
from cervixbatch.segmentation.two_stage import Located
from cervixbatch.worker.batch_phases import BatchPhases
from cervixbatch.worker.batch_state import BatchOutcome, Phase, WorkItem, add_ms
from cervixbatch.worker.overlapped_jobs import FrameJob, InFlightBatch, StartedChunk
from cervixbatch.worker.phases import frame_jobs, take_written

__all__ = ["DEPTH", "Overlap"]

log = structlog.get_logger(__name__)

# Batches in flight: one reading, one in the model calls and one whose crops are being
# cut beside them, one writing; the fifth is being committed or waits for the caller.
DEPTH = 5
READ_AHEAD = 1  # claimed batches waiting for the read stage; more would only hoard
_POLL_S = 0.05  # how often a waiting caller looks for a failure, and for room to claim
_RECLAIM_S = 0.5  # after finding the queue empty, when to look again
_STOP = object()  # sent down the stages by close()

Floats = npt.NDArray[np.float32]


class Overlap:
    """Runs a worker's :class:`~cervixbatch.worker.batch_phases.BatchPhases` as
    concurrent stages."""

    def __init__(self, phases: BatchPhases) -> None:
        self.phases = phases
        self._in_flight: collections.deque[InFlightBatch] = collections.deque()
        self._failure: BaseException | None = None
        self._closed = False
        self._empty_at = -math.inf  # when a claim last found nothing queued
        self._wake = threading.Event()
        self._reading: queues.SimpleQueue[object] = queues.SimpleQueue()
        self._segmenting: queues.SimpleQueue[object] = queues.SimpleQueue()
        self._writing: queues.SimpleQueue[object] = queues.SimpleQueue()
        self._committing: queues.SimpleQueue[object] = queues.SimpleQueue()
        self._locators = ThreadPoolExecutor(
            phases.pools.read_workers, thread_name_prefix="cervixbatch-locate"
        )
        stages = (
            (Phase.READ, self._stage_loop, (self._reading, self._read, self._segmenting)),
            (Phase.SEGMENT, self._segment_loop, ()),
            (Phase.WRITE, self._stage_loop, (self._writing, self._write, self._committing)),
            (Phase.COMMIT, self._stage_loop, (self._committing, self._commit, None)),
        )
        self._threads = [
            threading.Thread(target=run, args=args, name=f"cervixbatch-{name}", daemon=True)
            for name, run, args in stages
        ]
        for thread in self._threads:
            thread.start()
        # The worker's heartbeat: renews every held lease, pings the watchdog, and stops
        # both when no stage makes progress for batch.stall_seconds.
        self._leases = phases.leases

    @property
    def in_flight(self) -> int:
        """Batches claimed and not yet handed back by :meth:`process_batch`."""
        return len(self._in_flight)

    # -- the caller's side ---------------------------------------------------------------

    def process_batch(self) -> BatchOutcome | None:
        """Claims batches until ``DEPTH`` are in flight (unless paused or nothing is
        queued), then waits for the oldest and returns its outcome; None when nothing is
        in flight. Raises what made a commit fail."""
        self._raise_failure()
        self._empty_at = -math.inf  # the caller asks: look at the queue now
        self._top_up()
        if not self._in_flight:
            return None
        return self._next(claim=True)

    def finish_in_flight(self) -> list[BatchOutcome]:
        """Waits for every batch in flight; returns their outcomes (empty after a failure:
        what was in flight stays claimed for recovery)."""
        outcomes = []
        while self._in_flight and self._failure is None:
            outcomes.append(self._next(claim=False))
        return outcomes

    def close(self) -> None:
        """Finishes what is in flight, then stops the stages and joins their threads."""
        if self._closed:
            return
        self._closed = True
        with contextlib.suppress(BaseException):  # a failure: the caller has been told
            self.finish_in_flight()
        # Every batch has finished (or a failure abandoned them): each stage may stop.
        for inbox in (self._reading, self._segmenting, self._writing, self._committing):
            inbox.put(_STOP)
        for thread in self._threads:
            thread.join()
        self._locators.shutdown(wait=True)

    def _top_up(self) -> None:
        phases = self.phases
        while (
            len(self._in_flight) < DEPTH
            and sum(not b.read_started for b in self._in_flight) < READ_AHEAD
            and phases.paused is None
            and time.monotonic() - self._empty_at >= _RECLAIM_S
        ):
            clock = time.perf_counter()
            work = phases.claim(clock)
            if not work:
                self._empty_at = time.monotonic()
                return
            batch = InFlightBatch(work=work, outcome=BatchOutcome(inputs=len(work)))
            batch.timed(Phase.CLAIM, clock)
            self._leases.hold(item.claimed.id for item in work)
            self._in_flight.append(batch)
            self._reading.put(batch)

    def _next(self, *, claim: bool) -> BatchOutcome:
        batch = self._in_flight[0]
        while not batch.finished.is_set():
            self._wake.wait(_POLL_S)  # a batch finished, or the read stage took one
            self._wake.clear()
            self._raise_failure()
            if claim:
                self._top_up()
        if not batch.committed:
            self._raise_failure()
        self._in_flight.popleft()
        return batch.outcome

    def _raise_failure(self) -> None:
        if self._failure is not None:
            raise self._failure

    def _fail(self, exc: BaseException) -> None:
        """Stops the pipeline: nothing more is committed, the caller hears of ``exc``, and
        the leases of what is in flight are left to run out, for recovery."""
        log.error("pipeline_failed", error=type(exc).__name__, exc_info=exc)
        if self._failure is None:
            self._failure = exc
        self._leases.release(self._leases.held)

    # -- the stages ----------------------------------------------------------------------

    def _stage_loop(
        self,
        inbox: queues.SimpleQueue[object],
        step: Callable[[InFlightBatch], None],
        outbox: queues.SimpleQueue[object] | None,
    ) -> None:
        while (batch := inbox.get()) is not _STOP:
            assert isinstance(batch, InFlightBatch)
            if self._failure is None:
                try:
                    step(batch)
                except BaseException as exc:  # noqa: BLE001 - as the sequential runner: fatal
                    self._fail(exc)
            if outbox is not None:
                outbox.put(batch)
            else:
                batch.finished.set()
                self._wake.set()
        if outbox is not None:
            outbox.put(_STOP)

    def _read(self, batch: InFlightBatch) -> None:
        batch.read_started = True
        self._wake.set()  # room for the next claim
        clock = time.perf_counter()
        per_item = list(self.phases.pools.readers.map(self._read_one, batch.work))
        batch.frames = [job for jobs in per_item for job in jobs]
        batch.timed(Phase.READ, clock)

    def _read_one(self, item: WorkItem) -> list[FrameJob]:
        self.phases.read(item)
        self._leases.progress()
        return frame_jobs(item, self.phases.pipeline)

    def _segment_loop(self) -> None:
        try:
            self._segment_batches()
        except BaseException as exc:  # noqa: BLE001 - as the sequential runner: fatal
            self._fail(exc)
            while (batch := self._segmenting.get()) is not _STOP:  # let later stages stop
                self._writing.put(batch)
            self._writing.put(_STOP)

    def _segment_batches(self) -> None:
        """Stage 1 of the next chunk runs while the crops of the last one are cut."""
        waiting: collections.deque[InFlightBatch] = collections.deque()  # not yet passed on
        chunks: collections.deque[tuple[InFlightBatch, list[FrameJob]]] = collections.deque()
        held: StartedChunk | None = None
        stopping = False
        while not (stopping and held is None and not chunks):
            if self._failure is not None:  # abandoned: passed on without model calls
                chunks.clear()
                held = None
                for abandoned in waiting:
                    abandoned.chunks_left = 0
            if not chunks and not stopping:
                taken: object = None
                with contextlib.suppress(queues.Empty):  # none now: finish the held chunk
                    taken = self._segmenting.get(block=held is None)
                if taken is _STOP:
                    stopping = True
                elif isinstance(taken, InFlightBatch):
                    waiting.append(taken)
                    chunks.extend(self._chunks(taken))
            started = self._start(*chunks.popleft()) if chunks else None
            if held is not None:
                self._complete(held)
            held = started
            while waiting and waiting[0].chunks_left == 0:
                self._writing.put(waiting.popleft())
        self._writing.put(_STOP)

    def _chunks(self, batch: InFlightBatch) -> list[tuple[InFlightBatch, list[FrameJob]]]:
        if self._failure is not None:
            return []
        size = self.phases.config.batch.size
        chunks = [(batch, batch.frames[i : i + size]) for i in range(0, len(batch.frames), size)]
        batch.chunks_left = len(chunks)
        return chunks

    def _start(self, batch: InFlightBatch, jobs: list[FrameJob]) -> StartedChunk | None:
        clock = time.perf_counter()
        self._leases.progress()  # a 1000-frame DICOM is long work, not a hung worker
        pipeline = self.phases.pipeline
        try:
            probs = pipeline.cervix.predict_batch(np.stack([job.stage1_input for job in jobs]))  # type: ignore[misc]
        except Exception as exc:  # noqa: BLE001 - the chunk fails, the service goes on
            self._chunk_failed(batch, jobs, exc)
            return None
        per_frame = (time.perf_counter() - clock) * 1000 / len(jobs)
        for job in jobs:
            job.stage1_input = None
            job.timings_ms[Step.STAGE1] = per_frame
        located = [
            self._locators.submit(self._locate, job, prob)
            for job, prob in zip(jobs, probs, strict=True)
        ]
        batch.timed(Phase.SEGMENT, clock)
        return StartedChunk(batch, jobs, located)

    def _locate(self, job: FrameJob, prob: Floats) -> Located:
        clock = time.perf_counter()
        located = self.phases.pipeline.locate(job.frame, prob)
        add_ms(job.timings_ms, Step.LOCATE, clock)
        return located

    def _complete(self, started: StartedChunk) -> None:
        batch, jobs = started.batch, started.jobs
        try:
            located = [future.result() for future in started.located]
            clock = time.perf_counter()
            probs = self.phases.pipeline.stage2(located)
        except Exception as exc:  # noqa: BLE001 - the chunk fails, the service goes on
            self._chunk_failed(batch, jobs, exc)
            return
        per_frame = (time.perf_counter() - clock) * 1000 / len(jobs)
        for job, where, prob in zip(jobs, located, probs, strict=True):
            job.located, job.lesion_prob = where, prob
            job.timings_ms[Step.STAGE2] = per_frame
        batch.timed(Phase.SEGMENT, clock)
        batch.chunks_left -= 1

    def _chunk_failed(self, batch: InFlightBatch, jobs: Sequence[FrameJob], exc: Exception) -> None:
        log.error(
            "segmentation_failed",
            inputs=sorted({job.item.claimed.id for job in jobs}),
            error=type(exc).__name__,  # its text may quote a path or a value: not logged
        )
        for job in jobs:
            job.item.fail(FailReason.INTERNAL_ERROR, f"segmentation failed: {type(exc).__name__}")
        batch.chunks_left -= 1

    def _write(self, batch: InFlightBatch) -> None:
        clock = time.perf_counter()
        jobs = [job for job in batch.frames if job.item.decoded and job.item.failure is None]
        written = list(self.phases.pools.writers.map(self.phases.finish_and_write, jobs))
        take_written(jobs, written, batch.phase_ms)
        batch.frames = []  # decoded frames and inputs are no longer needed here
        batch.timed(Phase.WRITE, clock)

    def _commit(self, batch: InFlightBatch) -> None:
        # Released before the commit: a renewal racing it would take its end for a lost lease.
        self._leases.release(item.claimed.id for item in batch.work)
        self.phases.commit(batch.work, batch.outcome, batch.phase_ms)
        batch.committed = True
        self.phases.after_commit(batch.work, batch.outcome, batch.phase_ms)
