"""What happens to an input file after the database says done or rejected: ``watch.after``.

Only files inside the inbox are ever moved or deleted; files that ``process`` was pointed
at elsewhere stay where they are. An archived file never overwrites another.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from pathlib import Path

import structlog
from sqlalchemy import update

from cervixbatch.config import AfterAction
from cervixbatch.store.db import Database
from cervixbatch.store.schema import Input

__all__ = ["dispose_of", "safe_name"]

log = structlog.get_logger(__name__)

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def safe_name(name: str, limit: int = 80) -> str:
    """A file name reduced to letters, digits, dot, dash and underscore."""
    cleaned = _UNSAFE.sub("_", name).strip("._") or "file"
    return cleaned[:limit]


def _inside(path: Path, root: Path) -> bool:
    try:
        path.parent.resolve().relative_to(root.resolve())
    except ValueError:
        return False
    return True


def dispose_of(
    input_id: int,
    paths: Sequence[Path],
    *,
    inbox: Path,
    archive: Path,
    after: AfterAction,
    db: Database,
) -> None:
    """Keeps, archives or deletes the input's files that lie in the inbox."""
    if after is AfterAction.KEEP:
        return
    handled = 0
    for path in paths:
        if not _inside(path, inbox) or path.is_symlink() or not path.is_file():
            continue
        try:
            if after is AfterAction.DELETE:
                path.unlink()
            else:
                _archive(path, input_id, archive)
            handled += 1
        except OSError as exc:
            log.warning(
                "disposal_failed", input_id=input_id, action=after.value, error=exc.strerror
            )
    if handled:
        disposition = "deleted" if after is AfterAction.DELETE else "archived"
        with db.session() as session:
            session.execute(
                update(Input).where(Input.id == input_id).values(disposition=disposition)
            )


def _archive(path: Path, input_id: int, archive: Path) -> None:
    archive.mkdir(parents=True, exist_ok=True, mode=0o750)
    base = f"{input_id:08d}-{safe_name(path.name)}"
    for attempt in range(1000):
        target = archive / (base if attempt == 0 else f"{base}.{attempt}")
        try:
            # link + unlink never overwrites an existing file (rename would).
            os.link(path, target)
        except FileExistsError:
            continue
        except OSError:
            # another filesystem: copy is not atomic, so refuse to overwrite via O_EXCL
            _copy_exclusive(path, target)
        path.unlink()
        return
    raise FileExistsError(f"no free archive name for input {input_id}")


def _copy_exclusive(source: Path, target: Path) -> None:
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o640)
    with os.fdopen(fd, "wb") as out, source.open("rb") as src:
        while chunk := src.read(1 << 20):
            out.write(chunk)
        out.flush()
        os.fsync(out.fileno())
