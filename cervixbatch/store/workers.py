"""The worker table: who is working on the queue, since when, and whether it still answers.

Every worker (the daemon, a ``cervixbatch process`` run) registers itself under the lease
owner id it claims inputs with, then renews ``heartbeat_at`` while it runs and records
its stop. Times come from the database's clock, so workers on several machines and the
``status`` command that judges them agree on what "a minute ago" is.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Sequence

from sqlalchemy import delete, func, or_, select, update
from sqlalchemy.orm import Session

from cervixbatch.store.clock import db_now
from cervixbatch.store.schema import Input, Status, Worker

__all__ = [
    "WorkerRow",
    "database_now",
    "holdings",
    "list_workers",
    "prune_workers",
    "record_beat",
    "record_stop",
    "register_worker",
]


@dataclasses.dataclass(frozen=True, slots=True)
class WorkerRow:
    """One worker as recorded, with what it holds now (inputs it has claimed)."""

    id: str
    kind: str
    host: str
    pid: int
    version: str
    cervix_model: str | None
    lesion_model: str | None
    precision: str | None
    started_at: dt.datetime
    heartbeat_at: dt.datetime
    stopped_at: dt.datetime | None
    stop_reason: str | None
    paused: str | None
    disk_free_mb: float | None
    inputs_finished: int
    last_error: str | None
    last_error_at: dt.datetime | None
    holding: int = 0


def database_now(session: Session) -> dt.datetime:
    """The database server's current time (UTC): one clock for every worker."""
    now = session.execute(select(db_now())).scalar_one()
    assert isinstance(now, dt.datetime)
    return now


def register_worker(
    session: Session,
    *,
    worker_id: str,
    kind: str,
    host: str,
    pid: int,
    version: str,
    models: tuple[str, str, str] | None,
) -> None:
    """Records a starting worker; ``models`` is (cervix, lesion, precision) once loaded."""
    now = db_now()
    cervix, lesion, precision = models or (None, None, None)
    session.add(
        Worker(
            id=worker_id,
            kind=kind,
            host=host,
            pid=pid,
            version=version,
            cervix_model=cervix,
            lesion_model=lesion,
            precision=precision,
            started_at=now,
            heartbeat_at=now,
            inputs_finished=0,
        )
    )
    session.flush()


def record_beat(
    session: Session,
    worker_id: str,
    *,
    paused: str | None,
    disk_free_mb: float | None,
    finished: int = 0,
    error: str | None = None,
) -> bool:
    """Renews ``heartbeat_at`` (the worker's presence) and what it reports; False when
    its row is gone."""
    values: dict[str, object] = {
        "heartbeat_at": db_now(),
        "paused": paused,
        "disk_free_mb": disk_free_mb,
        "inputs_finished": Worker.inputs_finished + finished,
    }
    if error is not None:
        values.update(last_error=error[:500], last_error_at=db_now())
    result = session.execute(
        update(Worker)
        .where(Worker.id == worker_id)
        .values(**values)
        .execution_options(synchronize_session=False)
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]


def record_stop(session: Session, worker_id: str, *, reason: str, error: str | None) -> None:
    """Marks the worker stopped (a clean end, or an error it could still report)."""
    values: dict[str, object] = {
        "stopped_at": db_now(),
        "heartbeat_at": db_now(),
        "stop_reason": reason[:64],
        "paused": None,
    }
    if error is not None:
        values.update(last_error=error[:500], last_error_at=db_now())
    session.execute(
        update(Worker)
        .where(Worker.id == worker_id)
        .values(**values)
        .execution_options(synchronize_session=False)
    )


def holdings(session: Session, worker_ids: Sequence[str]) -> dict[str, int]:
    """How many inputs each worker has claimed and not yet finished."""
    if not worker_ids:
        return {}
    rows = session.execute(
        select(Input.lease_owner, func.count())
        .where(Input.status == Status.PROCESSING, Input.lease_owner.in_(worker_ids))
        .group_by(Input.lease_owner)
    )
    return {str(owner): int(count) for owner, count in rows}


def list_workers(session: Session, *, stopped_since: dt.datetime) -> list[WorkerRow]:
    """Every worker not stopped, and those that stopped after ``stopped_since``; newest
    first."""
    workers = session.scalars(
        select(Worker)
        .where(or_(Worker.stopped_at.is_(None), Worker.stopped_at >= stopped_since))
        .order_by(Worker.started_at.desc(), Worker.id)
    ).all()
    held = holdings(session, [w.id for w in workers])
    return [
        WorkerRow(
            id=w.id,
            kind=w.kind,
            host=w.host,
            pid=w.pid,
            version=w.version,
            cervix_model=w.cervix_model,
            lesion_model=w.lesion_model,
            precision=w.precision,
            started_at=w.started_at,
            heartbeat_at=w.heartbeat_at,
            stopped_at=w.stopped_at,
            stop_reason=w.stop_reason,
            paused=w.paused,
            disk_free_mb=w.disk_free_mb,
            inputs_finished=w.inputs_finished,
            last_error=w.last_error,
            last_error_at=w.last_error_at,
            holding=held.get(w.id, 0),
        )
        for w in workers
    ]


def prune_workers(session: Session, *, silent_before: dt.datetime) -> int:
    """Forgets workers whose last sign of life (heartbeat or stop) is older than
    ``silent_before``; returns how many."""
    result = session.execute(
        delete(Worker)
        .where(Worker.heartbeat_at < silent_before)
        .execution_options(synchronize_session=False)
    )
    return int(result.rowcount)  # type: ignore[attr-defined]
