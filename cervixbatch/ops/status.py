"""``cervixbatch status``: is it running, and how far behind is it.

Workers (alive, stale or stopped), the queue by status, the age of the oldest queued
input, why work is paused, the disk watermark and the latest error, gathered in one read
transaction. ``healthy`` is what the exit status says: a live worker exists and the oldest
queued input is younger than the threshold.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import enum
import json
from typing import Any

from cervixbatch.config import Config
from cervixbatch.errors import CervixbatchError
from cervixbatch.outputs.diskspace import free_mb
from cervixbatch.store import overview, workers
from cervixbatch.store.db import Database
from cervixbatch.store.deliveries import delivery_counts
from cervixbatch.store.leases import owner_is_dead
from cervixbatch.store.queue import status_counts

__all__ = ["StatusReport", "WorkerState", "gather_status", "render_status_json"]

STOPPED_SHOWN_FOR = dt.timedelta(hours=1)  # recently stopped workers are listed too


class WorkerState(enum.StrEnum):
    """How a worker looks from here."""

    ALIVE = "alive"  # heartbeat within the threshold
    STALE = "stale"  # silent too long, or its process is gone (and it never said stop)
    STOPPED = "stopped"  # stopped and said so


@dataclasses.dataclass(frozen=True, slots=True)
class WorkerStatus:
    """One worker as ``status`` reports it."""

    row: workers.WorkerRow
    state: WorkerState
    heartbeat_age_s: float
    process_gone: bool  # on this host, its pid no longer runs

    def as_dict(self) -> dict[str, Any]:
        """Plain JSON values."""
        row = self.row
        return {
            "id": row.id,
            "kind": row.kind,
            "state": self.state.value,
            "host": row.host,
            "pid": row.pid,
            "version": row.version,
            "models": {
                "cervix": row.cervix_model,
                "lesion": row.lesion_model,
                "precision": row.precision,
            },
            "started_at": _iso(row.started_at),
            "heartbeat_at": _iso(row.heartbeat_at),
            "heartbeat_age_s": round(self.heartbeat_age_s, 1),
            "process_gone": self.process_gone,
            "holding": row.holding,
            "inputs_finished": row.inputs_finished,
            "paused": row.paused,
            "disk_free_mb": _round(row.disk_free_mb),
            "stopped_at": _iso(row.stopped_at),
            "stop_reason": row.stop_reason,
            "last_error": row.last_error,
            "last_error_at": _iso(row.last_error_at),
        }


@dataclasses.dataclass(frozen=True, slots=True)
class StatusReport:
    """Everything ``status`` shows, and its verdict."""

    checked_at: dt.datetime
    workers: tuple[WorkerStatus, ...]
    queue: dict[str, int]
    oldest_queued_at: dt.datetime | None
    oldest_queued_age_s: float | None
    disk_free_mb: float | None
    min_free_mb: float
    last_error: dict[str, Any] | None
    stale_after_s: float
    max_queue_age_s: float
    problems: tuple[str, ...]
    # results on their way to a PACS, per leg ("cstore", "stow") and state
    deliveries: dict[str, dict[str, int]] = dataclasses.field(default_factory=dict)
    # per stage, the precision the configuration gives the models here and why
    # (model.runtime.auto_choices: for "auto", the fastest whose agreement card passes)
    precision: dict[str, str] = dataclasses.field(default_factory=dict)

    @property
    def healthy(self) -> bool:
        """A live worker exists and the queue is fresh."""
        return not self.problems

    @property
    def paused(self) -> list[dict[str, str]]:
        """Why live workers take no new inputs (disk space, a disk error), one per worker."""
        return [
            {"worker": w.row.id, "reason": w.row.paused}
            for w in self.workers
            if w.state is WorkerState.ALIVE and w.row.paused
        ]

    @property
    def disk_low(self) -> bool:
        """Free space on the outbox's disk is below ``limits.min_free_mb``."""
        return self.disk_free_mb is not None and self.disk_free_mb < self.min_free_mb

    def as_dict(self) -> dict[str, Any]:
        """Plain JSON values."""
        return {
            "healthy": self.healthy,
            "problems": list(self.problems),
            "checked_at": _iso(self.checked_at),
            "workers": [w.as_dict() for w in self.workers],
            "live_workers": sum(w.state is WorkerState.ALIVE for w in self.workers),
            "queue": {
                "by_status": self.queue,
                "oldest_queued_at": _iso(self.oldest_queued_at),
                "oldest_queued_age_s": _round(self.oldest_queued_age_s),
            },
            "paused": self.paused,
            "disk": {
                "free_mb": _round(self.disk_free_mb),
                "min_free_mb": self.min_free_mb,
                "low": self.disk_low,
            },
            "last_error": self.last_error,
            "deliveries": self.deliveries,
            "precision": self.precision,
            "thresholds": {
                "stale_after_s": self.stale_after_s,
                "max_queue_age_s": self.max_queue_age_s,
            },
        }


def gather_status(
    config: Config, db: Database, *, stale_after_s: float, max_queue_age_s: float
) -> StatusReport:
    """Reads the worker table and the queue (one read transaction), measures the disk."""
    with db.read_session() as session:
        now = workers.database_now(session)
        rows = workers.list_workers(session, stopped_since=now - STOPPED_SHOWN_FOR)
        counts = status_counts(session)
        oldest = overview.oldest_queued(session)
        failure = overview.last_failure(session)
        deliveries = delivery_counts(session)
    states = tuple(_judge(row, now, stale_after_s) for row in rows)
    age = max(0.0, (now - oldest).total_seconds()) if oldest is not None else None
    try:
        disk: float | None = free_mb(config.paths.outbox)
    except OSError:
        disk = None
    problems = []
    if not any(w.state is WorkerState.ALIVE for w in states):
        problems.append("no live worker")
    if age is not None and age >= max_queue_age_s:
        problems.append(f"the oldest queued input has waited {age:.0f} s")
    return StatusReport(
        checked_at=now,
        workers=states,
        queue=counts,
        oldest_queued_at=oldest,
        oldest_queued_age_s=age,
        disk_free_mb=disk,
        min_free_mb=config.limits.min_free_mb,
        last_error=_last_error(failure, rows),
        stale_after_s=stale_after_s,
        max_queue_age_s=max_queue_age_s,
        problems=tuple(problems),
        deliveries=deliveries,
        precision=_precision(config),
    )


def _precision(config: Config) -> dict[str, str]:
    """Which precision each stage gets here, and why; what went wrong, where it cannot
    be told (a missing model file, say)."""
    from cervixbatch.model.runtime import auto_choices

    try:
        return auto_choices(config)
    except CervixbatchError as exc:
        return {"cervix": f"unknown: {exc}", "lesion": f"unknown: {exc}"}


def _judge(row: workers.WorkerRow, now: dt.datetime, stale_after_s: float) -> WorkerStatus:
    age = max(0.0, (now - row.heartbeat_at).total_seconds())
    gone = row.stopped_at is None and owner_is_dead(row.id)
    if row.stopped_at is not None:
        state = WorkerState.STOPPED
    elif gone or age > stale_after_s:
        state = WorkerState.STALE
    else:
        state = WorkerState.ALIVE
    return WorkerStatus(row=row, state=state, heartbeat_age_s=age, process_gone=gone)


def _last_error(
    failure: overview.LastFailure | None, rows: list[workers.WorkerRow]
) -> dict[str, Any] | None:
    """The most recent of: the latest failed input, a worker's latest error."""
    candidates: list[tuple[dt.datetime, dict[str, Any]]] = []
    if failure is not None and failure.at is not None:
        candidates.append(
            (
                failure.at,
                {"source": "input", "input_id": failure.input_id, "error": failure.reason},
            )
        )
    candidates.extend(
        (row.last_error_at, {"source": "worker", "worker": row.id, "error": row.last_error})
        for row in rows
        if row.last_error and row.last_error_at is not None
    )
    if not candidates:
        return None
    at, error = max(candidates, key=lambda c: c[0])
    return {**error, "at": _iso(at)}


def render_status_json(report: StatusReport) -> str:
    """The status as one JSON object."""
    return json.dumps(report.as_dict(), indent=2) + "\n"


def _iso(value: dt.datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def _round(value: float | None) -> float | None:
    return round(value, 1) if value is not None else None
