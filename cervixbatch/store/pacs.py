"""What was fetched from a DICOMweb PACS, and how far each QIDO-RS walk has come."""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import select
from sqlalchemy.orm import Session

from cervixbatch.store.schema import PacsCursor, PacsInstance, utcnow

__all__ = ["fetched_among", "get_cursor", "record_fetched", "set_cursor"]


def fetched_among(session: Session, sop_instance_uids: Iterable[str]) -> set[str]:
    """Which of these instances were fetched already."""
    uids = list(dict.fromkeys(sop_instance_uids))
    found: set[str] = set()
    for start in range(0, len(uids), 500):  # bounded IN lists
        chunk = uids[start : start + 500]
        found.update(
            session.execute(
                select(PacsInstance.sop_instance_uid).where(
                    PacsInstance.sop_instance_uid.in_(chunk)
                )
            ).scalars()
        )
    return found


def record_fetched(
    session: Session, *, sop_instance_uid: str, study_uid: str, series_uid: str, file_name: str
) -> None:
    """Notes an instance as fetched (its file is in the inbox by now)."""
    if session.get(PacsInstance, sop_instance_uid) is None:
        session.add(
            PacsInstance(
                sop_instance_uid=sop_instance_uid,
                study_uid=study_uid,
                series_uid=series_uid,
                file_name=file_name,
            )
        )


def get_cursor(session: Session, name: str) -> str | None:
    """The cursor's value (a YYYYMMDD date), or None before the first walk."""
    row = session.get(PacsCursor, name)
    return row.value if row is not None else None


def set_cursor(session: Session, name: str, value: str) -> None:
    """Moves the cursor."""
    row = session.get(PacsCursor, name)
    if row is None:
        session.add(PacsCursor(name=name, value=value, updated_at=utcnow()))
    else:
        row.value, row.updated_at = value, utcnow()
