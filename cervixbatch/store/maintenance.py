"""The database's own checks, and the output files every result names (``db check``)."""

from __future__ import annotations

import dataclasses

from sqlalchemy import select, text
from sqlalchemy.orm import Session

from cervixbatch.store.schema import Result

__all__ = ["NamedOutput", "foreign_key_problems", "named_outputs", "sqlite_integrity"]

OUTPUT_KINDS = (
    ("cervix_mask", Result.cervix_mask_path),
    ("lesion_mask", Result.lesion_mask_path),
    ("overlay", Result.overlay_path),
    ("crop", Result.crop_path),
    ("dicom_seg", Result.dicom_seg_path),
    ("dicom_sc", Result.dicom_sc_path),
    ("dicom_sr", Result.dicom_sr_path),
)


@dataclasses.dataclass(frozen=True, slots=True)
class NamedOutput:
    """One output file a result names."""

    result_id: int
    input_id: int
    kind: str  # cervix_mask, lesion_mask, overlay, crop, dicom_seg, dicom_sc, dicom_sr
    path: str


def sqlite_integrity(session: Session, *, max_errors: int = 100) -> list[str]:
    """SQLite's full ``integrity_check``: an empty list when the file is sound."""
    rows = [str(row[0]) for row in session.execute(text(f"PRAGMA integrity_check({max_errors})"))]
    return [] if rows == ["ok"] else rows


def foreign_key_problems(session: Session) -> int:
    """SQLite: rows that point at a row that does not exist."""
    return len(session.execute(text("PRAGMA foreign_key_check")).all())


def named_outputs(
    session: Session, *, after_id: int, limit: int
) -> tuple[list[NamedOutput], int, int]:
    """The files named by one page of results whose outputs were not purged.

    Returns the files, the last result id of the page (0 when the page is empty) and how
    many results were purged on the way (their files are gone on purpose).
    """
    rows = session.execute(
        select(Result.id, Result.input_id, Result.outputs_purged_at, *[c for _, c in OUTPUT_KINDS])
        .where(Result.id > after_id)
        .order_by(Result.id)
        .limit(limit)
    ).all()
    outputs: list[NamedOutput] = []
    purged = 0
    for row in rows:
        result_id, input_id, purged_at, *paths = row
        if purged_at is not None:
            purged += 1
            continue
        outputs.extend(
            NamedOutput(int(result_id), int(input_id), kind, str(path))
            for (kind, _), path in zip(OUTPUT_KINDS, paths, strict=True)
            if path
        )
    last = int(rows[-1][0]) if rows else 0
    return outputs, last, purged
