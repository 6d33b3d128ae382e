"""Hearing about files in the inbox: a watchdog observer, supervised, plus full scans.

inotify (the default) or polling (``watch.polling``, for network shares, where inotify
sees nothing). Both only report what happens while they run, and inotify drops events
silently when its queue overflows, so the service also scans the inbox at start and
every ``watch.rescan_seconds``. Every path goes through the input rule
(:class:`~cervixbatch.intake.rules.InputRule`) and then to a callback (the settle
tracker); nothing here reads a file or touches the database.

The observer runs in watchdog's threads. If one dies (an exception in the handler, the
inbox removed, an inotify limit), :meth:`InboxWatcher.supervise` notices it from the
main loop and starts a new observer; too many restarts in a row raise
:class:`ObserverFailedError` so the process exits non-zero and systemd restarts it. A deaf
daemon that still answers the watchdog is the one outcome this module must not allow.
"""

from __future__ import annotations

import collections
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import structlog
from watchdog.events import (
    DirCreatedEvent,
    DirModifiedEvent,
    DirMovedEvent,
    FileAttribEvent,
    FileClosedEvent,
    FileCreatedEvent,
    FileModifiedEvent,
    FileMovedEvent,
    FileSystemEvent,
    FileSystemEventHandler,
)
from watchdog.observers import Observer
from watchdog.observers.polling import PollingObserver

from cervixbatch.intake.rules import InputRule

if TYPE_CHECKING:
    from watchdog.observers.api import BaseObserver

__all__ = ["InboxWatcher", "ObserverFailedError", "OnFile"]

log = structlog.get_logger("cervixbatchd")

OnFile = Callable[[Path, bool], None]  # (path, a close-after-write was seen)

POLL_INTERVAL_S = 1.0  # PollingObserver: seconds between two listings of the inbox
JOIN_TIMEOUT_S = 5.0


class ObserverFailedError(RuntimeError):
    """The observer cannot be kept running: the service must exit non-zero."""


class _Handler(FileSystemEventHandler):
    """Turns watchdog events into ``on_file`` calls; runs in the observer's thread."""

    def __init__(self, rule: InputRule, on_file: OnFile) -> None:
        self._rule = rule
        self._on_file = on_file
        self.error: BaseException | None = None

    def dispatch(self, event: FileSystemEvent) -> None:
        try:
            super().dispatch(event)
        except BaseException as exc:
            # Recorded for supervise(); re-raised so the thread dies visibly, not half-alive.
            self.error = exc
            raise

    def _file(self, raw: bytes | str, *, closed: bool = False) -> None:
        path = Path(os.fsdecode(raw))
        if self._rule.accepts(path):
            self._on_file(path, closed)

    def _folder(self, raw: bytes | str) -> None:
        # A folder created or moved in may already hold files that raised no event of
        # their own (inotify adds the new watch only after it sees the folder).
        path = Path(os.fsdecode(raw))
        if path == self._rule.root or self._rule.accepts(path):
            for file in self._rule.files(under=path):
                self._on_file(file, False)  # noqa: FBT003 - a plain callback

    def on_created(self, event: DirCreatedEvent | FileCreatedEvent) -> None:
        if event.is_directory:
            self._folder(event.src_path)
        else:
            self._file(event.src_path)

    def on_modified(self, event: DirModifiedEvent | FileModifiedEvent) -> None:
        if not event.is_directory:
            self._file(event.src_path)

    def on_attrib(self, event: FileSystemEvent) -> None:
        # `cp -p` and rsync set the mtime last: an attribute change can end a copy.
        if isinstance(event, FileAttribEvent):
            self._file(event.src_path)

    def on_closed(self, event: FileClosedEvent) -> None:
        self._file(event.src_path, closed=True)

    def on_moved(self, event: DirMovedEvent | FileMovedEvent) -> None:
        # The rename of a copy tool's temp name is the moment the file becomes an input.
        if event.is_directory:
            self._folder(event.dest_path)
        else:
            self._file(event.dest_path)


class InboxWatcher:
    """One observer on the inbox (recursive), restarted when it dies."""

    def __init__(
        self,
        rule: InputRule,
        on_file: OnFile,
        *,
        polling: bool = False,
        max_restarts: int = 5,
        restart_window_s: float = 600.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.rule = rule
        self._on_file = on_file
        self.polling = polling
        self._max_restarts = max_restarts
        self._window = restart_window_s
        self._clock = clock
        self._restarts: collections.deque[float] = collections.deque()
        self._observer: BaseObserver | None = None
        self._handler: _Handler | None = None

    @property
    def running(self) -> bool:
        """True while the observer thread and each of its emitter threads are alive."""
        observer = self._observer
        if observer is None or not observer.is_alive():
            return False
        return all(emitter.is_alive() for emitter in observer.emitters) and bool(observer.emitters)

    def start(self) -> None:
        """Start an observer; an OSError (no inbox, inotify limits) is ObserverFailedError."""
        self.rule.root.mkdir(parents=True, exist_ok=True)
        handler = _Handler(self.rule, self._on_file)
        observer: BaseObserver = (
            PollingObserver(timeout=POLL_INTERVAL_S) if self.polling else Observer()
        )
        # Named so that `ps -T`, tracebacks and the tests' leak guard can tell them apart.
        observer.name = "cervixbatch-observer"
        try:
            observer.schedule(handler, str(self.rule.root), recursive=True)
            for emitter in observer.emitters:
                emitter.name = "cervixbatch-observer-emitter"
            observer.start()
        except OSError as exc:
            _stop_quietly(observer)
            hint = "raise fs.inotify.max_user_watches or set watch.polling = true"
            raise ObserverFailedError(f"cannot watch the inbox ({exc}); {hint}") from exc
        self._observer, self._handler = observer, handler
        log.info("observer_started", kind="polling" if self.polling else "inotify")

    def supervise(self) -> bool:
        """Restart a dead observer; True when it did (events may have been lost: rescan).

        Raises ObserverFailedError after ``max_restarts`` restarts within the window.
        """
        if self.running:
            return False
        error = self._handler.error if self._handler else None
        # The type only: a message could quote a file name, and names can carry patients'.
        log.error("observer_died", error=type(error).__name__ if error else "watch_thread_ended")
        now = self._clock()
        while self._restarts and now - self._restarts[0] > self._window:
            self._restarts.popleft()
        if len(self._restarts) >= self._max_restarts:
            raise ObserverFailedError(
                f"the observer died {len(self._restarts) + 1} times in {self._window:.0f} s"
            )
        self._restarts.append(now)
        self.stop()
        self.start()
        log.warning("observer_restarted", restarts=len(self._restarts))
        return True

    def stop(self) -> None:
        """Stop the observer and join its threads."""
        observer, self._observer = self._observer, None
        if observer is not None:
            _stop_quietly(observer)


def _stop_quietly(observer: BaseObserver) -> None:
    """Stop and join an observer, even one that never started or already died."""
    try:
        observer.stop()
    except Exception as exc:  # noqa: BLE001 - a broken observer must not block teardown
        log.warning("observer_stop_failed", error=type(exc).__name__)
    if observer.is_alive():
        observer.join(timeout=JOIN_TIMEOUT_S)
