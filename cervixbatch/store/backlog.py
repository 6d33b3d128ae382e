"""What a backfill asks of the database about its own inputs."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

from sqlalchemy import select
from sqlalchemy.orm import Session

from cervixbatch.store.schema import Input, Status

__all__ = ["statuses_of"]

_CHUNK = 500  # ids per IN (…): well under every driver's bound-parameter limit


def statuses_of(session: Session, ids: Sequence[int]) -> Iterator[tuple[Status, str | None]]:
    """The status and reason of each of ``ids`` (in no particular order)."""
    for start in range(0, len(ids), _CHUNK):
        chunk = ids[start : start + _CHUNK]
        for status, reason in session.execute(
            select(Input.status, Input.reason).where(Input.id.in_(chunk))
        ):
            yield Status(status), reason
