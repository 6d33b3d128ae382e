"""The queue operations: register, claim, renew, complete, reject, fail, recover.

Claims and their leases live in :mod:`cervixbatch.store.leases`; they are named here too,
so that callers see every transition of the queue in one place.

The database is the durable queue. Every function takes the session (the transaction)
it works in; callers decide the transaction's extent (one per batch). The same code runs
on SQLite (one writer at a time, statements atomic) and PostgreSQL (``FOR UPDATE SKIP
LOCKED``, so several workers never claim the same row).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

from sqlalchemy import ColumnElement, and_, select, true, update
from sqlalchemy.orm import Session

from cervixbatch.errors import FailReason, RejectReason
from cervixbatch.store import tallies
from cervixbatch.store.schema import Input, Result, Sighting, Status, utcnow

__all__ = [
    "Registration",
    "complete",
    "fail",
    "hold_claim",
    "known_sighting",
    "register",
    "reject",
    "release",
    "status_counts",
]


@dataclasses.dataclass(frozen=True, slots=True)
class Registration:
    """The outcome of registering one file."""

    input_id: int
    created: bool  # False: these bytes were known already
    status: Status


def _insert(session: Session) -> Any:
    dialect = session.get_bind().dialect.name
    if dialect == "postgresql":
        from sqlalchemy.dialects import postgresql

        return postgresql.insert
    from sqlalchemy.dialects import sqlite

    return sqlite.insert


def known_sighting(
    session: Session, path: str, size: int, mtime_ns: int, inode: int | None = None
) -> Registration | None:
    """The input this exact (path, size, mtime, inode) was seen as before, if any: such a
    file needs no hashing. A sighting whose inode is not known (0) matches any inode."""
    same_inode = Sighting.inode.in_([0, inode]) if inode else true()
    found = session.execute(
        select(Input.id, Input.status)
        .join(Sighting, Sighting.input_id == Input.id)
        .where(
            Sighting.path == path,
            Sighting.size_bytes == size,
            Sighting.mtime_ns == mtime_ns,
            same_inode,
        )
    ).first()
    if found is None:
        return None
    return Registration(input_id=int(found[0]), created=False, status=Status(found[1]))


def register(
    session: Session,
    *,
    sha256: str,
    path: str,
    size: int,
    mtime_ns: int,
    inode: int | None = None,
    status: Status = Status.QUEUED,
    reason: str | None = None,
    detail: str | None = None,
) -> Registration:
    """Records a file: a new input (queued, or terminal when rejected at discovery) or,
    when the same bytes are known, just another sighting. Idempotent across workers."""
    insert = _insert(session)
    now = utcnow()
    terminal = status.terminal
    inserted = session.execute(
        insert(Input)
        .values(
            sha256=sha256,
            path=path,
            size_bytes=size,
            status=status,
            reason=reason,
            detail=detail,
            attempts=0,
            created_at=now,
            finished_at=now if terminal else None,
        )
        .on_conflict_do_nothing(index_elements=["sha256"])
        .returning(Input.id)
    ).first()
    if inserted is not None:
        input_id, created, current = int(inserted[0]), True, status
    else:
        row = session.execute(select(Input.id, Input.status).where(Input.sha256 == sha256)).one()
        input_id, created, current = int(row[0]), False, Status(row[1])
    session.execute(
        insert(Sighting)
        .values(
            input_id=input_id,
            path=path,
            size_bytes=size,
            mtime_ns=mtime_ns,
            inode=inode or 0,
            seen_at=now,
        )
        .on_conflict_do_nothing(index_elements=["path", "size_bytes", "mtime_ns", "inode"])
    )
    return Registration(input_id=input_id, created=created, status=current)


def _held(input_id: int, owner: str, attempt: int | None) -> ColumnElement[bool]:
    """The row is still this owner's claim, and the same attempt at it: an owner that lost
    the input and claimed it again later must not commit the older attempt's work."""
    held = and_(Input.id == input_id, Input.lease_owner == owner, Input.status == Status.PROCESSING)
    return held if attempt is None else and_(held, Input.attempts == attempt)


def hold_claim(session: Session, *, input_id: int, owner: str, attempt: int | None) -> bool:
    """The fence before an attempt publishes its files: True when this owner still holds
    this attempt's claim, and the row is then locked until the transaction ends (a row lock
    on PostgreSQL, the write lock on SQLite), so no other worker can take it over while
    the files are put in place. False when the claim was lost: publish nothing."""
    result = session.execute(
        update(Input)
        .where(_held(input_id, owner, attempt))
        .values(lease_owner=owner)
        .execution_options(synchronize_session=False)
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]


def _finish(
    session: Session,
    input_id: int,
    owner: str,
    status: Status,
    *,
    attempt: int | None = None,
    **values: Any,
) -> bool:
    """Moves an input this owner holds (at this attempt, when given) to ``status``; False
    when the lease was lost."""
    if status.terminal:
        values["finished_at"] = utcnow()
    result = session.execute(
        update(Input)
        .where(_held(input_id, owner, attempt))
        .values(status=status, lease_owner=None, lease_expires=None, **values)
        .execution_options(synchronize_session=False)
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]


def complete(
    session: Session,
    *,
    input_id: int,
    owner: str,
    results: Sequence[Result],
    metadata: dict[str, Any],
    processing_ms: float,
    attempt: int | None = None,
) -> bool:
    """Records the results of an input and marks it done; False when the lease was lost
    (another worker took it over), in which case nothing is written."""
    if not _finish(
        session,
        input_id,
        owner,
        Status.DONE,
        attempt=attempt,
        reason=None,
        detail=None,
        processing_ms=processing_ms,
        **metadata,
    ):
        return False
    for result in results:
        result.input_id = input_id
        session.add(result)
    session.flush()
    return True


def reject(
    session: Session,
    *,
    input_id: int,
    owner: str,
    reason: RejectReason,
    detail: str,
    metadata: dict[str, Any] | None = None,
    attempt: int | None = None,
) -> bool:
    """Marks an input rejected (its own fault: never retried)."""
    return _finish(
        session,
        input_id,
        owner,
        Status.REJECTED,
        attempt=attempt,
        reason=reason,
        detail=detail,
        **(metadata or {}),
    )


def fail(
    session: Session,
    *,
    input_id: int,
    owner: str,
    reason: FailReason,
    detail: str,
    max_attempts: int,
    attempt: int | None = None,
) -> Status | None:
    """Records a failure of ours: back to the queue while attempts remain, else failed."""
    attempts = session.execute(select(Input.attempts).where(Input.id == input_id)).scalar_one()
    status = Status.FAILED if attempts >= max_attempts else Status.QUEUED
    if not _finish(session, input_id, owner, status, attempt=attempt, reason=reason, detail=detail):
        return None
    return status


def release(
    session: Session,
    *,
    input_id: int,
    owner: str,
    reason: FailReason,
    detail: str,
    attempt: int | None = None,
) -> bool:
    """Puts an input back in the queue without spending an attempt: the failure was the
    environment's (a full disk), not the input's nor ours to count against it."""
    return _finish(
        session,
        input_id,
        owner,
        Status.QUEUED,
        attempt=attempt,
        reason=reason,
        detail=detail,
        attempts=Input.attempts - 1,
    )


def status_counts(session: Session) -> dict[str, int]:
    """How many inputs are in each status (every status present, zero when none), at a
    cost that does not grow with the finished inputs (:mod:`cervixbatch.store.tallies`)."""
    return tallies.status_counts(session)
