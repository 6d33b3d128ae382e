"""The entry point of :mod:`cervixbatch.imaging`: one input file to its decoded frames.

A file is read once: :func:`read_source` opens it without following a symlink, checks on
the open descriptor that it is a regular file within the size limit, and returns its bytes
with their sha256. :func:`decode_input` decodes those same bytes, and everything
downstream (masks, overlays, the DICOM header for SEG and SC) comes from them: nothing
reads the path again, so a result always belongs to the bytes whose digest it carries.

The format is decided by the content, never by the file name. Limits are checked in the
cheapest order: file size, then the size the header declares, and only then decoding.
"""

from __future__ import annotations

import dataclasses
import errno
import hashlib
import os
import stat
from typing import TYPE_CHECKING

from cervixbatch.errors import InputRejected, RejectReason
from cervixbatch.imaging.dicom import read_dicom
from cervixbatch.imaging.frames import DecodedInput, InputKind, ReadLimits
from cervixbatch.imaging.photo import decode_photo
from cervixbatch.imaging.sniff import SNIFF_BYTES, sniff_format

if TYPE_CHECKING:
    from pathlib import Path

    from cervixbatch.imaging.sop import SopClassFilter

__all__ = ["SourceFile", "decode_input", "read_input", "read_source"]

# Opening a FIFO or a device for reading must not block: the descriptor is checked first.
_OPEN_FLAGS = os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0)


@dataclasses.dataclass(frozen=True, slots=True)
class SourceFile:
    """The bytes of one input file as read once, their sha256, and the identity (from the
    open descriptor) of the file they were read from."""

    data: bytes = dataclasses.field(repr=False)
    sha256: str
    size: int
    mtime_ns: int
    inode: int


def read_source(path: Path, max_bytes: int, *, follow_symlinks: bool = False) -> SourceFile:
    """Read a whole file once, hashing what was read.

    Args:
        path: The file. A symlink is refused unless ``follow_symlinks`` (tools reading a
            user's dataset follow them; the runtime path never does).
        max_bytes: The file-size limit; a file that grows past it while read is refused.
        follow_symlinks: Whether a symlink as the last component is followed.

    Raises:
        InputRejected: ``UNREADABLE``, ``NOT_A_REGULAR_FILE``, ``EMPTY_FILE`` or
            ``FILE_TOO_LARGE``. Nothing else is raised for a bad file.

    """
    flags = _OPEN_FLAGS if follow_symlinks else _OPEN_FLAGS | os.O_NOFOLLOW
    try:
        fd = os.open(path, flags)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise InputRejected(
                RejectReason.NOT_A_REGULAR_FILE, "the input is a symbolic link, not followed"
            ) from exc
        raise InputRejected(RejectReason.UNREADABLE, "the file cannot be read") from exc
    try:
        info = os.fstat(fd)
        _check_file(info, max_bytes)
        data = _read_all(fd, info.st_size, max_bytes)
    except OSError as exc:
        raise InputRejected(RejectReason.UNREADABLE, "the file cannot be read") from exc
    finally:
        os.close(fd)
    if len(data) > max_bytes:
        raise InputRejected(RejectReason.FILE_TOO_LARGE, "the file grew past the size limit")
    return SourceFile(
        data=data,
        sha256=hashlib.sha256(data).hexdigest(),
        size=info.st_size,
        mtime_ns=info.st_mtime_ns,
        inode=info.st_ino,
    )


def _read_all(fd: int, size: int, max_bytes: int) -> bytes:
    """Every byte up to end of file (at most ``max_bytes + 1``). A file read whole in one
    call, the common case, comes back without a copy."""
    chunks: list[bytes] = []
    total = 0
    while total <= max_bytes:
        # The size fstat gave plus one byte (to see growth), then 1 MiB at a time.
        want = size + 1 - total if total <= size else 1 << 20
        chunk = os.read(fd, min(want, max_bytes + 1 - total))
        if not chunk:
            break
        chunks.append(chunk)
        total += len(chunk)
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)


def decode_input(
    data: bytes,
    limits: ReadLimits,
    *,
    min_working_side: int | None = None,
    sop_filter: SopClassFilter | None = None,
) -> DecodedInput:
    """Decode the bytes of one input file into RGB frames.

    Args:
        data: The whole file, as :func:`read_source` returned it.
        limits: Declared pixels per frame, frame count and minimum side.
        min_working_side: When given, a JPEG may be decoded at a reduced scale whose long
            side is still at least this; ``Frame.full_size`` keeps the full size.
        sop_filter: The DICOM objects that may be segmented; None accepts every kind
            (training and evaluation read what the user gives them).

    Raises:
        InputRejected: For every input that cannot be processed, with its reason. Nothing
            else is raised for a bad input.

    """
    if not data:
        raise InputRejected(RejectReason.EMPTY_FILE, "the file is empty")
    fmt = sniff_format(data[:SNIFF_BYTES])
    if fmt is None:
        raise InputRejected(
            RejectReason.UNSUPPORTED_FORMAT,
            "not an image: the content is neither a supported photo format nor DICOM",
        )
    if fmt == "dicom":
        frames, info, header = read_dicom(data, limits, sop_filter)
        return DecodedInput(
            kind=InputKind.DICOM, format=fmt, frames=frames, dicom=info, dicom_header=header
        )
    frame = decode_photo(data, fmt, limits, min_working_side=min_working_side)
    return DecodedInput(kind=InputKind.PHOTO, format=fmt, frames=(frame,))


def read_input(
    path: Path,
    limits: ReadLimits,
    *,
    min_working_side: int | None = None,
    sop_filter: SopClassFilter | None = None,
    follow_symlinks: bool = True,
) -> DecodedInput:
    """:func:`read_source` then :func:`decode_input`: for tools and tests that start from a
    path. The runner reads and verifies the bytes itself (see ``cervixbatch.worker.runner``)."""
    source = read_source(path, limits.max_file_bytes, follow_symlinks=follow_symlinks)
    return decode_input(
        source.data, limits, min_working_side=min_working_side, sop_filter=sop_filter
    )


def _check_file(info: os.stat_result, max_bytes: int) -> None:
    """Refuse what is not a regular, non-empty file within the size limit."""
    if not stat.S_ISREG(info.st_mode):
        raise InputRejected(RejectReason.NOT_A_REGULAR_FILE, "the input is not a regular file")
    if info.st_size == 0:
        raise InputRejected(RejectReason.EMPTY_FILE, "the file is empty")
    if info.st_size > max_bytes:
        raise InputRejected(
            RejectReason.FILE_TOO_LARGE,
            f"the file has {info.st_size} bytes, over the limit of {max_bytes}",
        )
