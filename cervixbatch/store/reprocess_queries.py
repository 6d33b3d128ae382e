"""The SQL of reprocessing: selecting inputs to run again, and putting them back in the queue.

An input is re-queued only from a terminal state (never while a worker holds it); its
earlier results keep their rows. The next claim gives its new results the next run number
(:func:`cervixbatch.store.runs.next_runs`).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Iterator, Sequence
from typing import Any

from sqlalchemy import Select, and_, exists, or_, select, update
from sqlalchemy.orm import Session

from cervixbatch.store.runs import latest_run_only
from cervixbatch.store.schema import Input, Result, Sighting, Status, utcnow

__all__ = [
    "TERMINAL",
    "Candidate",
    "SeenAt",
    "Selection",
    "add_sighting",
    "requeue",
    "select_candidates",
]

TERMINAL = tuple(status for status in Status if status.terminal)
_CHUNK = 500  # ids per IN (...) list: far below every database's parameter limit


@dataclasses.dataclass(frozen=True, slots=True)
class Selection:
    """Which inputs to run again; the criteria combine (all must hold)."""

    ids: tuple[int, ...] = ()
    statuses: tuple[Status, ...] = ()
    reasons: tuple[str, ...] = ()
    since: dt.datetime | None = None  # found at or after
    until: dt.datetime | None = None  # found before
    # (cervix, lesion) versions: only inputs whose latest results were made by another pair
    other_than_models: tuple[str, str] | None = None

    @property
    def empty(self) -> bool:
        """True when no criterion is given (which would select every input)."""
        return not (
            self.ids
            or self.statuses
            or self.reasons
            or self.since
            or self.until
            or self.other_than_models
        )


@dataclasses.dataclass(frozen=True, slots=True)
class SeenAt:
    """A path an input's bytes were seen at, with the size, mtime and inode they had."""

    path: str
    size: int
    mtime_ns: int
    inode: int = 0  # 0: not known


@dataclasses.dataclass(frozen=True, slots=True)
class Candidate:
    """A selected input, its latest results' models, and where its bytes were seen."""

    id: int
    sha256: str
    size_bytes: int
    status: Status
    reason: str | None
    latest_run: int | None  # None: no results yet
    cervix_model: str | None
    lesion_model: str | None
    sightings: tuple[SeenAt, ...]  # newest first


def _query(selection: Selection) -> Select[Any]:
    query = select(Input.id)
    if selection.ids:
        query = query.where(Input.id.in_(selection.ids))
    if selection.statuses:
        query = query.where(Input.status.in_(selection.statuses))
    if selection.reasons:
        query = query.where(Input.reason.in_(selection.reasons))
    if selection.since is not None:
        query = query.where(Input.created_at >= selection.since)
    if selection.until is not None:
        query = query.where(Input.created_at < selection.until)
    if selection.other_than_models is not None:
        cervix, lesion = selection.other_than_models
        query = query.where(
            exists().where(
                Result.input_id == Input.id,
                latest_run_only(),
                or_(Result.cervix_model != cervix, Result.lesion_model != lesion),
            )
        )
    return query.order_by(Input.id)


def _chunks(ids: Sequence[int]) -> Iterator[Sequence[int]]:
    for start in range(0, len(ids), _CHUNK):
        yield ids[start : start + _CHUNK]


def select_candidates(session: Session, selection: Selection) -> list[Candidate]:
    """The inputs ``selection`` names, oldest first, in any status (the caller decides)."""
    ids = [int(i) for i in session.scalars(_query(selection))]
    candidates: list[Candidate] = []
    for chunk in _chunks(ids):
        inputs = session.execute(
            select(Input.id, Input.sha256, Input.size_bytes, Input.status, Input.reason)
            .where(Input.id.in_(chunk))
            .order_by(Input.id)
        ).all()
        models = {
            int(row[0]): (int(row[1]), str(row[2]), str(row[3]))
            for row in session.execute(
                select(Result.input_id, Result.run, Result.cervix_model, Result.lesion_model)
                .where(Result.input_id.in_(chunk), latest_run_only())
                .order_by(Result.input_id, Result.frame)
            )
        }
        seen: dict[int, list[SeenAt]] = {int(i): [] for i in chunk}
        for input_id, path, size, mtime_ns, inode in session.execute(
            select(
                Sighting.input_id,
                Sighting.path,
                Sighting.size_bytes,
                Sighting.mtime_ns,
                Sighting.inode,
            )
            .where(Sighting.input_id.in_(chunk))
            .order_by(Sighting.id.desc())
        ):
            seen[int(input_id)].append(SeenAt(str(path), int(size), int(mtime_ns), int(inode or 0)))
        for input_id, sha256, size, status, reason in inputs:
            run, cervix, lesion = models.get(int(input_id), (None, None, None))
            candidates.append(
                Candidate(
                    id=int(input_id),
                    sha256=str(sha256),
                    size_bytes=int(size),
                    status=Status(status),
                    reason=reason,
                    latest_run=run,
                    cervix_model=cervix,
                    lesion_model=lesion,
                    sightings=tuple(seen[int(input_id)]),
                )
            )
    return candidates


def add_sighting(session: Session, input_id: int, seen: SeenAt) -> None:
    """Records another place the input's bytes are (an archived copy), so a worker can
    read them from there."""
    known = session.execute(
        select(Sighting.id).where(
            Sighting.path == seen.path,
            Sighting.size_bytes == seen.size,
            Sighting.mtime_ns == seen.mtime_ns,
            Sighting.inode == seen.inode,
        )
    ).first()
    if known is None:
        session.add(
            Sighting(
                input_id=input_id,
                path=seen.path,
                size_bytes=seen.size,
                mtime_ns=seen.mtime_ns,
                inode=seen.inode,
                seen_at=utcnow(),
            )
        )
        session.flush()


def requeue(session: Session, ids: Sequence[int]) -> list[int]:
    """Puts inputs back in the queue, each only if it is in a terminal state now (a worker
    may have taken it since it was selected); returns those re-queued. Their attempts
    start again from zero; their results stay."""
    requeued: list[int] = []
    now = utcnow()
    for chunk in _chunks(ids):
        rows = session.execute(
            update(Input)
            .where(and_(Input.id.in_(chunk), Input.status.in_(TERMINAL)))
            .values(
                status=Status.QUEUED,
                attempts=0,
                reason=None,
                detail=None,
                lease_owner=None,
                lease_expires=None,
                started_at=None,
                finished_at=None,
                queued_at=now,
            )
            .returning(Input.id)
            .execution_options(synchronize_session=False)
        ).all()
        requeued.extend(int(row[0]) for row in rows)
    return sorted(requeued)
