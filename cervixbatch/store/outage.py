"""A database that went away is waited out, not turned into a crash loop.

One rule says which errors mean "the database is out of reach or busy" (a lost connection,
a timeout, a lock, a full disk under SQLite) as opposed to "it refuses this value"; one
waiter pings the database with backoff until it answers, calling back between tries (the
watchdog must not take a patient worker for a hung one), and gives up after
``database.outage_seconds`` with :class:`DatabaseOutage`.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import TypeVar

import structlog
from sqlalchemy import exc as sa
from sqlalchemy import text

from cervixbatch.config import Config
from cervixbatch.errors import StoreError
from cervixbatch.store.db import Database

__all__ = ["DatabaseOutage", "OutageWaiter", "is_unavailable", "open_when_available"]

log = structlog.get_logger(__name__)

T = TypeVar("T")

FIRST_WAIT_S = 0.5
LONGEST_WAIT_S = 5.0


class DatabaseOutage(StoreError):
    """The database stayed out of reach for longer than ``database.outage_seconds``."""


def is_unavailable(exc: BaseException) -> bool:
    """Whether ``exc`` (or the error it wraps, e.g. a failed migration's) says the database
    is out of reach or busy, not that it refuses a value: a lost connection, a timeout, a
    lock, a deadlock, a full or failing disk."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(
            seen, sa.OperationalError | sa.InterfaceError | sa.DisconnectionError | sa.TimeoutError
        ) or getattr(seen, "connection_invalidated", False):
            return True
        seen = seen.__cause__
    return False


def open_when_available(
    opener: Callable[[Config], T],
    config: Config,
    outage_seconds: float,
    on_wait: Callable[[], object] | None = None,
    *,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> T:
    """``opener(config)`` (open and migrate the database), tried again with backoff while the
    database is out of reach, for at most ``outage_seconds``: a worker started during a
    database restart waits for it instead of spending the service's start limit."""
    started = clock()
    pause = FIRST_WAIT_S
    while True:
        try:
            return opener(config)
        except Exception as exc:
            waited = clock() - started
            if not is_unavailable(exc) or waited >= outage_seconds:
                raise
            if pause == FIRST_WAIT_S:
                log.warning("database_unavailable", error=type(exc).__name__, at="start")
        if on_wait is not None:
            on_wait()
        sleep(min(pause, max(0.0, outage_seconds - waited)))
        pause = min(pause * 2, LONGEST_WAIT_S)


class OutageWaiter:
    """Waits for one database to answer again; shared by the threads that need it, so the
    outage is measured from when it was first seen."""

    def __init__(
        self,
        db: Database,
        *,
        outage_seconds: float,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._db = db
        self._limit = outage_seconds
        self._clock = clock
        self._sleep = sleep
        self._since: float | None = None
        self._lock = threading.Lock()  # the main loop and the commit thread may both wait

    @property
    def limit(self) -> float:
        """``database.outage_seconds``: how long an outage is waited for."""
        return self._limit

    @property
    def down_for(self) -> float | None:
        """Seconds since the outage was first seen; None while the database answers."""
        return None if self._since is None else self._clock() - self._since

    def wait(self, error: BaseException, *, on_wait: Callable[[], None] | None = None) -> None:
        """Returns once the database answers again; raises :class:`DatabaseOutage` when
        it has been out of reach for ``outage_seconds``. ``error`` is what showed the
        outage (logged by type only: its text may quote a statement)."""
        with self._lock:
            if self._since is None:
                self._since = self._clock()
                log.warning("database_unavailable", error=type(error).__name__, limit_s=self._limit)
            since = self._since
        pause = FIRST_WAIT_S
        while True:
            if on_wait is not None:
                on_wait()
            # Never at once: an error that recurs while pings succeed (a lock) must not
            # turn the callers' retries into a busy loop.
            self._sleep(min(FIRST_WAIT_S, self._limit))
            if self.ping():
                break
            waited = self._clock() - since
            if waited >= self._limit:
                raise DatabaseOutage(
                    f"the database did not answer for {waited:.0f} s "
                    f"(database.outage_seconds = {self._limit:g})"
                ) from error
            self._sleep(min(pause, max(0.0, self._limit - waited)))
            pause = min(pause * 2, LONGEST_WAIT_S)
        with self._lock:
            if self._since is not None:
                log.info("database_available", outage_s=round(self._clock() - self._since, 1))
            self._since = None

    def ping(self) -> bool:
        """True when the database answers a trivial query now."""
        try:
            with self._db.read_session() as session:
                session.execute(text("SELECT 1"))
        except Exception as exc:  # noqa: BLE001 - any failure means: not back yet
            if not is_unavailable(exc):
                log.warning("database_ping_failed", error=type(exc).__name__)
            return False
        return True
