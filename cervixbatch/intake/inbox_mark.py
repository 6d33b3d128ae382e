"""Is the inbox the inbox? A mark the daemon keeps in it, and the device it lies on.

Retention forgets an input once its file has left the inbox. An unmounted share (the
empty mount point shows through), a share mounted late, or a folder replaced for a
moment would make every file look gone, and retention would forget them all, and the
daemon then take each one again as new. So the daemon, when it starts, keeps a mark in
the inbox: a hidden file (``.cervixbatch-inbox-mark``, never an input) holding a random
token; it records the token and the inbox's device (``st_dev``). Retention forgets
nothing while :func:`inbox_problem` names a problem: the inbox missing, on another
device than at start, or without the mark (or with another one). The daemon never writes
the mark again while it runs: a mark written on an empty mount point would make the
wrong folder look right. After a share is remounted for good, a restart of the daemon
takes the inbox as it is then.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import secrets
import stat
from pathlib import Path

__all__ = ["MARK_NAME", "InboxMark", "inbox_problem", "keep_mark"]

MARK_NAME = ".cervixbatch-inbox-mark"
_TOKEN_BYTES = 16
_MAX_MARK_BYTES = 256


@dataclasses.dataclass(frozen=True, slots=True)
class InboxMark:
    """The inbox as the daemon found it at start: its device and the mark's token."""

    folder: Path
    device: int
    token: str


def keep_mark(inbox: Path) -> InboxMark | None:
    """The mark in ``inbox``, written first if there is none; None when the inbox or its
    mark cannot be read or written (retention then forgets nothing)."""
    try:
        inbox.mkdir(parents=True, exist_ok=True)  # as the watcher would
        device = inbox.stat().st_dev
        token = _read_token(inbox / MARK_NAME)
        if token is None:
            _write_new(inbox)
            token = _read_token(inbox / MARK_NAME)
    except OSError:
        return None
    if token is None:
        return None
    return InboxMark(folder=inbox, device=device, token=token)


def inbox_problem(mark: InboxMark | None) -> str | None:
    """Why the inbox does not look like the one the daemon started with (a stable code),
    or None when it does."""
    if mark is None:
        return "inbox_unmarked"
    try:
        device = mark.folder.stat().st_dev
    except OSError:
        return "inbox_missing"
    if device != mark.device:
        return "inbox_device_changed"
    try:
        token = _read_token(mark.folder / MARK_NAME)
    except OSError:
        token = None
    if token is None:
        return "inbox_mark_missing"
    if token != mark.token:
        return "inbox_mark_changed"
    return None


def _read_token(path: Path) -> str | None:
    """The token in a regular file at ``path``; None when there is no such file."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except FileNotFoundError:
        return None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return None
        text = os.read(fd, _MAX_MARK_BYTES).decode("ascii", "replace").strip()
    finally:
        os.close(fd)
    return text or None


def _write_new(inbox: Path) -> None:
    """Writes a new mark whole (a temp file linked into place: never half a token); a
    mark another daemon wrote meanwhile is kept."""
    temp = inbox / f"{MARK_NAME}.{secrets.token_hex(4)}.tmp"
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644)
    try:
        with os.fdopen(fd, "w", encoding="ascii") as out:
            out.write(secrets.token_hex(_TOKEN_BYTES) + "\n")
            out.flush()
            os.fsync(out.fileno())
        with contextlib.suppress(FileExistsError):
            os.link(temp, inbox / MARK_NAME)
    finally:
        with contextlib.suppress(OSError):
            temp.unlink()
