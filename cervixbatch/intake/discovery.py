"""Identifying a file: its identity on disk (stat) and its digest (sha256).

Which files are inputs at all is :mod:`cervixbatch.intake.rules`.
"""

from __future__ import annotations

import dataclasses
import errno
import hashlib
import os
import stat
from pathlib import Path

from cervixbatch.imaging.digest import feed_sha256

__all__ = [
    "FileIdentity",
    "FileTooLargeError",
    "NotRegularFileError",
    "hash_file",
    "identify",
    "unreadable_digest",
]

# A FIFO or a device put where a file was must not block the reader: the descriptor is
# opened non-blocking and checked (fstat) before a byte is read.
_OPEN_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0)


class NotRegularFileError(OSError):
    """The path holds no regular file any more (a FIFO, a device, a socket, a folder)."""


class FileTooLargeError(OSError):
    """The file is larger than the limit it is read under (``[limits] max_file_mb``)."""


@dataclasses.dataclass(frozen=True, slots=True)
class FileIdentity:
    """What identifies a file on disk without reading it: (path, size, mtime, inode)."""

    path: Path
    size: int
    mtime_ns: int
    inode: int = 0  # 0: not known


def identify(path: Path) -> FileIdentity | None:
    """The identity of a regular file, without following a symlink; None for anything else."""
    try:
        info = path.lstat()
    except OSError:
        return None
    if not stat.S_ISREG(info.st_mode):
        return None
    return FileIdentity(path=path, size=info.st_size, mtime_ns=info.st_mtime_ns, inode=info.st_ino)


def hash_file(path: Path, *, max_bytes: int | None = None) -> str:
    """The hex sha256 of a file's bytes, read in chunks (bounded memory for any size).

    The file is opened without following a symlink and without blocking; what is not a
    regular file raises :class:`NotRegularFileError` before anything is read, a file over
    ``max_bytes`` (or that grows past it) :class:`FileTooLargeError`.
    """
    digest = hashlib.sha256()
    fd = os.open(path, _OPEN_FLAGS)
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise NotRegularFileError(errno.EINVAL, "not a regular file")
        limit = None if max_bytes is None else max_bytes + 1
        if max_bytes is not None and info.st_size > max_bytes:
            raise FileTooLargeError(errno.EFBIG, "the file is over the size limit")
        total = feed_sha256(digest, lambda size: os.read(fd, size), limit=limit)
        if limit is not None and total >= limit:
            raise FileTooLargeError(errno.EFBIG, "the file grew past the size limit")
    finally:
        os.close(fd)
    return digest.hexdigest()


def unreadable_digest(identity: FileIdentity) -> str:
    """A stable key for a file whose bytes cannot be read (permissions, I/O errors)."""
    text = f"unreadable\0{identity.path}\0{identity.size}\0{identity.mtime_ns}"
    return hashlib.sha256(text.encode("utf-8", "surrogateescape")).hexdigest()
