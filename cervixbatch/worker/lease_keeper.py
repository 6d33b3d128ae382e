"""The heartbeat: a worker's claims live exactly as long as it works on them.

A claim's lease is short (``batch.lease_seconds``), so that the inputs of a worker that
dies — SIGKILL, a power cut, a lost network — go back to the others within seconds. A
working worker must therefore renew its leases all the time, whatever it is doing: reading
a 500 MB multi-frame file, waiting for the model, writing to a slow disk. One thread does
that for every input the runner holds, several times per lease, and pings the systemd
watchdog at the same moments, so that a long batch never looks like a hung service.

It is not blind, though: the runner reports progress (an input read, a model call done, a
frame written). When nothing has progressed for ``batch.stall_seconds`` the worker counts
as hung: the heartbeat stops renewing and stops pinging, so systemd restarts the service
and the leases run out for the others to take the inputs over.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable
from typing import Self

import structlog

from cervixbatch.store import leases
from cervixbatch.store.db import Database

__all__ = ["RENEWALS_PER_LEASE", "LeaseKeeper"]

log = structlog.get_logger(__name__)

# Renewals per lease period: four can fail in a row (a busy database) before a claim lapses.
RENEWALS_PER_LEASE = 5
_JOIN_TIMEOUT_S = 30.0


class LeaseKeeper:
    """Renews the leases of the inputs a runner holds, from a thread of its own.

    Args:
        db: The database the claims live in.
        owner: The lease owner the claims were made under.
        lease_seconds: How long each renewal extends a lease (database clock).
        stall_seconds: How long without progress before the worker counts as hung.

    """

    def __init__(
        self,
        db: Database,
        owner: str,
        *,
        lease_seconds: float,
        stall_seconds: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._db = db
        self._owner = owner
        self.lease_seconds = lease_seconds
        self.stall_seconds = stall_seconds
        self._clock = clock
        self._lock = threading.Lock()
        self._held: set[int] = set()
        self._last_progress = clock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._on_beat: Callable[[], None] | None = None
        self._beat_every: float | None = None
        self._lost = 0  # leases found no longer ours, last renewal
        self._stalled = False

    @property
    def interval(self) -> float:
        """Seconds between two heartbeats."""
        every = self.lease_seconds / RENEWALS_PER_LEASE
        if self._beat_every is not None:
            every = min(every, self._beat_every)
        return max(0.05, every)

    @property
    def held(self) -> frozenset[int]:
        """The input ids whose leases are being kept."""
        with self._lock:
            return frozenset(self._held)

    def set_beat(self, on_beat: Callable[[], None] | None, every: float | None = None) -> None:
        """Also call ``on_beat`` (the watchdog ping) with each heartbeat while inputs are
        held, at least every ``every`` seconds."""
        self._on_beat = on_beat
        self._beat_every = every

    def hold(self, ids: Iterable[int]) -> None:
        """Keep these claims alive from now on (call right after claiming them)."""
        with self._lock:
            self._held.update(ids)
            self._last_progress = self._clock()
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="cervixbatch-heartbeat", daemon=True
                )
                self._thread.start()

    def release(self, ids: Iterable[int]) -> None:
        """Stop renewing these claims (call before the transaction that ends them)."""
        with self._lock:
            self._held.difference_update(ids)
            if not self._held:
                self._lost = 0

    def progress(self) -> None:
        """Say the work in hand moved on (thread-safe, cheap)."""
        self._last_progress = self._clock()

    def close(self) -> None:
        """Stop the thread (joined)."""
        self._stop.set()
        thread, self._thread = self._thread, None
        if thread is not None:
            thread.join(timeout=_JOIN_TIMEOUT_S)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def beat(self) -> None:
        """One heartbeat: renew every held lease and ping, unless the work has stalled."""
        ids = sorted(self.held)
        if not ids:
            return  # between batches the service's main loop pings the watchdog itself
        idle = self._clock() - self._last_progress
        if idle > self.stall_seconds:
            if not self._stalled:
                self._stalled = True
                log.error("batch_stalled", inputs=len(ids), idle_s=round(idle, 1))
            return  # no renewal, no ping: systemd restarts us, the others take over
        if self._stalled:
            self._stalled = False
            log.warning("batch_resumed", inputs=len(ids))
        self._renew(ids)
        if self._on_beat is not None:
            self._on_beat()

    def _renew(self, ids: list[int]) -> None:
        try:
            with self._db.session() as session:
                still = leases.renew(
                    session, owner=self._owner, ids=ids, lease_seconds=self.lease_seconds
                )
        except Exception as exc:  # noqa: BLE001 - a busy or lost database: try again next beat
            log.warning("lease_renewal_failed", inputs=len(ids), error=type(exc).__name__)
            return
        lost = len(ids) - still
        if lost > self._lost:  # each loss said once, not at every beat
            # Taken over by another worker after a lapse: this worker's commit of them
            # will not take, and it disposes of none of their files.
            log.warning("leases_lost", held=still, claimed=len(ids))
        self._lost = lost

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.beat()
            except Exception:  # the heartbeat must outlive any one failure
                log.exception("heartbeat_failed")
