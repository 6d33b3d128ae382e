"""The queue operations: register, claim, renew, complete, reject, fail, recover.

The database is the durable queue. Every function takes the session (the transaction)
it works in; callers decide the transaction's extent (one per batch). The same code runs
on SQLite (one writer at a time, statements atomic) and PostgreSQL (``FOR UPDATE SKIP
LOCKED``, so several workers never claim the same row).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import os
import secrets
import socket
from collections.abc import Sequence
from typing import Any

from sqlalchemy import and_, func, or_, select, update
from sqlalchemy.orm import Session

from cervixbatch.owner import OwnerState, ProcessOwner, owner_state, this_process
from cervixbatch.store.schema import Input, Result, Sighting, Status, utcnow

__all__ = [
    "ClaimedInput",
    "Registration",
    "claim",
    "complete",
    "expired_leases",
    "fail",
    "known_sighting",
    "make_owner",
    "owner_is_dead",
    "recover",
    "register",
    "reject",
    "release",
    "renew",
    "status_counts",
]


def make_owner() -> str:
    """A lease owner id unique to this process and runner: the process (host, boot, pid,
    start time) and a nonce, so that two runners of one process never share claims."""
    return f"{this_process().token()}:{secrets.token_hex(4)}"


def owner_is_dead(owner: str) -> bool:
    """True when ``owner`` is a process of this host that provably no longer runs."""
    process = ProcessOwner.parse(owner.rpartition(":")[0])
    if process is not None:
        return owner_state(process) is OwnerState.DEAD
    # An owner named before start times were (host:pid:nonce): the pid is all there is.
    host, _, rest = owner.partition(":")
    pid_text = rest.split(":", 1)[0]
    if host != socket.gethostname() or not pid_text.isdigit() or int(pid_text) == os.getpid():
        return False
    try:
        os.kill(int(pid_text), 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # alive, someone else's
        return False
    return False


@dataclasses.dataclass(frozen=True, slots=True)
class Registration:
    """The outcome of registering one file."""

    input_id: int
    created: bool  # False: these bytes were known already
    status: Status


@dataclasses.dataclass(frozen=True, slots=True)
class ClaimedInput:
    """An input taken for processing, with every path its bytes were seen at."""

    id: int
    sha256: str
    paths: tuple[str, ...]
    attempts: int
    created_at: dt.datetime | None = None  # when first found: latency is measured from here


def _insert(session: Session) -> Any:
    dialect = session.get_bind().dialect.name
    if dialect == "postgresql":
        from sqlalchemy.dialects import postgresql

        return postgresql.insert
    from sqlalchemy.dialects import sqlite

    return sqlite.insert


def known_sighting(session: Session, path: str, size: int, mtime_ns: int) -> Registration | None:
    """The input this exact (path, size, mtime) was seen as before, if any: such a file
    needs no hashing."""
    found = session.execute(
        select(Input.id, Input.status)
        .join(Sighting, Sighting.input_id == Input.id)
        .where(Sighting.path == path, Sighting.size_bytes == size, Sighting.mtime_ns == mtime_ns)
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
        .values(input_id=input_id, path=path, size_bytes=size, mtime_ns=mtime_ns, seen_at=now)
        .on_conflict_do_nothing(index_elements=["path", "size_bytes", "mtime_ns"])
    )
    return Registration(input_id=input_id, created=created, status=current)


def claim(session: Session, *, owner: str, limit: int, lease_seconds: float) -> list[ClaimedInput]:
    """Takes up to ``limit`` queued inputs (and any whose lease has expired), oldest first."""
    now = utcnow()
    takeable = (
        select(Input.id)
        .where(
            or_(
                Input.status == Status.QUEUED,
                and_(Input.status == Status.PROCESSING, Input.lease_expires < now),
            )
        )
        .order_by(Input.id)
        .limit(limit)
        .with_for_update(skip_locked=True)
        .scalar_subquery()
    )
    rows = session.execute(
        update(Input)
        .where(Input.id.in_(takeable))
        .values(
            status=Status.PROCESSING,
            lease_owner=owner,
            lease_expires=now + dt.timedelta(seconds=lease_seconds),
            attempts=Input.attempts + 1,
            started_at=now,
        )
        .returning(Input.id, Input.sha256, Input.path, Input.attempts, Input.created_at)
        .execution_options(synchronize_session=False)
    ).all()
    if not rows:
        return []
    ids = [int(r[0]) for r in rows]
    seen: dict[int, list[str]] = {i: [] for i in ids}
    for input_id, path in session.execute(
        select(Sighting.input_id, Sighting.path)
        .where(Sighting.input_id.in_(ids))
        .order_by(Sighting.id.desc())
    ):
        if path not in seen[input_id]:
            seen[input_id].append(path)
    claimed = []
    for input_id, sha256, path, attempts, created_at in sorted(rows, key=lambda r: int(r[0])):
        paths = [path, *[p for p in seen[int(input_id)] if p != path]]
        claimed.append(ClaimedInput(int(input_id), sha256, tuple(paths), int(attempts), created_at))
    return claimed


def renew(session: Session, *, owner: str, ids: Sequence[int], lease_seconds: float) -> int:
    """Extends this owner's leases on ``ids``; returns how many it still holds."""
    if not ids:
        return 0
    result = session.execute(
        update(Input)
        .where(Input.id.in_(ids), Input.lease_owner == owner, Input.status == Status.PROCESSING)
        .values(lease_expires=utcnow() + dt.timedelta(seconds=lease_seconds))
        .execution_options(synchronize_session=False)
    )
    return int(result.rowcount)  # type: ignore[attr-defined]


def _finish(session: Session, input_id: int, owner: str, status: Status, **values: Any) -> bool:
    """Moves an input this owner holds to ``status``; False when the lease was lost."""
    if status.terminal:
        values["finished_at"] = utcnow()
    result = session.execute(
        update(Input)
        .where(Input.id == input_id, Input.lease_owner == owner, Input.status == Status.PROCESSING)
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
) -> bool:
    """Records the results of an input and marks it done; False when the lease was lost
    (another worker took it over), in which case nothing is written."""
    if not _finish(
        session,
        input_id,
        owner,
        Status.DONE,
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
    reason: str,
    detail: str,
    metadata: dict[str, Any] | None = None,
) -> bool:
    """Marks an input rejected (its own fault: never retried)."""
    return _finish(
        session, input_id, owner, Status.REJECTED, reason=reason, detail=detail, **(metadata or {})
    )


def fail(
    session: Session,
    *,
    input_id: int,
    owner: str,
    reason: str,
    detail: str,
    max_attempts: int,
) -> Status | None:
    """Records a failure of ours: back to the queue while attempts remain, else failed."""
    attempts = session.execute(select(Input.attempts).where(Input.id == input_id)).scalar_one()
    status = Status.FAILED if attempts >= max_attempts else Status.QUEUED
    if not _finish(session, input_id, owner, status, reason=reason, detail=detail):
        return None
    return status


def release(session: Session, *, input_id: int, owner: str, reason: str, detail: str) -> bool:
    """Puts an input back in the queue without spending an attempt: the failure was the
    environment's (a full disk), not the input's nor ours to count against it."""
    return _finish(
        session,
        input_id,
        owner,
        Status.QUEUED,
        reason=reason,
        detail=detail,
        attempts=Input.attempts - 1,
    )


def recover(session: Session, *, max_attempts: int) -> tuple[int, int]:
    """Frees inputs whose owner died on this host or whose lease expired.

    Each such claim already counted as an attempt: an input that kept killing its worker
    ends ``failed`` instead of looping. Returns (requeued, failed).
    """
    now = utcnow()
    rows = session.execute(
        select(Input.id, Input.lease_owner, Input.lease_expires, Input.attempts).where(
            Input.status == Status.PROCESSING
        )
    ).all()
    requeued = failed = 0
    for input_id, owner, expires, attempts in rows:
        expired = expires is None or expires < now
        if not expired and not (owner and owner_is_dead(owner)):
            continue
        if attempts >= max_attempts:
            values: dict[str, Any] = {
                "status": Status.FAILED,
                "reason": "worker_died",
                "detail": f"the worker stopped while processing this input {attempts} times",
                "finished_at": now,
            }
            failed += 1
        else:
            values = {"status": Status.QUEUED}
            requeued += 1
        session.execute(
            update(Input)
            .where(Input.id == input_id, Input.status == Status.PROCESSING)
            .values(lease_owner=None, lease_expires=None, **values)
            .execution_options(synchronize_session=False)
        )
    return requeued, failed


def expired_leases(session: Session) -> int:
    """How many inputs are held by a worker whose lease ran out: claimable again."""
    return int(
        session.execute(
            select(func.count())
            .select_from(Input)
            .where(Input.status == Status.PROCESSING, Input.lease_expires < utcnow())
        ).scalar_one()
    )


def status_counts(session: Session) -> dict[str, int]:
    """How many inputs are in each status (every status present, zero when none)."""
    counts = {status.value: 0 for status in Status}
    for status, count in session.execute(select(Input.status, func.count()).group_by(Input.status)):
        counts[Status(status).value] = int(count)
    return counts
