"""Identifying a file: its identity on disk (stat) and its digest (sha256).

Which files are inputs at all is :mod:`cervixbatch.intake.rules`.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import stat
from pathlib import Path

__all__ = [
    "FileIdentity",
    "hash_file",
    "identify",
    "unreadable_digest",
]

_CHUNK = 1 << 20


@dataclasses.dataclass(frozen=True, slots=True)
class FileIdentity:
    """What identifies a file on disk without reading it: (path, size, mtime)."""

    path: Path
    size: int
    mtime_ns: int


def identify(path: Path) -> FileIdentity | None:
    """The identity of a regular file, without following a symlink; None for anything else."""
    try:
        info = path.lstat()
    except OSError:
        return None
    if not stat.S_ISREG(info.st_mode):
        return None
    return FileIdentity(path=path, size=info.st_size, mtime_ns=info.st_mtime_ns)


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
