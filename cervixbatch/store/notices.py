"""The webhook notices table: written with the finished input, sent until delivered."""

from __future__ import annotations

import dataclasses
import datetime as dt

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from cervixbatch.store.schema import WebhookNotice, utcnow

__all__ = ["DueNotice", "due_notices", "enqueue_notice", "mark_attempt", "pending_notices"]


@dataclasses.dataclass(frozen=True, slots=True)
class DueNotice:
    """A notice whose next attempt is due."""

    id: int
    body: str
    attempts: int


def enqueue_notice(session: Session, *, input_id: int, body: str) -> None:
    """Adds a notice in the caller's transaction (the one that finishes the input)."""
    session.add(WebhookNotice(input_id=input_id, body=body, next_attempt_at=utcnow()))


def due_notices(session: Session, *, now: dt.datetime, limit: int = 50) -> list[DueNotice]:
    """Undelivered notices whose next attempt is due, oldest first."""
    rows = session.execute(
        select(WebhookNotice.id, WebhookNotice.body, WebhookNotice.attempts)
        .where(WebhookNotice.delivered_at.is_(None), WebhookNotice.next_attempt_at <= now)
        .order_by(WebhookNotice.next_attempt_at, WebhookNotice.id)
        .limit(limit)
    )
    return [DueNotice(int(i), str(body), int(attempts)) for i, body, attempts in rows]


def mark_attempt(
    session: Session,
    notice_id: int,
    *,
    delivered: bool,
    status: int | None,
    error: str | None,
    next_attempt_at: dt.datetime,
) -> None:
    """Records one attempt: delivered, or when to try again and why it failed."""
    values: dict[str, object] = {
        "attempts": WebhookNotice.attempts + 1,
        "last_status": status,
        "last_error": error,
    }
    if delivered:
        values["delivered_at"] = utcnow()
    else:
        values["next_attempt_at"] = next_attempt_at
    session.execute(update(WebhookNotice).where(WebhookNotice.id == notice_id).values(**values))


def pending_notices(session: Session) -> int:
    """How many notices are not delivered yet."""
    count = session.execute(
        select(func.count()).where(WebhookNotice.delivered_at.is_(None))
    ).scalar_one()
    return int(count)
