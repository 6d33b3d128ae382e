"""Keeps the leases of claimed inputs alive while they are in a worker's hands.

The pipelined runner holds several batches at once, some waiting behind others: a lease
renewed only at phase boundaries could run out while a batch waits, and another worker
would take the input over. The keeper renews every held lease a third of a lease apart
(in the database's clock, as claims are), from its own thread, until told to stop.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable

import structlog

from cervixbatch.store import queue
from cervixbatch.store.db import Database

__all__ = ["LeaseKeeper"]

log = structlog.get_logger("cervixbatch.runner")

_MIN_INTERVAL_S = 0.5


class LeaseKeeper:
    """Renews the leases of the inputs it holds; ``close`` stops and joins its thread."""

    def __init__(self, db: Database, owner: str, lease_seconds: Callable[[], float]) -> None:
        self._db = db
        self._owner = owner
        self._lease_seconds = lease_seconds  # read at every renewal: a reload may change it
        self._held: set[int] = set()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="cervixbatch-leases", daemon=True)
        self._thread.start()

    def hold(self, ids: Iterable[int]) -> None:
        """Starts renewing these inputs' leases."""
        with self._lock:
            self._held.update(ids)

    def release(self, ids: Iterable[int] | None = None) -> None:
        """Stops renewing these inputs' leases (all of them when ``ids`` is None)."""
        with self._lock:
            if ids is None:
                self._held.clear()
            else:
                self._held.difference_update(ids)

    def close(self) -> None:
        """Stops renewing and joins the thread."""
        self._stop.set()
        self._thread.join()

    def renew(self) -> int:
        """Renews every held lease now; returns how many this owner still holds."""
        with self._lock:
            ids = sorted(self._held)
        if not ids:
            return 0
        with self._db.session() as session:
            held = queue.renew(
                session, owner=self._owner, ids=ids, lease_seconds=self._lease_seconds()
            )
        if held < len(ids):
            log.warning("leases_lost", held=held, claimed=len(ids))
        return held

    def _run(self) -> None:
        while not self._stop.wait(max(_MIN_INTERVAL_S, self._lease_seconds() / 3)):
            try:
                self.renew()
            except Exception as exc:  # noqa: BLE001 - the commit will find out; keep trying
                log.warning("lease_renewal_failed", error=type(exc).__name__)
