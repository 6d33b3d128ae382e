"""How many inputs are in each status (and reason), at a cost that does not grow with
the history.

Counting ten million finished inputs reads ten million rows (or index entries) every
time; the queue's own work needs the active ones only. So the counts are kept: a trigger
on ``inputs`` (created by migration 0007) appends a delta row to ``input_tallies`` on
every insert, change of status or reason, and delete, inside the same transaction, so
the counts are exactly as consistent as the rows they count. Appending never waits on a
shared counter row, so two workers never block (or deadlock) on the counts. :func:`fold`
now and then sums the oldest deltas into one row per status and reason, so what there is
to add up stays small.
"""

from __future__ import annotations

from collections import Counter

from sqlalchemy import delete, func, insert, select
from sqlalchemy.orm import Session

from cervixbatch.store.schema import InputTally, Status

__all__ = ["FOLD_AT", "fold", "reason_counts", "status_counts"]

FOLD_AT = 64  # deltas kept before a fold is worth its writes
FOLD_ROWS = 2000  # deltas folded by one call: a bounded cost, however far behind


def status_counts(session: Session) -> dict[str, int]:
    """How many inputs are in each status (every status present, zero when none)."""
    counts = {status.value: 0 for status in Status}
    for status, total in session.execute(
        select(InputTally.status, func.sum(InputTally.delta)).group_by(InputTally.status)
    ):
        counts[Status(status).value] = int(total or 0)
    return counts


def reason_counts(session: Session) -> list[tuple[str, str | None, int]]:
    """Rejected and failed inputs by reason code: (status, reason, count), none zero."""
    terminal = [Status.REJECTED.value, Status.FAILED.value]
    rows = session.execute(
        select(InputTally.status, InputTally.reason, func.sum(InputTally.delta))
        .where(InputTally.status.in_(terminal))
        .group_by(InputTally.status, InputTally.reason)
    )
    return [(str(s), r, int(n)) for s, r, n in rows if n]


def fold(session: Session, *, rows: int = FOLD_ROWS) -> int:
    """Sums up to ``rows`` of the oldest deltas into one row per status and reason, when there are
    more than :data:`FOLD_AT`; returns how many deltas it folded. Rows another worker is
    folding at the same moment are skipped (PostgreSQL), never counted twice."""
    waiting = session.execute(
        select(func.count()).select_from(select(InputTally.id).limit(FOLD_AT + 1).subquery())
    ).scalar_one()
    if waiting <= FOLD_AT:
        return 0
    taken = session.execute(
        select(InputTally.id, InputTally.status, InputTally.reason, InputTally.delta)
        .order_by(InputTally.id)
        .limit(rows)
        .with_for_update(skip_locked=True)
    ).all()
    if not taken:
        return 0
    totals: Counter[tuple[str, str | None]] = Counter()
    for _, status, reason, delta in taken:
        totals[status, reason] += int(delta)
    session.execute(delete(InputTally).where(InputTally.id.in_([row[0] for row in taken])))
    folded = [{"status": s, "reason": r, "delta": d} for (s, r), d in totals.items() if d]
    if folded:
        session.execute(insert(InputTally), folded)
    return len(taken)
