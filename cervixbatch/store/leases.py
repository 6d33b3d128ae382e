"""Leases: who holds a claimed input, until when, and taking claims over from the dead.

A claim is a lease with an owner (host, boot, pid, process start time, a nonce) and an
expiry computed with the database's clock. The owner's lease keeper renews it while it
works; a worker that dies stops renewing, and once the lease runs out any worker may take
its inputs over. Every takeover and every reset is a compare-and-set on the owner and
expiry that were read, so a claim renewed or taken by someone else meanwhile is never
undone.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import secrets
from collections.abc import Sequence
from typing import Any

import structlog
from sqlalchemy import ColumnElement, TextClause, and_, func, or_, select, text, update
from sqlalchemy.orm import Session

from cervixbatch.errors import FailReason
from cervixbatch.owner import OwnerState, ProcessOwner, owner_state, this_process
from cervixbatch.store import tallies
from cervixbatch.store.clock import db_now, db_now_plus
from cervixbatch.store.schema import LIVE_SQL, Input, Sighting, Status, status_is, utcnow

__all__ = [
    "ClaimedInput",
    "claim",
    "expired_leases",
    "make_owner",
    "owner_is_dead",
    "recover",
    "renew",
]

log = structlog.get_logger(__name__)

FOLD_EVERY = 16  # claims of this process between two looks at the counts' deltas
_claims = 0


def make_owner() -> str:
    """A lease owner id unique to this process and runner: the process (host, boot, pid,
    start time) and a nonce, so that two runners of one process never share claims."""
    return f"{this_process().token()}:{secrets.token_hex(4)}"


def owner_is_dead(owner: str) -> bool:
    """True when ``owner`` is a process that provably no longer runs (see
    :mod:`cervixbatch.owner`: judged by machine id, boot id and pid namespace). An owner
    named before start times were (``host:pid:nonce``) carries only a host name, which
    proves no machine: it is never judged dead; its lease runs out instead."""
    process = ProcessOwner.parse(owner.rpartition(":")[0])
    return process is not None and owner_state(process) is OwnerState.DEAD


@dataclasses.dataclass(frozen=True, slots=True)
class ClaimedInput:
    """An input taken for processing, with every path its bytes were seen at."""

    id: int
    sha256: str
    paths: tuple[str, ...]
    attempts: int
    created_at: dt.datetime | None = None  # when first found: latency is measured from here


def claim(
    session: Session, *, owner: str, limit: int, lease_seconds: float, max_attempts: int
) -> list[ClaimedInput]:
    """Takes up to ``limit`` queued inputs (and any whose lease has expired), oldest first.

    Expiry is judged by the database's clock. A takeover is a compare-and-set: the row is
    taken only if its owner and expiry are still the ones read, so a claim renewed or taken
    by someone else in between is left alone. Taking a claim over counts an attempt; an
    expired claim that has had ``max_attempts`` already (its input took down that many
    workers) ends ``failed`` instead, and is never claimed again.

    An input whose worker died with it (an expired claim, or one :func:`recover` put back)
    is a suspect: it is claimed alone, by a worker that holds nothing else, and that
    worker claims nothing more until it is done with it (its row says ``worker_died``
    meanwhile) — so an input that kills its worker takes down no batch mates, nor the
    batches a pipelined worker has in flight, and spends no attempts of theirs.

    The queries read the live rows only (see :func:`_candidates`): their cost does not
    grow with the finished inputs behind them.
    """
    held = session.execute(
        select(Input.reason).where(status_is(Status.PROCESSING), Input.lease_owner == owner)
    ).all()
    if any(reason == FailReason.WORKER_DIED.value for (reason,) in held):
        return []  # a suspect in hand runs alone in this worker, batches in flight too
    rows: list[tuple[Any, ...]] = []
    while len(rows) < limit:
        candidates = _candidates(session, limit - len(rows))
        alone = not rows and not held  # a suspect is taken only by a worker holding nothing
        chosen, retired = _choose(session, candidates, max_attempts, alone=alone)
        rows.extend(_take(session, owner, chosen, lease_seconds))
        if not retired or any(_suspect(c) for c in chosen):
            break  # a retired input left room: look again, else this is all there is
    global _claims  # noqa: PLW0603 - one count per process, for :data:`FOLD_EVERY`
    _claims += 1
    if _claims % FOLD_EVERY == 1:
        tallies.fold(session)  # the counts' deltas this work appended, summed now and then
    return _with_paths(session, rows)


def _candidates(session: Session, limit: int) -> list[Any]:
    """The oldest ``limit`` inputs that may be claimed, locked (PostgreSQL: rows another
    claim holds are skipped), read in id order from an index of live inputs only: never
    the primary key walked past the finished inputs, as one ``OR`` query did. PostgreSQL
    walks ``ix_inputs_active`` (its condition written out, so the planner can prove it);
    SQLite, which has no statistics and would sort every queued row given an ``IN``,
    reads the queued and the expired processing inputs apart, each a range of
    ``ix_inputs_status_id`` in id order."""
    columns = (
        Input.id,
        Input.status,
        Input.lease_owner,
        Input.lease_expires,
        Input.attempts,
        Input.reason,
    )

    def oldest(*where: ColumnElement[bool] | TextClause) -> list[Any]:
        return list(
            session.execute(
                select(*columns)
                .where(*where)
                .order_by(Input.id)
                .limit(limit)
                .with_for_update(skip_locked=True)
            )
        )

    expired = Input.lease_expires < db_now()
    if session.get_bind().dialect.name == "postgresql":  # one statement, its plan proven
        return oldest(text(f"inputs.{LIVE_SQL}"), or_(status_is(Status.QUEUED), expired))
    found = oldest(status_is(Status.QUEUED)) + oldest(status_is(Status.PROCESSING), expired)
    return sorted(found, key=lambda c: int(c[0]))[:limit]


def _suspect(candidate: Any) -> bool:
    """The candidate's last worker died holding it: an expired claim, or put back by
    :func:`recover`."""
    status, reason = Status(candidate[1]), candidate[5]
    return status is Status.PROCESSING or reason == FailReason.WORKER_DIED.value


def _choose(
    session: Session, candidates: Sequence[Any], max_attempts: int, *, alone: bool
) -> tuple[list[Any], int]:
    """The candidates to claim together: the oldest inputs up to the first suspect, or a
    suspect alone (when ``alone``: nothing is claimed yet). A suspect that has had
    ``max_attempts`` is retired as ``failed`` on the way; returns (chosen, retired)."""
    chosen: list[Any] = []
    retired = 0
    for candidate in candidates:
        if not _suspect(candidate):
            chosen.append(candidate)
            continue
        input_id, status, previous, expires, attempts, _ = candidate
        if Status(status) is Status.PROCESSING and attempts >= max_attempts:
            retired += _give_up(session, int(input_id), previous, expires, attempts)
            continue
        if alone and not chosen:
            chosen.append(candidate)
        break
    return chosen, retired


def _take(
    session: Session, owner: str, chosen: Sequence[Any], lease_seconds: float
) -> list[tuple[Any, ...]]:
    """Claims the chosen candidates that are still as read; returns the rows taken."""
    taking = update(Input).values(
        status=Status.PROCESSING,
        lease_owner=owner,
        lease_expires=db_now_plus(lease_seconds),
        attempts=Input.attempts + 1,
        started_at=utcnow(),
    )
    returning = (Input.id, Input.sha256, Input.path, Input.attempts, Input.created_at)
    queued = [int(c[0]) for c in chosen if Status(c[1]) is Status.QUEUED]
    rows: list[tuple[Any, ...]] = []
    if queued:
        rows.extend(
            tuple(row)
            for row in session.execute(
                taking.where(Input.id.in_(queued), Input.status == Status.QUEUED)
                .returning(*returning)
                .execution_options(synchronize_session=False)
            )
        )
    for input_id, status, previous, expires, *_ in chosen:
        if Status(status) is not Status.PROCESSING:
            continue
        taken = session.execute(
            taking.values(reason=FailReason.WORKER_DIED)  # a suspect in hand (see claim)
            .where(Input.id == input_id, _same_claim(previous, expires))
            .returning(*returning)
            .execution_options(synchronize_session=False)
        ).all()
        if taken:
            log.warning("lease_taken_over", input_id=int(input_id), previous_owner=previous)
        rows.extend(tuple(row) for row in taken)
    return rows


def _give_up(
    session: Session,
    input_id: int,
    owner: str | None,
    expires: dt.datetime | None,
    attempts: int,
) -> bool:
    """Ends an input whose worker stopped ``attempts`` times ``failed`` (worker_died), if
    its claim is still the one read; True when it did."""
    result = session.execute(
        update(Input)
        .where(Input.id == input_id, _same_claim(owner, expires))
        .values(lease_owner=None, lease_expires=None, **_worker_died(attempts))
        .execution_options(synchronize_session=False)
    )
    if not result.rowcount:  # type: ignore[attr-defined]
        return False
    log.warning("input_gave_up", input_id=input_id, reason=FailReason.WORKER_DIED.value)
    return True


_BACK = {"status": Status.QUEUED, "finished_at": None}


def _worker_died(attempts: int) -> dict[str, Any]:
    """The row of an input that took down its worker ``attempts`` times."""
    return {
        "status": Status.FAILED,
        "reason": FailReason.WORKER_DIED,
        "detail": f"the worker stopped while processing this input {attempts} times",
        "finished_at": utcnow(),
    }


def _same_claim(owner: str | None, expires: dt.datetime | None) -> ColumnElement[bool]:
    """The row is still the processing claim that was read: same owner, same expiry."""
    return and_(
        Input.status == Status.PROCESSING,
        Input.lease_owner.is_(None) if owner is None else Input.lease_owner == owner,
        Input.lease_expires.is_(None) if expires is None else Input.lease_expires == expires,
    )


def _with_paths(session: Session, rows: Sequence[tuple[Any, ...]]) -> list[ClaimedInput]:
    """The claimed rows, each with every path its bytes were seen at (newest first)."""
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
    """Extends this owner's leases on ``ids`` (database clock); returns how many it still
    holds."""
    if not ids:
        return 0
    result = session.execute(
        update(Input)
        .where(Input.id.in_(ids), Input.lease_owner == owner, Input.status == Status.PROCESSING)
        .values(lease_expires=db_now_plus(lease_seconds))
        .execution_options(synchronize_session=False)
    )
    return int(result.rowcount)  # type: ignore[attr-defined]


def recover(session: Session, *, max_attempts: int) -> tuple[int, int]:
    """Frees inputs whose owner died on this host or whose lease expired (database clock).

    Each such claim already counted as an attempt: an input that kept killing its worker
    ends ``failed`` instead of looping; the others go back marked ``worker_died``, to be
    claimed alone (see :func:`claim`). Every reset is a compare-and-set on the owner and
    expiry read, so a claim made or renewed meanwhile is never undone. Returns (requeued,
    failed).
    """
    expired = or_(Input.lease_expires.is_(None), Input.lease_expires < db_now())
    rows = session.execute(
        select(Input.id, Input.lease_owner, Input.lease_expires, Input.attempts, expired).where(
            Input.status == Status.PROCESSING
        )
    ).all()
    requeued = failed = 0
    for input_id, owner, expires, attempts, is_expired in rows:
        if not is_expired and not (owner and owner_is_dead(owner)):
            continue
        gave_up = attempts >= max_attempts
        # put back as a suspect (claimed alone), or failed: it took down max_attempts workers
        values = _worker_died(attempts) if gave_up else {**_worker_died(attempts), **_BACK}
        result = session.execute(
            update(Input)
            .where(Input.id == input_id, _same_claim(owner, expires))
            .values(lease_owner=None, lease_expires=None, **values)
            .execution_options(synchronize_session=False)
        )
        if result.rowcount:  # type: ignore[attr-defined]
            failed += gave_up
            requeued += not gave_up
    tallies.fold(session)
    return requeued, failed


def expired_leases(session: Session) -> int:
    """How many inputs are held by a worker whose lease ran out: claimable again."""
    return int(
        session.execute(
            select(func.count())
            .select_from(Input)
            .where(Input.status == Status.PROCESSING, Input.lease_expires < db_now())
        ).scalar_one()
    )
