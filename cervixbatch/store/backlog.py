"""What a backfill asks of the database about its own inputs."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from cervixbatch.store.runs import latest_run_only
from cervixbatch.store.schema import Input, Result, Status

__all__ = ["done_by_other_pair", "statuses_of"]

_CHUNK = 500  # ids per IN (…): well under every driver's bound-parameter limit


def statuses_of(session: Session, ids: Sequence[int]) -> Iterator[tuple[Status, str | None]]:
    """The status and reason of each of ``ids`` (in no particular order)."""
    for start in range(0, len(ids), _CHUNK):
        chunk = ids[start : start + _CHUNK]
        for status, reason in session.execute(
            select(Input.status, Input.reason).where(Input.id.in_(chunk))
        ):
            yield Status(status), reason


def done_by_other_pair(session: Session, ids: Sequence[int], pair: tuple[str, str]) -> list[int]:
    """Those of ``ids`` whose latest run was made by another (cervix, lesion) pair of
    model versions than ``pair``."""
    cervix, lesion = pair
    other: set[int] = set()
    for start in range(0, len(ids), _CHUNK):
        chunk = ids[start : start + _CHUNK]
        other.update(
            int(input_id)
            for input_id in session.scalars(
                select(Result.input_id)
                .where(
                    Result.input_id.in_(chunk),
                    latest_run_only(),
                    or_(Result.cervix_model != cervix, Result.lesion_model != lesion),
                )
                .distinct()
            )
        )
    return sorted(other)
