"""A batch's commit and what follows it, for both schedules of the runner.

:class:`BatchCommit`: one transaction records every input of the batch, each by the one
method for its outcome (rejected, back to the queue after a disk error, failed or retried,
done). :class:`AfterCommit`: then the outputs of inputs this worker ended failed or
rejected are removed, new bytes found at an input's paths are registered, inbox files are
disposed of and DICOM results forwarded. :func:`commit_batch`: the batch's transaction,
retried input by input when the database refuses a row, so that one input it cannot
record ends failed alone instead of taking the batch and the worker with it.

Both schedules write outputs before they commit, so a row says done only once its files
are on disk. Log events wait in a :class:`~cervixbatch.worker.batch_state.DeferredLog` until the
transaction has committed: a worker killed mid-commit must not have logged "input_done"
for an input that another worker then does.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING

import structlog

from cervixbatch.delivery.disposal import dispose_batch
from cervixbatch.errors import FailReason, InputRejected, OutputError
from cervixbatch.outputs.stale import remove_outputs, remove_stale_outputs
from cervixbatch.store import queue
from cervixbatch.store.notices import enqueue_notice
from cervixbatch.store.outage import is_unavailable
from cervixbatch.store.schema import Status, utcnow
from cervixbatch.worker.batch_state import BatchOutcome, DeferredLog, WorkItem
from cervixbatch.worker.notice import notice_body

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from cervixbatch.config import Config
    from cervixbatch.delivery.forwarder import Forwarder
    from cervixbatch.intake.registration import Registrar
    from cervixbatch.outputs.frame_writer import FrameWriter
    from cervixbatch.outputs.outbox import Outbox
    from cervixbatch.store.db import Database

__all__ = ["DISK_RETRY_SECONDS", "AfterCommit", "BatchCommit", "commit_batch"]

log = structlog.get_logger(__name__)

DISK_RETRY_SECONDS = 30.0  # after ENOSPC/EIO on the outbox, wait this long before claiming


class BatchCommit:
    """Records the inputs of one batch in one open transaction and counts them in the
    batch's outcome; what it would log waits in :attr:`events`."""

    def __init__(
        self,
        session: Session,
        *,
        owner: str,
        outcome: BatchOutcome,
        max_attempts: int,
        writer: FrameWriter,
        on_disk_error: Callable[[], None],
    ) -> None:
        self._session = session
        self._owner = owner
        self._outcome = outcome
        self._max_attempts = max_attempts
        self._writer = writer
        self._on_disk_error = on_disk_error  # the runner pauses claiming for a while
        self.events = DeferredLog()
        self._notified: set[int] = set()

    def record(self, item: WorkItem, *, ms: float) -> None:
        """Takes one input to the state its work earned; ``ms`` is its share of the batch."""
        if item.rejection is not None:
            self._rejected(item, item.rejection)
        elif item.failure is not None and item.transient:
            self._requeued_after_disk_error(item, *item.failure)
        elif item.failure is not None:
            self._failed(item, *item.failure)
        else:
            self._done(item, ms)
        self._notify(item)

    def _notify(self, item: WorkItem) -> None:
        """Stores the webhook notice of an input this commit finished, in its transaction."""
        settings = self._writer.config.webhook
        finished = item.completed or item.ended is not None
        if not settings.url or not finished or item.claimed.id in self._notified:
            return
        self._notified.add(item.claimed.id)  # record() calls itself after a failed publish
        stages = self._writer.stages
        models = {"cervix": stages.cervix_version, "lesion": stages.lesion_version}
        body = notice_body(item, models, settings)
        enqueue_notice(self._session, input_id=item.claimed.id, body=body)

    def _rejected(self, item: WorkItem, rejection: InputRejected) -> None:
        input_id = item.claimed.id
        item.committed = queue.reject(
            self._session,
            input_id=input_id,
            owner=self._owner,
            reason=rejection.reason,
            detail=rejection.detail,
            metadata=item.metadata(),
            attempt=item.claimed.attempts,
        )
        if not item.committed:
            self.events.warning("lease_lost", input_id=input_id)
            return
        item.ended = Status.REJECTED
        self._outcome.rejected += 1
        # Logs carry ids and reason codes; the detail (which may name paths or DICOM
        # classes) is the database's.
        self.events.info(
            "input_rejected",
            input_id=input_id,
            sha256=item.claimed.sha256[:12],
            reason=rejection.reason,
        )

    def _requeued_after_disk_error(self, item: WorkItem, reason: FailReason, detail: str) -> None:
        """The disk's failure, not the input's: back to the queue without spending an
        attempt, and no claiming for a while."""
        queue.release(
            self._session,
            input_id=item.claimed.id,
            owner=self._owner,
            reason=reason,
            detail=detail,
            attempt=item.claimed.attempts,
        )
        self._outcome.retried += 1
        self._on_disk_error()
        self.events.warning(
            "input_requeued_disk_error",
            input_id=item.claimed.id,
            sha256=item.claimed.sha256[:12],
            reason=reason,
            retry_in_s=DISK_RETRY_SECONDS,
        )

    def _failed(self, item: WorkItem, reason: FailReason, detail: str) -> None:
        """Failed for good once its attempts are spent; until then back to the queue."""
        status = queue.fail(
            self._session,
            input_id=item.claimed.id,
            owner=self._owner,
            reason=reason,
            detail=detail,
            max_attempts=self._max_attempts,
            attempt=item.claimed.attempts,
        )
        if status is Status.FAILED:
            self._outcome.failed += 1
            item.ended = Status.FAILED
        else:
            self._outcome.retried += 1
        self.events.warning(
            "input_failed" if status is Status.FAILED else "input_retry",
            input_id=item.claimed.id,
            sha256=item.claimed.sha256[:12],
            reason=reason,
            attempt=item.claimed.attempts,
        )

    def _done(self, item: WorkItem, ms: float) -> None:
        input_id = item.claimed.id
        attempt = item.claimed.attempts
        # The fence: the files are published only while this attempt provably holds the
        # claim, with the row locked until the commit; a worker that lost it publishes,
        # sweeps and records nothing, and its staging folder is thrown away after.
        if not queue.hold_claim(
            self._session, input_id=input_id, owner=self._owner, attempt=attempt
        ):
            self.events.warning("lease_lost", input_id=input_id)
            return
        if not self._publish(item):
            self.record(item, ms=ms)  # the publish failed: the failure's own outcome
            return
        rows = [
            self._writer.result_row(index, result, outputs, item.run)
            for index, (result, outputs) in enumerate(zip(item.results, item.outputs, strict=True))
        ]
        if not queue.complete(
            self._session,
            input_id=input_id,
            owner=self._owner,
            results=rows,
            metadata=item.metadata(),
            processing_ms=ms,
            attempt=attempt,
        ):
            self.events.warning("lease_lost", input_id=input_id)
            return
        self._outcome.done += 1
        item.completed = item.committed = True
        if item.claimed.created_at is not None:
            latency = utcnow() - item.claimed.created_at
            self._outcome.latencies_s.append(latency.total_seconds())
        self.events.info(
            "input_done",
            input_id=input_id,
            sha256=item.claimed.sha256[:12],
            frames=len(rows),
            cervix_found=[r.cervix_found for r in rows],
            lesion_fraction=[round(r.lesion_fraction, 4) for r in rows],
            ms=round(ms, 1),
        )

    def _publish(self, item: WorkItem) -> bool:
        """Puts the attempt's staged files in place and removes what an earlier attempt
        wrote that this one did not (an old crop.jpg, a SEG now skipped); False, with the
        item failed, when the disk refuses. Done once, even if the commit is retried."""
        if item.published:
            return True
        try:
            item.stage.publish(item.outputs)
        except OutputError as exc:
            item.fail(FailReason.OUTPUT_ERROR, str(exc))
            item.transient = exc.transient
            return False
        item.outputs = [item.stage.final(outputs) for outputs in item.outputs]
        item.published = True
        remove_stale_outputs(self._writer.outbox, item.claimed.id, item.outputs, item.run)
        return True


class AfterCommit:
    """What follows a batch's commit, once its inputs' fate is recorded."""

    def __init__(
        self,
        config: Config,
        db: Database,
        outbox: Outbox,
        registrar: Registrar,
        forwarder: Forwarder | None,
    ) -> None:
        self._config = config  # only settings a reload leaves alone (paths, watch.after)
        self._db = db
        self._outbox = outbox
        self._registrar = registrar
        self._forwarder = forwarder

    def run(self, work: Sequence[WorkItem]) -> None:
        """Removes, registers, disposes of and forwards, in that order."""
        for item in work:
            item.stage.discard()  # what was not published: failed, rejected, or lost
        self._remove_outputs_of_failures(work)
        for item in work:
            # New bytes at the input's path: an input of their own, now that the old
            # input's fate is committed.
            self._registrar.register_changed(item.claimed.id, item.claimed.sha256, item.changed)
        self._dispose(work)
        self._forward(work)

    def _remove_outputs_of_failures(self, work: Iterable[WorkItem]) -> None:
        """An input this worker ended failed or rejected keeps no outputs: files an attempt
        wrote before it failed would otherwise lie in the outbox with no row naming them."""
        for item in work:
            if item.ended in (Status.FAILED, Status.REJECTED):
                remove_outputs(self._outbox, item.claimed.id, item.run)

    def _dispose(self, work: Iterable[WorkItem]) -> None:
        # Not committed: back in the queue, failed, or another worker's now: it stays. A
        # path that now holds other bytes fails the identity check: it stays too.
        inputs = [
            (item.claimed.id, item.rejection.reason.value if item.rejection else None)
            for item in work
            if item.committed
        ]
        try:
            dispose_batch(
                inputs,
                inbox=self._config.paths.inbox,
                archive=self._config.watch.archive,
                after=self._config.watch.after,
                db=self._db,
            )
        except Exception as exc:  # noqa: BLE001 - the results stand; the files are gone or stay
            log.warning("disposal_failed", inputs=len(inputs), error=type(exc).__name__)

    def _forward(self, work: Iterable[WorkItem]) -> None:
        if self._forwarder is None:
            return
        for item in work:
            paths = [
                path
                for outputs in item.outputs
                for path in (outputs.dicom_seg, outputs.dicom_sc, outputs.dicom_sr)
                if path is not None
            ]
            if item.completed and paths:
                self._forwarder.submit(item.claimed.id, paths)


def commit_batch(
    db: Database,
    work: Sequence[WorkItem],
    outcome: BatchOutcome,
    *,
    owner: str,
    max_attempts: int,
    writer: FrameWriter,
    on_disk_error: Callable[[], None],
    shared_time: bool = True,
) -> None:
    """Records the batch in one transaction; when the database refuses it for what a row
    holds, input by input: the input it refuses even alone ends ``failed``
    (``unrecordable``), the rest are recorded, and the worker goes on.

    Each input's ``ms`` is its share of the batch's time (``shared_time``), else the whole
    time since it started. What is logged is logged once its transaction has committed. A
    database that does not answer (an outage, a lock) is no input's fault: that error is
    raised, and nothing is marked unrecordable for it.
    """
    now = time.perf_counter()
    parts = len(work) if shared_time else 1
    shares = {id(item): (now - item.started) * 1000 / parts for item in work}

    def record(items: Sequence[WorkItem], attempts: int = max_attempts) -> None:
        counted = BatchOutcome()
        # durable: on disk before AfterCommit removes an input's file (watch.after)
        with db.session(durable=True) as session:
            commit = BatchCommit(
                session,
                owner=owner,
                outcome=counted,
                max_attempts=attempts,
                writer=writer,
                on_disk_error=on_disk_error,
            )
            for item in items:
                commit.record(item, ms=shares[id(item)])
        outcome.add(counted)
        outcome.latencies_s.extend(counted.latencies_s)
        commit.events.replay(log)  # told only once the transaction has committed

    try:
        record(work)
    except Exception as exc:
        if is_unavailable(exc):
            raise
        log.warning("batch_commit_failed", inputs=len(work), error=type(exc).__name__)
        _forget_commit(work)
    else:
        return
    for item in work:
        try:
            record([item])
        except Exception as exc:
            if is_unavailable(exc):
                raise
            _forget_commit([item])
            item.rejection = None
            item.transient = False
            item.fail(
                FailReason.UNRECORDABLE,
                f"the database refused this input's row ({type(exc).__name__})",
            )
            # never retried: the same values would be refused again
            record([item], attempts=0)


def _forget_commit(work: Iterable[WorkItem]) -> None:
    """What a rolled-back transaction had marked on its items (its counts were its own)."""
    for item in work:
        item.completed = item.committed = False
        item.ended = None
