"""Registering settled files in a thread of its own, off the main loop.

Hashing a file takes as long as reading it: seconds for a large one, minutes on a slow
share. Done in the main loop, that time would starve systemd's watchdog (the service
killed as hung while it works), the signal flags and the batches. So the main loop hands
settled files to one thread (``cervixbatch-register``) that looks at each once more,
hashes it (a known (path, size, mtime, inode) is not hashed again) and records it; the
main loop takes the outcomes when it comes round. Files are registered one at a time,
in the order they settled.

An error the registrar raises for one file (a :class:`CervixbatchError`) is logged and
the others go on; any other error is handed to the main loop, which raises it as it did
when it registered files itself. A database out of reach is handed over too (the main
loop waits the outage out), and the file is noted once more, so it is not lost.
"""

from __future__ import annotations

import collections
import dataclasses
import threading
from typing import TYPE_CHECKING

import structlog

from cervixbatch.errors import CervixbatchError
from cervixbatch.intake.discovery import FileIdentity, identify
from cervixbatch.store.outage import is_unavailable

if TYPE_CHECKING:
    from cervixbatch.intake.registration import Registrar
    from cervixbatch.store.queue import Registration
    from cervixbatchd.settle import SettleTracker
    from cervixbatchd.signals import Wakeup

__all__ = ["BackgroundRegistrar", "Registered"]

log = structlog.get_logger("cervixbatchd")


@dataclasses.dataclass(frozen=True, slots=True)
class Registered:
    """A settled file and what registering it gave (None: not registered, e.g. gone)."""

    identity: FileIdentity
    registration: Registration | None


class BackgroundRegistrar:
    """One thread that registers the files handed to it, in order."""

    def __init__(self, registrar: Registrar, tracker: SettleTracker, wakeup: Wakeup) -> None:
        self._registrar = registrar
        self._tracker = tracker  # a file changed since it settled is noted there once more
        self._wakeup = wakeup  # the main loop's: woken when a file is registered
        self._lock = threading.Condition()
        self._todo: collections.deque[FileIdentity] = collections.deque()
        self._queued: set[FileIdentity] = set()  # in _todo or being registered
        self._finished: list[Registered] = []
        self._error: BaseException | None = None
        self._closing = False
        self._thread = threading.Thread(target=self._run, name="cervixbatch-register", daemon=True)
        self._thread.start()

    @property
    def busy(self) -> bool:
        """True while files wait or one is being registered."""
        with self._lock:
            return bool(self._queued)

    def submit(self, identity: FileIdentity) -> None:
        """Queues a settled file (once: a file already waiting is not queued again)."""
        with self._lock:
            if identity in self._queued:
                return
            self._queued.add(identity)
            self._todo.append(identity)
            self._lock.notify()

    def take_finished(self) -> list[Registered]:
        """What was registered since the last call; raises the error that stopped a
        registration when it was not the file's own (the main loop's to handle)."""
        with self._lock:
            finished, self._finished = self._finished, []
            error, self._error = self._error, None
        if error is not None:
            raise error
        return finished

    def wait_idle(self, timeout: float) -> bool:
        """Waits until nothing is left to register (at most ``timeout`` s); True if so."""
        with self._lock:
            return self._lock.wait_for(lambda: not self._queued, timeout=timeout)

    def close(self) -> None:
        """Stops after the file in hand (waiting ones are left for the next start's scan)."""
        with self._lock:
            self._closing = True
            self._todo.clear()
            self._lock.notify_all()
        self._thread.join()

    def _run(self) -> None:
        while True:
            with self._lock:
                self._lock.wait_for(lambda: self._todo or self._closing)
                if self._closing:
                    return
                identity = self._todo.popleft()
            outcome: Registered | None = None
            error: BaseException | None = None
            try:
                outcome = self._register(identity)
            except BaseException as exc:  # noqa: BLE001 - handed to the main loop
                error = exc
                self._tracker.note(identity.path)  # taken again once the trouble is past
                if is_unavailable(exc):
                    # The database is away (the main loop waits it out): the file is not
                    # lost, it settles once more and comes back here.
                    self._tracker.note(identity.path)
            with self._lock:
                self._queued.discard(identity)
                if outcome is not None:
                    self._finished.append(outcome)
                if error is not None and self._error is None:
                    self._error = error
                self._lock.notify_all()
            self._wakeup.wake()

    def _register(self, identity: FileIdentity) -> Registered | None:
        if identify(identity.path) != identity:  # changed since it settled: once more
            self._tracker.note(identity.path)
            return None
        try:
            registration = self._registrar.register_identity(identity)
        except CervixbatchError as exc:  # one bad file never stops the others
            if is_unavailable(exc):
                raise  # not the file's fault: the main loop waits the outage out
            # The type only: an error's text may name the file (patient names).
            log.warning("register_failed", error=type(exc).__name__)
            return None
        return Registered(identity, registration)
