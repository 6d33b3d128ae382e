"""What happens to an input file after its result is committed: ``watch.after``.

"Is this file mine to delete?" has one answer, here. A file is archived or deleted only
when all of these hold:

- this worker's own commit of the input took (the caller passes only those);
- the input is done, or rejected for what its content *is* (not an image, too large…):
  a file rejected as truncated, empty or unreadable may be a copy still being written,
  so it stays, and is processed again when it changes;
- it lies in the inbox (files ``process`` was pointed at elsewhere stay where they are);
- it is still the file that was registered: same size, mtime and inode. The check is
  made on the file itself after moving it aside under a hidden name (one atomic rename),
  so a file that replaced it a moment before is never the one removed; such a file is
  put back at once. A crash between the move and the removal leaves the hidden file,
  which the next start puts back (:func:`restore_held_files`).

An archived file never overwrites another, and reaches the disk (folders fsynced) before
the inbox copy goes.
"""

from __future__ import annotations

import dataclasses
import enum
import os
import re
import shutil
import stat
from collections.abc import Sequence
from pathlib import Path

import structlog

from cervixbatch.config import AfterAction
from cervixbatch.errors import RejectReason
from cervixbatch.outputs.atomic import FILE_MODE, atomic_file, fsync_dir
from cervixbatch.outputs.outbox import DIR_MODE
from cervixbatch.owner import OwnerState, owned_name, owner_state, parse_owned_name
from cervixbatch.store.db import Database
from cervixbatch.store.disposition import SeenFile, record_disposition, seen_files
from cervixbatch.store.schema import Disposition

__all__ = [
    "FINAL_REJECTIONS",
    "HELD_PREFIX",
    "dispose_batch",
    "dispose_of",
    "may_dispose",
    "restore_held_files",
    "safe_name",
]

log = structlog.get_logger(__name__)

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")
# Hidden (the watcher ignores it) and owned: a file moved aside while it is disposed of.
HELD_PREFIX = ".cervixbatch-held-"
# Rejections about what the content is (``RejectReason.final``). Any other reason
# (truncated, empty_file, unreadable, changed, one added later) keeps the file.
FINAL_REJECTIONS = frozenset(reason for reason in RejectReason if reason.final)


class _FileOutcome(enum.StrEnum):
    """What disposing of one registered file came to."""

    DISPOSED = "disposed"
    CHANGED = "changed"  # not the file registered: a new one at the same place
    GONE = "gone"


class _HeldOutcome(enum.StrEnum):
    """What a start did with a file a disposal had moved aside."""

    RESTORED = "restored"
    LEFT = "left"  # its owner may still run
    IGNORED = "ignored"  # not a name this package gives


def safe_name(name: str, limit: int = 80) -> str:
    """A file name reduced to letters, digits, dot, dash and underscore."""
    cleaned = _UNSAFE.sub("_", name).strip("._") or "file"
    return cleaned[:limit]


def may_dispose(reason: str | None) -> bool:
    """Whether an input that ended with ``reason`` (None: done) may leave the inbox."""
    return reason is None or reason in FINAL_REJECTIONS


def _inside(path: Path, root: Path) -> bool:
    try:
        path.parent.resolve().relative_to(root.resolve())
    except ValueError:
        return False
    return True


def dispose_of(
    input_id: int,
    *,
    reason: str | None,
    inbox: Path,
    archive: Path,
    after: AfterAction,
    db: Database,
) -> int:
    """Archives or deletes one input's inbox files that are still the ones registered;
    returns how many (see :func:`dispose_batch`)."""
    handled = dispose_batch([(input_id, reason)], inbox=inbox, archive=archive, after=after, db=db)
    return handled.get(input_id, 0)


def dispose_batch(
    inputs: Sequence[tuple[int, str | None]],
    *,
    inbox: Path,
    archive: Path,
    after: AfterAction,
    db: Database,
) -> dict[int, int]:
    """Archives or deletes the inbox files, still the ones registered, of each input (its
    id, and its rejection reason or None when done), then records what was removed in one
    transaction; returns the files removed per input.

    Call only after this worker's own commit of the inputs took, durably
    (``db.session(durable=True)``): the files go after that commit is on disk. The record
    made here follows the removal, so it needs no fsync of its own (and the batch's files
    are removed with no commit between them)."""
    if after is AfterAction.KEEP:
        return {}
    where = _Where(inbox, archive, after, db)
    handled: dict[int, int] = {}
    for input_id, reason in inputs:
        try:
            files = _dispose_input(input_id, reason, where)
        except Exception as exc:  # noqa: BLE001 - the result stands; the file stays
            log.warning("disposal_failed", input_id=input_id, error=type(exc).__name__)
            continue
        if files:
            handled[input_id] = files
    if handled:
        disposition = Disposition.DELETED if after is AfterAction.DELETE else Disposition.ARCHIVED
        with db.session() as session:
            for input_id in handled:
                record_disposition(session, input_id, disposition)
        for input_id, files in handled.items():
            log.info("input_disposed", input_id=input_id, action=disposition, files=files)
    return handled


@dataclasses.dataclass(frozen=True, slots=True)
class _Where:
    """Where a batch's files are disposed of, and how: what every input of it shares."""

    inbox: Path
    archive: Path
    after: AfterAction
    db: Database


def _dispose_input(input_id: int, reason: str | None, where: _Where) -> int:
    """Removes one input's files (not recorded); returns how many."""
    if not may_dispose(reason):
        log.info("input_file_kept", input_id=input_id, why="may_be_incomplete", reason=reason)
        return 0
    with where.db.read_session() as session:
        seen = seen_files(session, input_id)
    handled = changed = 0
    for path_text in dict.fromkeys(s.path for s in seen):
        path = Path(path_text)
        if not _inside(path, where.inbox):
            continue
        identities = [s for s in seen if s.path == path_text]
        try:
            outcome = _dispose_file(path, identities, input_id, where.after, where.archive)
        except OSError as exc:
            log.warning(
                "disposal_failed", input_id=input_id, action=where.after.value, error=exc.strerror
            )
            continue
        handled += outcome is _FileOutcome.DISPOSED
        changed += outcome is _FileOutcome.CHANGED
    if changed:  # a new file at the same place: it is registered and processed on its own
        log.info("input_file_kept", input_id=input_id, why="file_changed", files=changed)
    return handled


def _is_registered(info: os.stat_result, identities: Sequence[SeenFile]) -> bool:
    return stat.S_ISREG(info.st_mode) and any(
        s.is_still(info.st_size, info.st_mtime_ns, info.st_ino) for s in identities
    )


def _dispose_file(
    path: Path, identities: Sequence[SeenFile], input_id: int, after: AfterAction, archive: Path
) -> _FileOutcome:
    """Removes (or archives) one file if it is still the one registered."""
    try:
        before = path.lstat()
    except FileNotFoundError:
        return _FileOutcome.GONE
    if not _is_registered(before, identities):
        return _FileOutcome.CHANGED
    held = path.with_name(owned_name(HELD_PREFIX, path.name))
    try:
        path.rename(held)  # atomic: from here on, what is checked is what is removed
    except FileNotFoundError:
        return _FileOutcome.GONE
    moved = held.lstat()
    if moved.st_ino != before.st_ino or not _is_registered(moved, identities):
        _put_back(held, path)  # replaced between the look and the move
        return _FileOutcome.CHANGED
    try:
        if after is AfterAction.DELETE:
            held.unlink()
        else:
            _archive(held, path.name, input_id, archive)
    except OSError:
        _put_back(held, path)  # e.g. the archive is full: the file stays in the inbox
        raise
    fsync_dir(path.parent)
    return _FileOutcome.DISPOSED


def _put_back(held: Path, path: Path) -> Path:
    """Returns a file moved aside to ``path`` (or beside it, never over another file)."""
    for attempt in range(1000):
        target = path if attempt == 0 else path.with_name(f"{path.stem}.{attempt}{path.suffix}")
        try:
            os.link(held, target)
        except FileExistsError:
            continue
        held.unlink()
        return target
    raise FileExistsError(f"no free name to put {held.name} back")


def restore_held_files(inbox: Path) -> int:
    """Puts back files that a process killed mid-disposal left moved aside; returns how
    many. Files of a disposal that may still run (on this machine, elsewhere, or of an
    owner that cannot be judged) are left alone; so is any name this package does not
    give: whatever lies in the inbox, this never raises for it."""
    restored = left = 0
    if not inbox.is_dir():
        return 0
    try:
        for held in inbox.rglob(HELD_PREFIX + "*"):
            try:
                outcome = _restore_held(held)
            except (OSError, ValueError):
                outcome = _HeldOutcome.LEFT
            restored += outcome is _HeldOutcome.RESTORED
            left += outcome is _HeldOutcome.LEFT
    except OSError as exc:  # a folder gone or unreadable while it was walked
        log.warning("inbox_walk_failed", error=exc.strerror)
    if restored:
        log.warning("inbox_files_restored", files=restored)
    if left:
        log.info("inbox_files_left_held", files=left, why="owner_alive_or_unknown")
    return restored


def _restore_held(held: Path) -> _HeldOutcome:
    """Puts back one held file whose disposal died with its owner."""
    parsed = parse_owned_name(held.name, HELD_PREFIX)
    if parsed is None or held.is_symlink() or not held.is_file():
        return _HeldOutcome.IGNORED
    owner, original = parsed
    if owner_state(owner) is not OwnerState.DEAD:
        return _HeldOutcome.LEFT
    _put_back(held, held.with_name(original))
    fsync_dir(held.parent)
    return _HeldOutcome.RESTORED


def _archive(held: Path, name: str, input_id: int, archive: Path) -> None:
    archive.mkdir(parents=True, exist_ok=True, mode=DIR_MODE)
    base = f"{input_id:08d}-{safe_name(name)}"
    for attempt in range(1000):
        target = archive / (base if attempt == 0 else f"{base}.{attempt}")
        try:
            _link_or_copy(held, target)
        except FileExistsError:
            continue
        fsync_dir(archive)  # the archived copy is durable before the inbox copy goes
        held.unlink()
        return
    raise FileExistsError(f"no free archive name for input {input_id}")


def _link_or_copy(held: Path, target: Path) -> None:
    """``held``'s file under ``target``, never over another file (FileExistsError)."""
    try:
        # link + unlink never overwrites an existing file (rename would).
        os.link(held, target)
    except FileExistsError:
        raise
    except OSError:
        # another filesystem: a copy, written atomically under an owned temp name, so a
        # crash never leaves part of a photo under an archive name
        with atomic_file(target, mode=FILE_MODE, exclusive=True) as out, held.open("rb") as src:
            shutil.copyfileobj(src, out, 1 << 20)
