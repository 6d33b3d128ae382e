"""When is a file in the inbox finished? When its size and mtime stop changing.

A copy in progress (an SMB client, ``scp``, a colposcope's export) looks like a normal
file; acting on the first event would hash half of it. So every path the watcher or a
scan mentions becomes a *candidate*, and a candidate is taken only when two ``lstat``
calls ``settle_seconds`` apart (with any events in between resetting the clock) agree on
size and mtime. A close-after-write event shortens the wait but never replaces the
second look: the polling observer has no such event, and a writer may close and reopen.
"""

from __future__ import annotations

import dataclasses
import stat
import threading
import time
from typing import TYPE_CHECKING

import structlog

from cervixbatch.intake.discovery import FileIdentity, identify
from cervixbatch.intake.rules import IgnoreReason

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

__all__ = ["CLOSED_FRACTION", "SettleTracker"]

log = structlog.get_logger("cervixbatchd")

# After a close-after-write the file only has to stay unchanged for this share of
# settle_seconds. Not zero: a writer that appends in chunks may close between them.
CLOSED_FRACTION = 0.5


@dataclasses.dataclass(slots=True)
class _Candidate:
    """A path being watched until it settles."""

    identity: FileIdentity
    changed_at: float  # clock time the current (size, mtime) was first observed
    closed: bool = False  # a close-after-write arrived while this identity held


class SettleTracker:
    """Candidates fed from any thread (``note``), settled in the main loop (``take_settled``)."""

    def __init__(
        self, settle_seconds: float, *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.settle_seconds = settle_seconds
        self._clock = clock
        self._lock = threading.Lock()
        self._noted: dict[Path, bool] = {}  # path -> a close-after-write was seen
        self._candidates: dict[Path, _Candidate] = {}  # main loop only: no lock needed

    def note(self, path: Path, *, closed: bool = False) -> None:
        """Record that something happened to ``path`` (thread-safe; cheap, no I/O)."""
        with self._lock:
            self._noted[path] = self._noted.get(path, False) or closed

    def __len__(self) -> int:
        """Count the paths waiting to settle (or to be looked at)."""
        with self._lock:
            noted = set(self._noted)
        return len(noted | set(self._candidates))

    def take_settled(self) -> list[FileIdentity]:
        """Look at what was noted; return the files that have settled (main loop only).

        A path that vanished, or is no longer a regular file (a symlink, a folder), is
        dropped: ``identify`` uses ``lstat`` and never follows a link.
        """
        now = self._clock()
        with self._lock:
            noted, self._noted = self._noted, {}
        for path, closed in noted.items():
            self._observe(path, now, closed=closed)
        settled: list[FileIdentity] = []
        for path, candidate in list(self._candidates.items()):
            if now - candidate.changed_at < self._quiet(candidate):
                continue
            identity = identify(path)  # the second look: still the same size and mtime?
            if identity is None:
                del self._candidates[path]
            elif identity == candidate.identity:
                del self._candidates[path]
                settled.append(identity)
            else:
                candidate.identity = identity
                candidate.changed_at = now
                candidate.closed = False
        return settled

    def seconds_until_due(self) -> float | None:
        """Return the seconds until the next candidate may settle; None when there is none."""
        with self._lock:
            if self._noted:
                return 0.0
        if not self._candidates:
            return None
        now = self._clock()
        due = min(c.changed_at + self._quiet(c) for c in self._candidates.values())
        return max(0.0, due - now)

    def _observe(self, path: Path, now: float, *, closed: bool) -> None:
        identity = identify(path)
        if identity is None:
            self._candidates.pop(path, None)
            _say_why(path)
            return
        candidate = self._candidates.get(path)
        if candidate is None:
            self._candidates[path] = _Candidate(identity, now, closed=closed)
        elif candidate.identity != identity:
            candidate.identity = identity
            candidate.changed_at = now
            candidate.closed = closed
        elif closed:
            candidate.closed = True

    def _quiet(self, candidate: _Candidate) -> float:
        if candidate.closed:
            return self.settle_seconds * CLOSED_FRACTION
        return self.settle_seconds


def _say_why(path: Path) -> None:
    """Logs why a path heard of is passed over when it is a FIFO, a socket or a device
    (never opened: reading a FIFO would wait for a writer). The reason only: no path."""
    try:
        mode = path.lstat().st_mode
    except OSError:
        return  # gone: nothing to say
    if not (stat.S_ISREG(mode) or stat.S_ISDIR(mode) or stat.S_ISLNK(mode)):
        log.info("input_ignored", reason=IgnoreReason.NOT_A_REGULAR_FILE.value)
