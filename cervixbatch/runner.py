"""Claim → read → pipeline → write → commit: one batch at a time. Used by ``process`` and
by the daemon alike; the daemon only adds discovery, its loop and its lifecycle."""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any, Self

import structlog

from cervixbatch.config import Config
from cervixbatch.delivery.disposal import dispose_of, restore_held_files
from cervixbatch.delivery.forwarder import Forwarder
from cervixbatch.errors import InputRejected, OutputError, RejectReason
from cervixbatch.heartbeat import LeaseKeeper
from cervixbatch.imaging.frames import DecodedInput, ReadLimits
from cervixbatch.imaging.sop import SopClassFilter
from cervixbatch.imaging.verified import ChangedFile, read_registered
from cervixbatch.intake.discovery import FileIdentity, hash_file, identify, unreadable_digest
from cervixbatch.model.pair import Stages, load_stages, pipeline_for
from cervixbatch.outputs.diskspace import DiskWatermark
from cervixbatch.outputs.frame_writer import FrameWriter
from cervixbatch.outputs.outbox import DIR_MODE, FrameOutputs, Outbox
from cervixbatch.outputs.stale import remove_outputs, remove_stale_outputs
from cervixbatch.pipeline import FrameResult
from cervixbatch.store import queue
from cervixbatch.store.db import Database
from cervixbatch.store.runs import next_runs
from cervixbatch.store.schema import Status, utcnow

if TYPE_CHECKING:
    from cervixbatch.pipelined import Overlap

__all__ = ["BatchOutcome", "Runner", "Stages", "load_stages", "pipeline_for"]

log = structlog.get_logger(__name__)

DISK_RETRY_SECONDS = 30.0  # after ENOSPC/EIO on the outbox, wait this long before claiming
_DETAIL_CHARS = 2000  # an error's text kept in a row's detail (TensorFlow's can run long)


@dataclasses.dataclass(slots=True)
class BatchOutcome:
    """What one batch did."""

    inputs: int = 0
    frames: int = 0
    done: int = 0
    rejected: int = 0
    failed: int = 0
    retried: int = 0
    timings_ms: dict[str, float] = dataclasses.field(default_factory=dict)
    latencies_s: list[float] = dataclasses.field(default_factory=list)  # found → done


@dataclasses.dataclass(slots=True)
class _Work:
    """One claimed input on its way through the batch."""

    claimed: queue.ClaimedInput
    run: int = 1  # which run of the input this is (2 and up: reprocessed)
    path: str | None = None
    decoded: DecodedInput | None = None
    rejection: InputRejected | None = None
    failure: tuple[str, str] | None = None  # (reason, detail)
    transient: bool = False  # the failure was the disk's: retry without spending an attempt
    completed: bool = False  # committed as done
    committed: bool = False  # this worker's commit of a terminal done/rejected took
    ended: Status | None = None  # the terminal state this worker's commit recorded
    # Files at the input's paths that now hold other bytes: registered as inputs of
    # their own once the batch has committed.
    changed: list[ChangedFile] = dataclasses.field(default_factory=list)
    results: list[FrameResult] = dataclasses.field(default_factory=list)
    outputs: list[FrameOutputs] = dataclasses.field(default_factory=list)
    started: float = 0.0


class _DeferredLog:
    """Log events held back until a transaction has committed."""

    def __init__(self) -> None:
        self._events: list[tuple[str, str, dict[str, Any]]] = []

    def info(self, event: str, **fields: Any) -> None:
        self._events.append(("info", event, fields))

    def warning(self, event: str, **fields: Any) -> None:
        self._events.append(("warning", event, fields))

    def replay(self, logger: Any) -> None:
        for level, event, fields in self._events:
            getattr(logger, level)(event, **fields)


def _worker_count(configured: int) -> int:
    # The cores this process may run on (taskset, cpusets), not the host's: a container
    # given 4 of 64 cores must not start 64 decoders.
    return configured or max(1, len(os.sched_getaffinity(0)))


class Runner:
    """Processes queued inputs in batches, and registers files into the queue."""

    def __init__(
        self, config: Config, db: Database, stages: Stages, *, owner: str | None = None
    ) -> None:
        self.config = config
        self.db = db
        self.stages = stages
        self.owner = owner or queue.make_owner()
        config.paths.outbox.mkdir(parents=True, exist_ok=True, mode=DIR_MODE)
        self.outbox = Outbox(config.paths.outbox)
        self.pipeline = pipeline_for(config, stages)
        self.limits = ReadLimits(
            max_file_bytes=config.read_limits_bytes,
            max_pixels=config.limits.max_pixels,
            max_frames=config.limits.max_frames,
            max_total_pixels=config.limits.max_total_pixels,
            min_side=config.limits.min_side,
        )
        self._min_working_side = self._working_side()
        self.sop_filter = SopClassFilter(frozenset(config.dicom.accept_classes))
        # Renews the leases of the batch in hand (and pings systemd's watchdog) throughout.
        self.leases = LeaseKeeper(
            db,
            self.owner,
            lease_seconds=config.batch.lease_seconds,
            stall_seconds=config.batch.stall_seconds,
        )
        self.watermark = DiskWatermark(config.paths.outbox, config.limits.min_free_mb)
        self._disk_trouble_until = 0.0
        self._readers = ThreadPoolExecutor(
            _worker_count(config.batch.read_workers), thread_name_prefix="cervixbatch-read"
        )
        self._writers = ThreadPoolExecutor(
            _worker_count(config.batch.write_workers), thread_name_prefix="cervixbatch-write"
        )
        self._writer = FrameWriter(config, self.outbox, stages)
        self._forwarder = Forwarder(config, db) if config.dicom.forward else None
        self._overlap: Overlap | None = None
        if config.batch.pipeline:  # batches overlap (cervixbatch/pipelined.py)
            from cervixbatch.pipelined import Overlap

            self._overlap = Overlap(self, _worker_count(config.batch.read_workers))

    @property
    def in_flight(self) -> int:
        """Batches claimed and not yet handed back by :meth:`process_batch`."""
        return self._overlap.in_flight if self._overlap is not None else 0

    def finish(self) -> list[BatchOutcome]:
        """Lets every batch in flight finish (a drain); returns their outcomes."""
        return self._overlap.finish() if self._overlap is not None else []

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

    def _working_side(self) -> int | None:
        """How far photos may be decoded below full size and still serve every output."""
        max_side = self.config.output.overlay_max_side
        if not max_side:
            return None  # overlays at full size need the full picture
        lesion_h, lesion_w = self.stages.lesion.input_size
        # The cervix fills a third or more of a photo's side; twice the stage-2 size keeps
        # the crop stage 2 sees at or above its input resolution.
        return max(max_side, 2 * max(lesion_h, lesion_w))

    # -- registration ------------------------------------------------------------------

    def recover(self) -> tuple[int, int]:
        """Frees inputs of dead workers and removes the temp files of dead writers; returns
        (requeued, failed)."""
        with self.db.session() as session:
            requeued, failed = queue.recover(session, max_attempts=self.config.batch.max_attempts)
        temps = self.outbox.remove_temp_files()
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

    def register(self, path: Path) -> queue.Registration | None:
        """Records one file (a known (path, size, mtime) is not hashed again); None when it
        is not a regular file or cannot be read."""
        identity = identify(path)
        if identity is None:
            return None
        return self.register_identity(identity)

    def register_identity(
        self, identity: FileIdentity, *, sha256: str | None = None
    ) -> queue.Registration | None:
        """Records a file whose identity (stat) is known; hashes it only when it is new.

        With ``sha256`` (bytes just read and hashed) it is neither looked up by identity
        nor hashed again: a file replaced by one of the same size and mtime is still new.
        """
        path_text = str(identity.path)
        # A name that is not UTF-8 (a byte-for-byte copy from another system) cannot be
        # stored as text: it is kept escaped, and rejected keyed by where it was (so the
        # same bytes under a proper name are processed), instead of failing every rescan.
        storable = os.fsencode(identity.path).decode("utf-8", "backslashreplace")
        bad_name = storable != path_text
        path_text = storable
        if sha256 is None:
            with self.db.read_session() as session:
                known = queue.known_sighting(
                    session, path_text, identity.size, identity.mtime_ns, identity.inode
                )
            if known is not None:
                return known
        rejection: dict[str, object] = {}
        try:
            sha256 = sha256 or hash_file(identity.path)
        except FileNotFoundError:
            return None  # gone before it could be read: nothing to account for
        except OSError as exc:
            # Still accounted for: a rejected input keyed by where and what it was, since
            # its bytes cannot be read to key it by content.
            sha256 = unreadable_digest(identity)
            rejection = {
                "status": Status.REJECTED,
                "reason": RejectReason.UNREADABLE.value,
                "detail": f"the file cannot be read: {exc.strerror or type(exc).__name__}",
            }
        if bad_name:
            sha256 = unreadable_digest(identity)
            rejection = {
                "status": Status.REJECTED,
                "reason": RejectReason.UNREADABLE.value,
                "detail": "the file name is not valid UTF-8 text: rename the file to process it",
            }
        with self.db.session() as session:
            registration = queue.register(
                session,
                sha256=sha256,
                path=path_text,
                size=identity.size,
                mtime_ns=identity.mtime_ns,
                inode=identity.inode,
                **rejection,  # type: ignore[arg-type]
            )
        # File names can carry patient names: logs name inputs by id and digest only.
        log.info(
            "input_registered" if registration.created else "input_seen_again",
            input_id=registration.input_id,
            sha256=sha256[:12],
            status=registration.status.value,
        )
        return registration

    # -- processing ----------------------------------------------------------------------

    @property
    def paused(self) -> str | None:
        """Why no new inputs are taken right now (a disk problem), or None."""
        if self.watermark.check():
            return self.watermark.describe()
        left = self._disk_trouble_until - time.monotonic()
        if left > 0:
            return f"outputs failed with a disk error; trying again in {left:.0f} s"
        return None

    def claim_work(self, clock: float) -> list[_Work]:
        """Claims up to ``batch.size`` queued inputs, each with the run its results will
        be (2 and up for a reprocessed input: earlier runs keep their rows and files)."""
        with self.db.session() as session:
            claimed = queue.claim(
                session,
                owner=self.owner,
                limit=self.config.batch.size,
                lease_seconds=self.config.batch.lease_seconds,
            )
            runs = next_runs(session, [c.id for c in claimed])
        return [_Work(claimed=c, run=runs[c.id], started=clock) for c in claimed]

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
        self._remove_outputs_of_failures(work)
        self._register_changed(work)
        self._dispose(work)
        self._forward(work)
        outcome.frames = sum(len(w.results) for w in work)
        outcome.timings_ms = {
            "claim": (t0 - clock) * 1000,
            "read": (t1 - t0) * 1000,
            "segment": (t2 - t1) * 1000,
            "write": (t3 - t2) * 1000,
            "commit": (t4 - t3) * 1000,
        }
        log.info(
            "batch_done",
            inputs=outcome.inputs,
            frames=outcome.frames,
            done=outcome.done,
            rejected=outcome.rejected,
            failed=outcome.failed,
            retried=outcome.retried,
            ms={k: round(v, 1) for k, v in outcome.timings_ms.items()},
        )
        return outcome

    def drain(self, on_batch: Callable[[BatchOutcome], None] | None = None) -> BatchOutcome:
        """Processes batches until the queue is empty; returns the totals."""
        total = BatchOutcome()
        while (outcome := self.process_batch()) is not None:
            for name in ("inputs", "frames", "done", "rejected", "failed", "retried"):
                setattr(total, name, getattr(total, name) + getattr(outcome, name))
            if on_batch is not None:
                on_batch(outcome)
        return total

    def _read(self, item: _Work) -> None:
        """The registered bytes, read once, verified and decoded: nothing reads the path
        again. Paths that now hold other bytes are kept for registration after commit."""
        read = read_registered(
            item.claimed.paths,
            item.claimed.sha256,
            self.limits,
            min_working_side=self._min_working_side,
            sop_filter=self.sop_filter,
        )
        item.decoded, item.path, item.rejection = read.decoded, read.path, read.rejection
        item.changed = read.changed
        if read.failure is not None:
            item.failure = ("internal_error", read.failure)

    def _segment(self, work: Sequence[_Work]) -> None:
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
                    item.failure = ("internal_error", detail)
                continue
            for (item, _), result in zip(chunk, results, strict=True):
                item.results.append(result)

    def _write_outputs(self, work: Sequence[_Work]) -> None:
        jobs = [
            (item, index)
            for item in work
            if item.decoded and item.failure is None
            for index in range(len(item.results))
        ]
        written = list(self._writers.map(lambda job: self._write_frame(*job), jobs))
        for (item, _), outputs in zip(jobs, written, strict=True):
            if isinstance(outputs, OutputError):
                item.failure = ("output_error", str(outputs))
                item.transient = outputs.transient
            else:
                item.outputs.append(outputs)
        self._sweep_stale(work)

    def _sweep_stale(self, work: Iterable[_Work]) -> None:
        """An earlier attempt's files this one did not write (a crop.jpg where no cervix is
        found now, a SEG now skipped) must not outlive it; both schedules call this."""
        for item in work:
            if item.decoded and item.failure is None:
                remove_stale_outputs(self.outbox, item.claimed.id, item.outputs, item.run)

    def _write_frame(self, item: _Work, index: int) -> FrameOutputs | OutputError:
        assert item.decoded is not None
        try:
            return self._writer.write(
                item.claimed.id, item.decoded, index, item.results[index], run=item.run
            )
        except OutputError as exc:
            return exc
        finally:
            self.leases.progress()

    def _commit(self, work: Sequence[_Work], outcome: BatchOutcome) -> None:
        """One transaction for the whole batch: outputs are on disk before rows say done."""
        now = time.perf_counter()
        # Events are told once the transaction has committed: a worker killed mid-commit
        # must not have logged "input_done" for an input that another worker then does.
        events = _DeferredLog()
        with self.db.session() as session:
            for item in work:
                # the batch's time shared among its inputs: what one input costs
                ms = (now - item.started) * 1000 / len(work)
                input_id = item.claimed.id
                meta = _metadata(item.decoded)
                if item.rejection is not None:
                    item.committed = queue.reject(
                        session,
                        input_id=input_id,
                        owner=self.owner,
                        reason=item.rejection.reason.value,
                        detail=item.rejection.detail,
                        metadata=meta,
                    )
                    if not item.committed:
                        events.warning("lease_lost", input_id=input_id)
                        continue
                    item.ended = Status.REJECTED
                    outcome.rejected += 1
                    # Logs carry ids and reason codes; the detail (which may name paths or
                    # DICOM classes) is the database's.
                    events.info(
                        "input_rejected",
                        input_id=input_id,
                        sha256=item.claimed.sha256[:12],
                        reason=item.rejection.reason.value,
                    )
                elif item.failure is not None and item.transient:
                    reason, detail = item.failure
                    queue.release(
                        session, input_id=input_id, owner=self.owner, reason=reason, detail=detail
                    )
                    outcome.retried += 1
                    self._disk_trouble_until = time.monotonic() + DISK_RETRY_SECONDS
                    events.warning(
                        "input_requeued_disk_error",
                        input_id=input_id,
                        sha256=item.claimed.sha256[:12],
                        reason=reason,
                        retry_in_s=DISK_RETRY_SECONDS,
                    )
                elif item.failure is not None:
                    reason, detail = item.failure
                    status = queue.fail(
                        session,
                        input_id=input_id,
                        owner=self.owner,
                        reason=reason,
                        detail=detail,
                        max_attempts=self.config.batch.max_attempts,
                    )
                    if status is Status.FAILED:
                        outcome.failed += 1
                        item.ended = Status.FAILED
                    else:
                        outcome.retried += 1
                    events.warning(
                        "input_failed" if status is Status.FAILED else "input_retry",
                        input_id=input_id,
                        sha256=item.claimed.sha256[:12],
                        reason=reason,
                        attempt=item.claimed.attempts,
                    )
                else:
                    rows = [
                        self._writer.result_row(index, result, outputs, item.run)
                        for index, (result, outputs) in enumerate(
                            zip(item.results, item.outputs, strict=True)
                        )
                    ]
                    if queue.complete(
                        session,
                        input_id=input_id,
                        owner=self.owner,
                        results=rows,
                        metadata=meta,
                        processing_ms=ms,
                    ):
                        outcome.done += 1
                        item.completed = item.committed = True
                        if item.claimed.created_at is not None:
                            latency = utcnow() - item.claimed.created_at
                            outcome.latencies_s.append(latency.total_seconds())
                        events.info(
                            "input_done",
                            input_id=input_id,
                            sha256=item.claimed.sha256[:12],
                            frames=len(rows),
                            cervix_found=[r.cervix_found for r in rows],
                            lesion_fraction=[round(r.lesion_fraction, 4) for r in rows],
                            ms=round(ms, 1),
                        )
                    else:
                        events.warning("lease_lost", input_id=input_id)
        events.replay(log)

    def _forward(self, work: Iterable[_Work]) -> None:
        if self._forwarder is None:
            return
        for item in work:
            paths = [
                path
                for outputs in item.outputs
                for path in (outputs.dicom_seg, outputs.dicom_sc)
                if path is not None
            ]
            if item.completed and paths:
                self._forwarder.submit(item.claimed.id, paths)

    def _remove_outputs_of_failures(self, work: Iterable[_Work]) -> None:
        """An input this worker ended failed or rejected keeps no outputs: files an attempt
        wrote before it failed would otherwise lie in the outbox with no row naming them."""
        for item in work:
            if item.ended in (Status.FAILED, Status.REJECTED):
                remove_outputs(self.outbox, item.claimed.id, item.run)

    def _register_changed(self, work: Iterable[_Work]) -> None:
        """New bytes found at an input's path are an input of their own (a sighting of the
        same path), registered once the old input's fate is committed."""
        for item in work:
            for changed in item.changed:
                identity = FileIdentity(changed.path, changed.size, changed.mtime_ns, changed.inode)
                registration = self.register_identity(identity, sha256=changed.sha256)
                if registration is not None:
                    log.info(
                        "input_changed",
                        input_id=item.claimed.id,
                        new_input_id=registration.input_id,
                        sha256=item.claimed.sha256[:12],
                        new_sha256=changed.sha256[:12],
                    )

    def forward_pending(self) -> int:
        """Queues the forwarding of results a stop left "pending"; returns how many."""
        return self._forwarder.submit_pending() if self._forwarder is not None else 0

    def _dispose(self, work: Iterable[_Work]) -> None:
        for item in work:
            if not item.committed:
                continue  # back in the queue, failed, or another worker's now: it stays
            # A path that now holds other bytes fails the identity check: it stays too.
            try:
                dispose_of(
                    item.claimed.id,
                    reason=item.rejection.reason.value if item.rejection else None,
                    inbox=self.config.paths.inbox,
                    archive=self.config.watch.archive,
                    after=self.config.watch.after,
                    db=self.db,
                )
            except Exception as exc:  # noqa: BLE001 - the result stands; the file stays
                log.warning("disposal_failed", input_id=item.claimed.id, error=type(exc).__name__)


def _metadata(decoded: DecodedInput | None) -> dict[str, object]:
    if decoded is None:
        return {}
    meta: dict[str, object] = {
        "kind": decoded.kind.value,
        "format": decoded.format,
        "frame_count": len(decoded.frames),
    }
    if decoded.dicom is not None:
        meta.update(
            study_uid=decoded.dicom.study_uid,
            series_uid=decoded.dicom.series_uid,
            sop_instance_uid=decoded.dicom.sop_instance_uid,
            sop_class_uid=decoded.dicom.sop_class_uid,
        )
    return meta
