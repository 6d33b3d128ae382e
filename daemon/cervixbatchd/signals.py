"""Signals set flags; the main loop does the work.

A signal handler runs between two bytecodes of the main thread, possibly while that
thread holds a lock, so the handlers here take none: they set plain attributes and write
one byte to a non-blocking pipe that the main loop sleeps on (:class:`Wakeup`).

The first SIGTERM or SIGINT asks for a drain; it also puts both signals back to the
kernel's default action, so a second one ends the process at once — even in the middle
of a model call, where a Python-level handler would only run after it returns.
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import threading
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from types import FrameType

__all__ = ["SignalFlags", "Wakeup"]

_STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


class Wakeup:
    """A self-pipe: ``wake`` from any thread or a signal handler, ``wait`` in the main loop."""

    def __init__(self) -> None:
        self._read, self._write = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)

    def wake(self) -> None:
        """End the current or next ``wait`` early (lock-free, async-signal-safe)."""
        # A full pipe already means "wake up"; a closed one means teardown is done.
        with contextlib.suppress(BlockingIOError, OSError):
            os.write(self._write, b"\0")

    def wait(self, timeout: float) -> bool:
        """Sleep up to ``timeout`` seconds; True when woken. Drain pending wake-ups."""
        try:
            ready, _, _ = select.select([self._read], [], [], max(0.0, timeout))
        except InterruptedError:  # pragma: no cover - PEP 475 retries; kept for clarity
            return True
        if not ready:
            return False
        with contextlib.suppress(BlockingIOError):
            while os.read(self._read, 4096):
                pass
        return True

    def close(self) -> None:
        """Close both ends of the pipe."""
        for fd in (self._read, self._write):
            with contextlib.suppress(OSError):
                os.close(fd)


class SignalFlags:
    """What the signals asked for: ``stop`` (the signal's name) and ``reload``."""

    def __init__(self, wakeup: Wakeup) -> None:
        self._wakeup = wakeup
        self.stop: str | None = None
        self.reload = False
        self._previous: dict[int, Any] = {}

    def install(self) -> bool:
        """Install the handlers; False (and none installed) outside the main thread."""
        if threading.current_thread() is not threading.main_thread():
            return False
        for signum in (*_STOP_SIGNALS, signal.SIGHUP):
            handler = self._on_reload if signum == signal.SIGHUP else self._on_stop
            self._previous[signum] = signal.signal(signum, handler)
        return True

    def restore(self) -> None:
        """Put back the handlers that were there before ``install``."""
        for signum, previous in self._previous.items():
            signal.signal(signum, previous if previous is not None else signal.SIG_DFL)
        self._previous.clear()

    def request_stop(self, reason: str) -> None:
        """Ask the main loop to drain and stop (what a first SIGTERM does)."""
        if self.stop is None:
            self.stop = reason
        self._wakeup.wake()

    def take_reload(self) -> bool:
        """Return True once per SIGHUP (several before the loop looks count as one)."""
        wanted, self.reload = self.reload, False
        return wanted

    def _on_stop(self, signum: int, _frame: FrameType | None) -> None:
        # The next SIGTERM/SIGINT terminates immediately: "a second exits at once".
        for stop_signal in _STOP_SIGNALS:
            signal.signal(stop_signal, signal.SIG_DFL)
        self.request_stop(signal.Signals(signum).name)

    def _on_reload(self, _signum: int, _frame: FrameType | None) -> None:
        self.reload = True
        self._wakeup.wake()
