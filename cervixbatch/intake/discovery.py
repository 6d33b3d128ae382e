"""Finding input files and identifying them: stat, hash, and which names to ignore.

Shared by ``cervixbatch process`` (walking the paths it is given) and the daemon (its
start-up scan and watchdog events).
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import stat
from collections.abc import Iterator
from pathlib import Path, PurePath

__all__ = [
    "MAX_DEPTH",
    "FileIdentity",
    "depth_exceeded",
    "hash_file",
    "identify",
    "ignored_name_reason",
    "is_ignored_name",
    "unreadable_digest",
    "walk_files",
]

_CHUNK = 1 << 20
# Folders nested deeper than this below a root are not walked (nor watched): the listing
# of ignored entries (cervixbatch.intake.ignored) names the files found there as "too deep".
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


@dataclasses.dataclass(frozen=True, slots=True)
class FileIdentity:
    """What identifies a file on disk without reading it: (path, size, mtime, inode)."""

    path: Path
    size: int
    mtime_ns: int
    inode: int = 0  # 0: not known


def is_ignored_name(name: str) -> bool:
    """Hidden files and copy tools' temp names are not inputs (yet)."""
    lowered = name.lower()
    return name.startswith((".", "~$")) or lowered.endswith(_TEMP_SUFFIXES)


def ignored_name_reason(name: str) -> str | None:
    """Why a name is not an input: ``"hidden"``, ``"temp_name"``, or None for an input name."""
    if name.startswith("."):
        return "hidden"
    if is_ignored_name(name):
        return "temp_name"
    return None


def depth_exceeded(relative: PurePath, max_depth: int = MAX_DEPTH) -> bool:
    """True when a file at ``relative`` (to the root walked) lies deeper than ``walk_files``
    goes: more than ``max_depth`` folders between the root and the file."""
    return len(relative.parts) > max_depth + 1


def identify(path: Path) -> FileIdentity | None:
    """The identity of a regular file, without following a symlink; None for anything else."""
    try:
        info = path.lstat()
    except OSError:
        return None
    if not stat.S_ISREG(info.st_mode):
        return None
    return FileIdentity(path=path, size=info.st_size, mtime_ns=info.st_mtime_ns, inode=info.st_ino)


def hash_file(path: Path) -> str:
    """The hex sha256 of a file's bytes, read in chunks (bounded memory for any size)."""
    digest = hashlib.sha256()
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    with os.fdopen(fd, "rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def unreadable_digest(identity: FileIdentity) -> str:
    """A stable key for a file whose bytes cannot be read (permissions, I/O errors)."""
    text = f"unreadable\0{identity.path}\0{identity.size}\0{identity.mtime_ns}"
    return hashlib.sha256(text.encode("utf-8", "surrogateescape")).hexdigest()


def walk_files(root: Path, *, max_depth: int = MAX_DEPTH) -> Iterator[Path]:
    """Every regular, non-ignored file under ``root`` (or ``root`` itself), sorted per folder.

    Symlinks are never followed, to files or folders: nothing outside ``root`` is reached.
    """
    try:
        info = root.lstat()
    except OSError:
        return
    if stat.S_ISREG(info.st_mode):
        yield root
        return
    if not stat.S_ISDIR(info.st_mode):
        return
    yield from _walk_dir(root, max_depth)


def _walk_dir(folder: Path, depth_left: int) -> Iterator[Path]:
    if depth_left < 0:
        return
    try:
        with os.scandir(folder) as entries:
            items = sorted(entries, key=lambda e: e.name)
    except OSError:
        return
    for entry in items:
        if is_ignored_name(entry.name):
            continue
        try:
            if entry.is_dir(follow_symlinks=False):
                yield from _walk_dir(Path(entry.path), depth_left - 1)
            elif entry.is_file(follow_symlinks=False):
                yield Path(entry.path)
        except OSError:
            continue
