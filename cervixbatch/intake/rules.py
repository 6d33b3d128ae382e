"""The one rule for "is this an input?", and the one walker that applies it.

Every regular file under a drop folder is an input except: hidden names, copy tools' temp
names, symlinks (never followed), things that are not regular files (FIFOs, sockets,
devices), files nested deeper than :data:`MAX_DEPTH` folders, and the service's own
outbox, archive and database should they lie inside the folder. The daemon's start-up
scan and rescans, its watchdog events, ``cervixbatch process`` and ``report --ignored``
all ask :class:`InputRule`, so what one of them takes, the others take too.
"""

from __future__ import annotations

import dataclasses
import enum
import os
import stat
from collections.abc import Iterator, Sequence
from pathlib import Path, PurePath
from typing import TYPE_CHECKING

from cervixbatch.config import sqlite_file

if TYPE_CHECKING:
    from cervixbatch.config import Config

__all__ = [
    "MAX_DEPTH",
    "Entry",
    "IgnoreReason",
    "InputRule",
    "depth_exceeded",
    "name_reason",
    "own_paths",
]

# Folders nested deeper than this below a root are not walked for inputs (nor watched):
# ``report --ignored`` names the files found there as "too deep".
MAX_DEPTH = 32
# Temp names of common copy tools; such a file is taken once it is renamed.
_TEMP_SUFFIXES = (
    ".part",
    ".partial",
    ".tmp",
    ".temp",
    ".crdownload",
    ".download",
    ".filepart",
    ".swp",
    "~",
)


class IgnoreReason(enum.StrEnum):
    """Why an entry of a drop folder is not an input (stable, machine-readable codes)."""

    HIDDEN = "hidden"
    TEMP_NAME = "temp_name"
    SYMLINK = "symlink"
    NOT_A_REGULAR_FILE = "not_a_regular_file"
    TOO_DEEP = "too_deep"
    OWN_FOLDER = "own_folder"
    UNLISTABLE_FOLDER = "unlistable_folder"


@dataclasses.dataclass(frozen=True, slots=True)
class Entry:
    """One entry met by the walk: where, relative to the root, and why it is not an input
    (None: a regular file that is an input, or a folder that was walked into)."""

    path: Path
    relative: PurePath
    reason: IgnoreReason | None
    is_dir: bool = False


def name_reason(name: str) -> IgnoreReason | None:
    """Hidden files and copy tools' temp names are not inputs (yet); None for an input name."""
    if name.startswith("."):
        return IgnoreReason.HIDDEN
    if name.startswith("~$") or name.lower().endswith(_TEMP_SUFFIXES):
        return IgnoreReason.TEMP_NAME
    return None


def depth_exceeded(relative: PurePath, max_depth: int = MAX_DEPTH) -> bool:
    """True when a file at ``relative`` (to the root walked) lies deeper than the walk goes:
    more than ``max_depth`` folders between the root and the file."""
    return len(relative.parts) > max_depth + 1


def own_paths(config: Config) -> list[Path]:
    """What the service writes: should any of it lie inside a drop folder, it is not an input."""
    paths = [config.paths.outbox, config.watch.archive]
    database = sqlite_file(config.database.url)
    if database is not None:
        paths += [database.with_name(database.name + s) for s in ("", "-wal", "-shm", "-journal")]
    return paths


class InputRule:
    """Decides which paths under ``root`` are inputs, for a walk or for one path at a time."""

    def __init__(
        self, root: Path, *, excluded: Sequence[Path] = (), max_depth: int = MAX_DEPTH
    ) -> None:
        self.root = root
        self.max_depth = max_depth
        self._real_root = Path(os.path.realpath(root))
        # Only paths strictly inside the root count: a parent of it excludes nothing.
        real = (Path(os.path.realpath(p)) for p in excluded)
        self._excluded = frozenset(p for p in real if self._real_root in p.parents)

    def entry_reason(self, relative: PurePath, mode: int) -> IgnoreReason | None:
        """Why the entry at ``relative`` (lstat ``mode``) is not an input or not walked into."""
        by_name = name_reason(relative.name)
        if by_name is not None:
            return by_name
        if stat.S_ISLNK(mode):
            return IgnoreReason.SYMLINK
        if self._real_root / relative in self._excluded:
            return IgnoreReason.OWN_FOLDER
        if not (stat.S_ISDIR(mode) or stat.S_ISREG(mode)):
            return IgnoreReason.NOT_A_REGULAR_FILE
        return None

    def accepts(self, path: Path) -> bool:
        """Tell whether ``path`` (heard of by an event, not yet looked at) may be an input.

        It must lie inside the root, have no hidden or temp name anywhere along it, lie no
        deeper than the walk goes, not be reached through a symlinked folder and not lie
        under an excluded path. Whether it is a regular file is asked when it is identified.
        """
        try:
            relative = path.relative_to(self.root)
        except ValueError:
            return False
        if not relative.parts or any(name_reason(part) for part in relative.parts):
            return False
        if depth_exceeded(relative, self.max_depth):
            return False
        # realpath of the parent equals its lexical path only if no folder on the way is
        # a symlink: a link to /etc inside the inbox is never followed out of it.
        parent = Path(os.path.realpath(path.parent))
        if parent != self._real_root / relative.parent:
            return False
        real = parent / path.name
        return not any(real == ex or ex in real.parents for ex in self._excluded)

    def files(self, under: Path | None = None) -> Iterator[Path]:
        """Every input under the root (or the root itself when it is a file), or under the
        folder ``under`` inside it; sorted per folder, symlinks never followed."""
        start = self.root if under is None else under
        try:
            info = start.lstat()
        except OSError:
            return
        if stat.S_ISREG(info.st_mode) and under is None:
            yield start
            return
        for entry in self.walk(under=under, list_too_deep=False):
            if entry.reason is None and not entry.is_dir:
                yield entry.path

    def walk(self, *, under: Path | None = None, list_too_deep: bool = True) -> Iterator[Entry]:
        """Every entry the walk meets, depth first in name order, without recursion (nesting
        cannot exhaust Python's stack). Ignored folders are not entered. Below
        ``max_depth`` folders, files are entries with reason too_deep when
        ``list_too_deep``; otherwise the walk stops there."""
        start = PurePath() if under is None else PurePath(under.relative_to(self.root))
        stack: list[Iterator[tuple[PurePath, os.DirEntry[str]]]] = []
        unlistable = self._listing(start, stack)
        if unlistable is not None and start.parts:
            yield unlistable
        while stack:
            try:
                relative, item = next(stack[-1])
            except StopIteration:
                stack.pop()
                continue
            entry = self._entry(relative, item, list_too_deep=list_too_deep)
            if entry is None:
                continue
            yield entry
            if entry.is_dir and entry.reason is None:
                failed = self._listing(relative, stack)
                if failed is not None:
                    yield failed

    def _entry(
        self, relative: PurePath, item: os.DirEntry[str], *, list_too_deep: bool
    ) -> Entry | None:
        """The walk's entry for one listed item; None for what it passes over in silence
        (gone since listed, or too deep when too-deep files are not listed)."""
        try:
            mode = item.stat(follow_symlinks=False).st_mode
        except OSError:
            return None
        is_dir = stat.S_ISDIR(mode)
        path = self.root / relative
        reason = self.entry_reason(relative, mode)
        if reason is None and len(relative.parts) > self.max_depth + 1:
            if not list_too_deep:
                return None
            if not is_dir:
                reason = IgnoreReason.TOO_DEEP
        return Entry(path, relative, reason, is_dir=is_dir)

    def _listing(
        self, relative: PurePath, stack: list[Iterator[tuple[PurePath, os.DirEntry[str]]]]
    ) -> Entry | None:
        """Push the sorted listing of a folder; the folder as an entry when it cannot be listed."""
        try:
            with os.scandir(self.root / relative) as listing:
                items = sorted(listing, key=lambda e: e.name)
        except OSError:
            return Entry(
                self.root / relative, relative, IgnoreReason.UNLISTABLE_FOLDER, is_dir=True
            )
        stack.append((relative / item.name, item) for item in items)
        return None
