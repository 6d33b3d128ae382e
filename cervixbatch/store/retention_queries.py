"""The SQL of retention: results whose output files may go, and inputs that may be forgotten.

Callers work in small pages (``limit``, ``after_id``), one short transaction each, so a
purge of months of outputs never holds the database long while the daemon works.

A cut-off is either a moment (``purge --before``) or an age (:class:`datetime.timedelta`):
an age is subtracted from the database's clock (:mod:`cervixbatch.store.clock`), never
from the host's, so a worker whose clock runs days ahead forgets nothing early.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Sequence
from typing import Any

from sqlalchemy import ColumnElement, delete, func, literal, not_, or_, select, update
from sqlalchemy.orm import Session

from cervixbatch.store.clock import db_now, db_now_plus
from cervixbatch.store.runs import latest_run_only
from cervixbatch.store.schema import (
    ForwardStatus,
    Input,
    Result,
    Sighting,
    Status,
    UTCDateTime,
)

__all__ = [
    "FORGETTABLE",
    "Cutoff",
    "ExpiredInput",
    "PurgeCandidate",
    "delete_inputs",
    "expired_inputs",
    "latest_kept",
    "mark_purged",
    "purge_candidates",
]

FORGETTABLE = tuple(status for status in Status if status.terminal)

# A moment, or an age: "older than this" on the database's clock.
Cutoff = dt.datetime | dt.timedelta


def _cutoff(value: Cutoff) -> ColumnElement[Any]:
    """The cut-off as SQL: an age is evaluated by the database server."""
    if isinstance(value, dt.timedelta):
        return db_now_plus(-value.total_seconds())
    return literal(value, UTCDateTime())


@dataclasses.dataclass(frozen=True, slots=True)
class PurgeCandidate:
    """One result whose output files may be removed."""

    result_id: int
    input_id: int
    run: int
    frame: int
    created_at: dt.datetime
    input_active: bool  # queued or processing: a worker may be writing beside these files
    paths: tuple[str, ...]


def _paths(result: Result) -> tuple[str, ...]:
    named = (
        result.cervix_mask_path,
        result.lesion_mask_path,
        result.overlay_path,
        result.crop_path,
        result.dicom_seg_path,
        result.dicom_sc_path,
        result.dicom_sr_path,
    )
    return tuple(path for path in named if path)


def purge_candidates(
    session: Session,
    *,
    before: Cutoff,
    include_latest: bool,
    limit: int,
    after_id: int = 0,
) -> list[PurgeCandidate]:
    """Results made before ``before`` whose files are still there, by id, one page.

    Without ``include_latest`` only results of earlier runs qualify: every input keeps
    the outputs of its latest results. Results whose DICOM objects still wait to be
    forwarded never qualify.
    """
    query = (
        select(Result, Input.status)
        .join(Input, Input.id == Result.input_id)
        .where(
            Result.outputs_purged_at.is_(None),
            Result.created_at < _cutoff(before),
            Result.id > after_id,
            or_(Result.forward_status.is_(None), Result.forward_status != ForwardStatus.PENDING),
        )
        .order_by(Result.id)
        .limit(limit)
    )
    if not include_latest:
        query = query.where(not_(latest_run_only()))
    return [
        PurgeCandidate(
            result_id=result.id,
            input_id=result.input_id,
            run=result.run,
            frame=result.frame,
            created_at=result.created_at,
            input_active=not Status(status).terminal,
            paths=_paths(result),
        )
        for result, status in session.execute(query)
    ]


def latest_kept(session: Session, *, before: Cutoff) -> int:
    """How many results made before ``before`` keep their files as their input's latest."""
    return int(
        session.execute(
            select(func.count())
            .select_from(Result)
            .where(
                Result.outputs_purged_at.is_(None),
                Result.created_at < _cutoff(before),
                latest_run_only(),
            )
        ).scalar_one()
    )


def mark_purged(session: Session, result_ids: Sequence[int]) -> int:
    """Records that these results' files were removed (now, on the database's clock);
    returns how many rows it marked."""
    if not result_ids:
        return 0
    result = session.execute(
        update(Result)
        .where(Result.id.in_(result_ids), Result.outputs_purged_at.is_(None))
        .values(outputs_purged_at=db_now())
        .execution_options(synchronize_session=False)
    )
    return int(result.rowcount)  # type: ignore[attr-defined]


@dataclasses.dataclass(frozen=True, slots=True)
class ExpiredInput:
    """An input finished before the rows cutoff: its sighting paths and unpurged outputs."""

    input_id: int
    sighting_paths: tuple[str, ...]
    output_paths: tuple[str, ...]


def expired_inputs(
    session: Session,
    *,
    finished_before: Cutoff,
    limit: int,
    after_id: int = 0,
    lock: bool = False,
) -> list[ExpiredInput]:
    """Inputs in a terminal state that finished before ``finished_before``, one page.

    With ``lock`` the page's rows stay locked until the transaction ends, so what is
    decided about them (their files removed, their rows deleted) holds: on PostgreSQL a
    row another transaction holds (a ``reprocess`` re-queueing it) is skipped; on SQLite
    the write transaction (``BEGIN IMMEDIATE``) already keeps every other writer out.
    """
    query = (
        select(Input.id)
        .where(
            Input.status.in_(FORGETTABLE),
            Input.finished_at < _cutoff(finished_before),
            Input.id > after_id,
        )
        .order_by(Input.id)
        .limit(limit)
    )
    if lock:
        query = query.with_for_update(skip_locked=True)
    ids = [int(i) for i in session.scalars(query)]
    if not ids:
        return []
    sightings: dict[int, list[str]] = {i: [] for i in ids}
    for input_id, path in session.execute(
        select(Sighting.input_id, Sighting.path).where(Sighting.input_id.in_(ids))
    ):
        sightings[int(input_id)].append(str(path))
    outputs: dict[int, list[str]] = {i: [] for i in ids}
    for result in session.scalars(
        select(Result).where(Result.input_id.in_(ids), Result.outputs_purged_at.is_(None))
    ):
        outputs[result.input_id].extend(_paths(result))
    return [ExpiredInput(i, tuple(sightings[i]), tuple(outputs[i])) for i in ids]


def delete_inputs(session: Session, input_ids: Sequence[int]) -> list[int]:
    """Forgets inputs that are still terminal (their results and sightings go with them);
    returns the ids it deleted."""
    if not input_ids:
        return []
    still = [
        int(i)
        for i in session.scalars(
            select(Input.id)
            .where(Input.id.in_(input_ids), Input.status.in_(FORGETTABLE))
            .with_for_update()
        )
    ]
    if still:
        session.execute(delete(Result).where(Result.input_id.in_(still)))
        session.execute(delete(Sighting).where(Sighting.input_id.in_(still)))
        session.execute(delete(Input).where(Input.id.in_(still)))
    return still
