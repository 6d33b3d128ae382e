"""What an input's files in the inbox were when seen, and what became of them."""

from __future__ import annotations

import dataclasses

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from cervixbatch.store.schema import Disposition, Input, Sighting

__all__ = ["SeenFile", "record_disposition", "seen_files"]


@dataclasses.dataclass(frozen=True, slots=True)
class SeenFile:
    """One sighting of an input's bytes: where, and the file's identity then."""

    path: str
    size: int
    mtime_ns: int
    inode: int  # 0: not known

    def is_still(self, size: int, mtime_ns: int, inode: int) -> bool:
        """Whether a file with this (size, mtime, inode) is still the file that was seen."""
        same_inode = self.inode in {0, inode}
        return size == self.size and mtime_ns == self.mtime_ns and same_inode


def seen_files(session: Session, input_id: int) -> list[SeenFile]:
    """Every sighting of an input, oldest first."""
    rows = session.execute(
        select(Sighting.path, Sighting.size_bytes, Sighting.mtime_ns, Sighting.inode)
        .where(Sighting.input_id == input_id)
        .order_by(Sighting.id)
    )
    return [SeenFile(str(p), int(s), int(m), int(i or 0)) for p, s, m, i in rows]


def record_disposition(session: Session, input_id: int, disposition: Disposition) -> None:
    """Records that an input's inbox files were archived or deleted."""
    session.execute(update(Input).where(Input.id == input_id).values(disposition=disposition))
