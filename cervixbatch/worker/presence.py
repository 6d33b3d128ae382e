"""A worker's row in the worker table: registered at start, a heartbeat while it works,
its stop recorded at the end. Used by the daemon and by ``cervixbatch process``.

The heartbeat is written from the work loop between batches, and within a batch by the
runner's heartbeat thread only while the batch progresses (:mod:`cervixbatch.worker.lease_keeper`):
a worker that hangs goes stale. A heartbeat that cannot be written is logged and
skipped; it never stops the work.
"""

from __future__ import annotations

import datetime as dt
import os
import socket
import threading
import time
from collections.abc import Callable

import structlog
from sqlalchemy.exc import SQLAlchemyError

from cervixbatch.model.loaded import Stages
from cervixbatch.store import workers
from cervixbatch.store.db import Database
from cervixbatch.version import __version__

__all__ = ["BEAT_EVERY_S", "FORGET_AFTER", "WorkerPresence"]

log = structlog.get_logger(__name__)

BEAT_EVERY_S = 5.0  # `status` calls a worker stale after --stale-after (60 s) without one
FORGET_AFTER = dt.timedelta(days=7)  # rows of workers silent this long are removed


class WorkerPresence:
    """Registers one worker and keeps its row current."""

    def __init__(
        self,
        db: Database,
        *,
        worker_id: str,
        kind: str,
        models: tuple[str, str, str] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.db = db
        self.worker_id = worker_id
        self.kind = kind
        self.models = models
        self._clock = clock
        self._next_beat = 0.0
        self._finished = 0  # inputs finished since the last heartbeat written
        self._error: str | None = None
        self._paused: str | None = None
        self._disk_free_mb: float | None = None
        self._registered = False
        self._failing = False
        self._lock = threading.Lock()  # the main loop and the heartbeat thread both beat

    @classmethod
    def started(
        cls,
        db: Database,
        *,
        worker_id: str,
        kind: str,
        stages: Stages,
        clock: Callable[[], float] = time.monotonic,
    ) -> WorkerPresence:
        """Registers a worker that runs ``stages`` and returns its presence."""
        models = (stages.cervix_version, stages.lesion_version, stages.precision)
        presence = cls(db, worker_id=worker_id, kind=kind, models=models, clock=clock)
        presence.start()
        return presence

    def start(self) -> None:
        """Adds this worker's row (and forgets workers silent for a week)."""
        with self.db.session() as session:
            cutoff = workers.database_now(session) - FORGET_AFTER
            workers.prune_workers(session, silent_before=cutoff)
            workers.register_worker(
                session,
                worker_id=self.worker_id,
                kind=self.kind,
                host=socket.gethostname(),
                pid=os.getpid(),
                version=__version__,
                models=self.models,
            )
        self._registered = True
        self._next_beat = self._clock() + BEAT_EVERY_S

    def finished(self, count: int, *, failed: int = 0) -> None:
        """Counts inputs this worker took to a terminal state (written with the next beat);
        failed ones make ``input_failed`` its latest error."""
        with self._lock:
            self._finished += count
            if failed:
                self._error = "input_failed"

    def state(self, *, paused: str | None, disk_free_mb: float | None) -> None:
        """Notes why no inputs are taken (None: they are) and the outbox's free space."""
        finite = disk_free_mb is not None and disk_free_mb != float("inf")
        with self._lock:
            self._paused = paused
            self._disk_free_mb = disk_free_mb if finite else None

    def beat(self, *, force: bool = False) -> None:
        """Renews the heartbeat, at most every ``BEAT_EVERY_S`` unless ``force``."""
        with self._lock:
            now = self._clock()
            if not self._registered or (not force and now < self._next_beat):
                return
            self._next_beat = now + BEAT_EVERY_S
            paused, disk, finished, error = (
                self._paused,
                self._disk_free_mb,
                self._finished,
                self._error,
            )
        try:
            with self.db.session() as session:
                found = workers.record_beat(
                    session,
                    self.worker_id,
                    paused=paused,
                    disk_free_mb=disk,
                    finished=finished,
                    error=error,
                )
        except SQLAlchemyError as exc:
            if not self._failing:
                log.warning("heartbeat_failed", error=type(exc).__name__)
            self._failing = True
            return
        with self._lock:
            self._failing = False
            self._finished -= finished  # what was counted meanwhile goes with the next beat
            if self._error == error:
                self._error = None
        if not found:  # removed by hand, or pruned after a long suspend: register anew
            self._registered = False
            self.start()

    def stop(self, reason: str, *, error: str | None = None) -> None:
        """Records the stop; errors writing it are logged, never raised (teardown)."""
        if not self._registered:
            return
        try:
            with self.db.session() as session:
                workers.record_beat(
                    session, self.worker_id, paused=None, disk_free_mb=None, finished=self._finished
                )
                workers.record_stop(session, self.worker_id, reason=reason, error=error)
        except SQLAlchemyError as exc:
            log.warning("worker_stop_unrecorded", error=type(exc).__name__)
        self._registered = False
