"""The entry point of :mod:`cervixbatch.imaging`: one input file to its decoded frames.

The format is decided by the content, never by the file name. Limits are checked in the
cheapest order: file size, then the size the header declares, and only then decoding.
"""

from __future__ import annotations

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

__all__ = ["read_input"]


def read_input(
    path: Path, limits: ReadLimits, *, min_working_side: int | None = None
) -> DecodedInput:
    """Read one input file into RGB frames.

    Args:
        path: The file. It is opened once; a symlink is followed (the caller decides
            which paths may be read).
        limits: File size, declared pixels per frame, frame count and minimum side.
        min_working_side: When given, a JPEG may be decoded at a reduced scale whose long
            side is still at least this; ``Frame.full_size`` keeps the full size.

    Raises:
        InputRejected: For every input that cannot be processed, with its reason. Nothing
            else is raised for a bad input.

    """
    try:
        # Checked before opening too: opening a FIFO would block.
        _check_file(path.stat(), limits)
        with path.open("rb") as fp:
            size = _check_file(os.fstat(fp.fileno()), limits)
            fmt = sniff_format(fp.read(SNIFF_BYTES))
            if fmt is None:
                raise InputRejected(
                    RejectReason.UNSUPPORTED_FORMAT,
                    "not an image: the content is neither a supported photo format nor DICOM",
                )
            fp.seek(0)
            if fmt == "dicom":
                frames, info = read_dicom(fp, limits)
                return DecodedInput(kind=InputKind.DICOM, format=fmt, frames=frames, dicom=info)
            data = fp.read(size + 1)  # one byte more shows a file that grew meanwhile
    except OSError as exc:
        raise InputRejected(RejectReason.UNREADABLE, "the file cannot be read") from exc
    if len(data) > limits.max_file_bytes:
        raise InputRejected(RejectReason.FILE_TOO_LARGE, "the file grew past the size limit")
    frame = decode_photo(data, fmt, limits, min_working_side=min_working_side)
    return DecodedInput(kind=InputKind.PHOTO, format=fmt, frames=(frame,))


def _check_file(info: os.stat_result, limits: ReadLimits) -> int:
    """Return the size of a file, once known to be a regular file within limits."""
    if not stat.S_ISREG(info.st_mode):
        raise InputRejected(RejectReason.NOT_A_REGULAR_FILE, "the input is not a regular file")
    if info.st_size == 0:
        raise InputRejected(RejectReason.EMPTY_FILE, "the file is empty")
    if info.st_size > limits.max_file_bytes:
        raise InputRejected(
            RejectReason.FILE_TOO_LARGE,
            f"the file has {info.st_size} bytes, over the limit of {limits.max_file_bytes}",
        )
    return info.st_size
