"""The one way files are written so that nobody ever sees half of one.

The bytes go to a hidden temp file beside the final name that carries its owner
(``.tmp-<host>-<boot>-<pid>-<start>-<random>-<final name>``); the file is fsynced, renamed
onto the final name, and the folder fsynced. A crash leaves the old file, the new one, or
a temp file that :func:`sweep_temp_files` removes once its owner is provably dead — never
a half-written file under the final name.

One writer, three shapes:

- :func:`write_atomic`: bytes in hand (outputs, reports, synthetic photos, cards);
- :func:`atomic_file`: a binary stream to write into (copies, large files);
- :func:`atomic_path`: the temp name itself, for libraries that write by name (Keras,
  SQLite's backup).

``exclusive=True`` never replaces an existing file (a :class:`FileExistsError` instead):
for archives, where two inputs may share a name.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import os
import stat
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import BinaryIO

from cervixbatch.errors import OutputError
from cervixbatch.owner import OwnerState, ProcessOwner, owned_name, owner_state, parse_owned_name

__all__ = [
    "FILE_MODE",
    "PLAIN_MODE",
    "TEMP_PREFIX",
    "TRANSIENT_ERRNOS",
    "TempSweep",
    "atomic_file",
    "atomic_path",
    "fsync_dir",
    "sweep_temp_files",
    "temp_owner",
    "temp_path",
    "write_atomic",
]

# Temp names are hidden (the inbox watcher ignores them) and carry their owner.
TEMP_PREFIX = ".tmp-"
# A temp name without an owner that can be judged (written before owners were named, or
# named by host name only) is removed only once it is this old: no write takes a day, so
# no live process still writes it.
UNOWNED_TEMP_MAX_AGE_S = 86_400.0
# The disk's trouble, not the input's: worth retrying once space or the device is back.
TRANSIENT_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EIO})
FILE_MODE = 0o640  # results about patients: not for every local user
PLAIN_MODE = 0o666  # what open() gives: the umask decides (tools' files: data sets, models)
_CREATE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW


def write_atomic(path: Path, data: bytes, *, mode: int = FILE_MODE) -> None:
    """Writes ``data`` to ``path`` atomically (see the module); an :class:`OutputError`
    naming the file when the disk refuses, marked transient when retrying may help."""
    temp = temp_path(path)
    try:
        with _removed_on_error(temp):
            fd = os.open(temp, _CREATE, mode)
            try:  # straight to the descriptor: the bytes are in hand, no buffer needed
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view) :]
                os.fsync(fd)
            finally:
                os.close(fd)
            _place(temp, path, exclusive=False)
    except OSError as exc:
        raise OutputError(
            f"cannot write {path.name} in {path.parent}: {exc.strerror or exc}",
            transient=exc.errno in TRANSIENT_ERRNOS,
        ) from exc


@contextlib.contextmanager
def atomic_file(
    path: Path, *, mode: int = FILE_MODE, exclusive: bool = False
) -> Iterator[BinaryIO]:
    """A binary stream whose bytes appear under ``path`` whole, once the block ends
    without an error; on an error the temp file is removed and ``path`` is untouched."""
    temp = temp_path(path)
    with _removed_on_error(temp):
        with os.fdopen(os.open(temp, _CREATE, mode), "wb") as stream:
            yield stream
            stream.flush()
            os.fsync(stream.fileno())
        _place(temp, path, exclusive=exclusive)


@contextlib.contextmanager
def atomic_path(path: Path, *, exclusive: bool = False) -> Iterator[Path]:
    """The temp name to write ``path``'s content to by name; what is there when the block
    ends without an error is fsynced and put in place. The temp keeps ``path``'s name at
    its end, so a writer that goes by the suffix (Keras's ``.keras``) accepts it."""
    temp = temp_path(path)
    with _removed_on_error(temp):
        yield temp
        fd = os.open(temp, os.O_RDONLY | os.O_NOFOLLOW)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        _place(temp, path, exclusive=exclusive)


def temp_path(path: Path) -> Path:
    """The hidden name beside ``path`` that the writers here write first, naming this
    process as its owner."""
    return path.with_name(owned_name(TEMP_PREFIX, path.name))


def temp_owner(name: str) -> ProcessOwner | None:
    """The owner a temp file's name carries; None when it carries none."""
    parsed = parse_owned_name(name, TEMP_PREFIX)
    return None if parsed is None else parsed[0]


@dataclasses.dataclass(slots=True)
class TempSweep:
    """What a look at leftover temp files found."""

    removed: int = 0  # their writer is provably dead
    kept_live: int = 0  # their writer still runs: in flight
    kept_unknown: int = 0  # another host's, or without an owner and not yet a day old


def sweep_temp_files(paths: Iterable[Path]) -> TempSweep:
    """Removes those of ``paths`` (temp files) whose owner is provably dead; counts all."""
    sweep = TempSweep()
    states: dict[ProcessOwner, OwnerState] = {}
    now = time.time()
    try:
        for path in paths:
            _sweep_one(path, sweep, states, now)
    except OSError:  # a folder gone or unreadable while it was walked: the rest next time
        pass
    return sweep


def _sweep_one(
    path: Path, sweep: TempSweep, states: dict[ProcessOwner, OwnerState], now: float
) -> None:
    """Judges one temp file, removes it when its writer is provably dead, counts it. Any
    name is taken: one this package never gives counts as unowned."""
    try:
        info = path.lstat()
    except (OSError, ValueError):
        return
    if not stat.S_ISREG(info.st_mode):
        return
    owner = temp_owner(path.name)
    if owner is None or owner.legacy:
        # No owner that can be judged (none, or an older version's, named by host name
        # only): gone once no write can still be going on.
        dead = now - info.st_mtime > UNOWNED_TEMP_MAX_AGE_S
        state = OwnerState.DEAD if dead else OwnerState.UNKNOWN
    else:
        state = states.get(owner) or states.setdefault(owner, owner_state(owner))
    if state is OwnerState.DEAD:
        try:
            path.unlink()
        except FileNotFoundError:
            pass
        except OSError:
            sweep.kept_unknown += 1  # cannot be removed (a read-only folder): counted, kept
            return
        sweep.removed += 1
    elif state is OwnerState.ALIVE:
        sweep.kept_live += 1
    else:
        sweep.kept_unknown += 1


def fsync_dir(folder: Path) -> None:
    """Makes the entries of ``folder`` (files created, renamed or removed in it) durable."""
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextlib.contextmanager
def _removed_on_error(temp: Path) -> Iterator[None]:
    try:
        yield
    except BaseException:
        with contextlib.suppress(OSError):
            temp.unlink()
        raise


def _place(temp: Path, path: Path, *, exclusive: bool) -> None:
    """The synced temp file under its final name, then the folder synced."""
    if exclusive:
        _link_new(temp, path)
    else:
        temp.replace(path)
    fsync_dir(path.parent)


def _link_new(temp: Path, path: Path) -> None:
    """Gives the temp file the name ``path`` only while no file has it (a rename would
    replace one): a hard link, then the temp name goes."""
    try:
        os.link(temp, path)
    except FileExistsError:
        raise
    except OSError:
        # A filesystem without hard links: claim the name, then rename onto the claim. A
        # crash between the two leaves an empty file under the name, never part of one.
        os.close(os.open(path, _CREATE, 0o600))
        temp.replace(path)
        return
    temp.unlink()
