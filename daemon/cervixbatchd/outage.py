"""The service's side of a database outage: claim nothing, keep what is in hand, tell
systemd and the metrics, and wait with backoff (``cervixbatch.store.outage``) until the
database answers or ``database.outage_seconds`` have passed."""

from __future__ import annotations

from cervixbatch.worker.runner import Runner
from cervixbatchd.notify import Notifier
from cervixbatchd.signals import SignalFlags
from cervixbatchd.telemetry import Telemetry

__all__ = ["ride_out"]


class _StopAsked(Exception):
    """A stop was asked for while the database was out of reach."""


def ride_out(
    error: Exception,
    runner: Runner,
    notifier: Notifier,
    flags: SignalFlags,
    telemetry: Telemetry | None,
) -> None:
    """Returns once the database answers again, or at once when a stop is asked for (the
    claims in hand go back to the queue through recovery); raises
    :class:`~cervixbatch.store.outage.DatabaseOutage` when it stays away too long."""
    notifier.status("database unavailable: claiming nothing, retrying")
    if telemetry is not None:
        telemetry.database_up.set(0)

    def tick() -> None:
        if notifier.watchdog_interval is not None:
            notifier.watchdog()  # waiting is not hanging
        if flags.stop is not None:
            runner.stopping.set()  # a commit waiting in another thread stops too
            raise _StopAsked

    try:
        runner.outage.wait(error, on_wait=tick)
    except _StopAsked:
        return
    if telemetry is not None:
        telemetry.database_up.set(1)
