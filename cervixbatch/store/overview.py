"""The queue at a glance, for ``cervixbatch status``: its oldest entry and latest failure."""

from __future__ import annotations

import dataclasses
import datetime as dt

from sqlalchemy import func, select, type_coerce
from sqlalchemy.orm import Session

from cervixbatch.store.hints import sqlite_index
from cervixbatch.store.schema import Input, Status, UTCDateTime, failed, status_is

__all__ = ["LastFailure", "last_failure", "oldest_queued"]


@dataclasses.dataclass(frozen=True, slots=True)
class LastFailure:
    """The input that failed most recently: which, why (a reason code), and when."""

    input_id: int
    reason: str | None
    at: dt.datetime | None


def oldest_queued(session: Session) -> dt.datetime | None:
    """When the input that has waited longest entered the queue; None when it is empty.

    One step down the partial index of queued inputs by ``queued_at``, however long the
    queue; rows that never had ``queued_at`` (none since migration 0006) are looked at
    only when no other is queued."""
    # typed, so that SQLite's text comes back as an aware datetime like PostgreSQL's
    earliest = type_coerce(func.min(Input.queued_at), UTCDateTime())
    first = select(earliest).where(status_is(Status.QUEUED))
    value = session.execute(sqlite_index(first, "ix_inputs_queued_at")).scalar_one()
    if value is None:
        entered = type_coerce(func.min(Input.created_at), UTCDateTime())
        value = session.execute(
            select(entered).where(status_is(Status.QUEUED), Input.queued_at.is_(None))
        ).scalar_one()
    assert value is None or isinstance(value, dt.datetime)
    return value


def last_failure(session: Session) -> LastFailure | None:
    """The latest input to end ``failed`` (when it did is known), if any: one step down
    the partial index of failed inputs, however many there are."""
    latest = (
        select(Input.id, Input.reason, Input.finished_at)
        .where(failed(), Input.finished_at.is_not(None))
        .order_by(Input.finished_at.desc(), Input.id.desc())
        .limit(1)
    )
    row = session.execute(sqlite_index(latest, "ix_inputs_failed")).first()
    if row is None:
        return None
    return LastFailure(input_id=int(row[0]), reason=row[1], at=row[2])
