"""The outbox: where each result goes, and how it is written (atomically, inside it only).

Folder names come from database ids alone — never from file names or DICOM tags — and
every path is resolved and checked to lie inside the outbox before anything is written.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import os
import stat
import time
from collections.abc import Iterable
from pathlib import Path

import cv2
import numpy as np
import numpy.typing as npt

from cervixbatch.errors import OutputError
from cervixbatch.outputs.png import encode_mask_png
from cervixbatch.owner import OwnerState, ProcessOwner, owned_name, owner_state, parse_owned_name

__all__ = [
    "TEMP_PREFIX",
    "FrameOutputs",
    "Outbox",
    "TempSweep",
    "fsync_dir",
    "sweep_temp_files",
    "temp_owner",
    "temp_path",
    "write_atomic",
]

# Temp names are hidden (the inbox watcher ignores them) and carry their owner:
# ".tmp-<host>-<boot>-<pid>-<start>-<random>-<final name>".
TEMP_PREFIX = ".tmp-"
# A temp name without an owner (written before owners were named) is removed only once it
# is this old: no write takes a day, so no live process still writes it.
UNOWNED_TEMP_MAX_AGE_S = 86_400.0
# The disk's trouble, not the input's: worth retrying once space or the device is back.
_TRANSIENT_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EIO})
FILE_MODE = 0o640
DIR_MODE = 0o750


@dataclasses.dataclass(frozen=True, slots=True)
class FrameOutputs:
    """Absolute paths of one frame's output files (crop is None when no cervix was found)."""

    cervix_mask: Path
    lesion_mask: Path
    overlay: Path
    crop: Path | None
    dicom_seg: Path | None = None  # DICOM inputs: the Segmentation and the overlay as SC
    dicom_sc: Path | None = None
    dicom_seg_uid: str | None = None
    dicom_sc_uid: str | None = None
    dicom_skipped: str | None = None  # why a DICOM input got no SEG/SC (a reason code)
    dicom_skipped_detail: str | None = None


class Outbox:
    """The output folder tree: ``<outbox>/<input id>/`` or ``…/<input id>/frame_NNNN/``;
    later runs of an input (``reprocess``) in ``…/<input id>/run_NNNN/``."""

    def __init__(self, root: Path) -> None:
        self.root = root.resolve()

    def input_dir(self, input_id: int) -> Path:
        """The folder of one input, named by its database id."""
        return self._inside(self.root / f"{int(input_id):08d}")

    def run_dir(self, input_id: int, run: int = 1) -> Path:
        """The folder of one run: the input folder for the first, ``run_NNNN/`` inside it
        for each reprocessing, so that earlier results keep their files."""
        base = self.input_dir(input_id)
        if run <= 1:
            return base
        return self._inside(base / f"run_{int(run):04d}")

    def frame_dir(self, input_id: int, frame: int, frame_count: int, run: int = 1) -> Path:
        """Single-frame inputs write into the run's folder; multi-frame ones one folder each."""
        base = self.run_dir(input_id, run)
        if frame_count <= 1:
            return base
        return self._inside(base / f"frame_{int(frame):04d}")

    def write_frame(
        self,
        folder: Path,
        *,
        cervix_mask: npt.NDArray[np.uint8],
        lesion_mask: npt.NDArray[np.uint8],
        overlay_rgb: npt.NDArray[np.uint8],
        crop_rgb: npt.NDArray[np.uint8] | None,
        jpeg_quality: int,
    ) -> FrameOutputs:
        """Encodes and writes one frame's files; returns their paths."""
        folder = self._inside(folder)
        _make_dirs(folder, self.root)
        jpeg = [cv2.IMWRITE_JPEG_QUALITY, jpeg_quality]
        outputs = FrameOutputs(
            cervix_mask=folder / "cervix_mask.png",
            lesion_mask=folder / "lesion_mask.png",
            overlay=folder / "overlay.jpg",
            crop=folder / "crop.jpg" if crop_rgb is not None else None,
        )
        write_atomic(outputs.cervix_mask, encode_mask_png(cervix_mask))
        write_atomic(outputs.lesion_mask, encode_mask_png(lesion_mask))
        write_atomic(outputs.overlay, _encode(".jpg", _bgr(overlay_rgb), jpeg))
        if crop_rgb is not None and outputs.crop is not None:
            write_atomic(outputs.crop, _encode(".jpg", _bgr(crop_rgb), jpeg))
        return outputs

    def remove_temp_files(self) -> TempSweep:
        """Deletes the temp files that crashed writers left behind, and only those: files of
        live processes (another worker on a shared outbox, ``cervixbatch process`` beside a
        running daemon) and of other hosts stay."""
        if not self.root.is_dir():
            return TempSweep()
        return sweep_temp_files(self.root.rglob(TEMP_PREFIX + "*"))

    def _inside(self, path: Path) -> Path:
        resolved = path.resolve()
        if resolved != self.root and self.root not in resolved.parents:
            raise OutputError(f"refusing to write outside the outbox: {resolved}")
        return resolved


@dataclasses.dataclass(slots=True)
class TempSweep:
    """What a look at leftover temp files found."""

    removed: int = 0  # their writer is provably dead
    kept_live: int = 0  # their writer still runs: in flight
    kept_unknown: int = 0  # another host's, or without an owner and not yet a day old


def temp_path(path: Path) -> Path:
    """The hidden name beside ``path`` that :func:`write_atomic` writes first, naming this
    process as its owner."""
    return path.with_name(owned_name(TEMP_PREFIX, path.name))


def temp_owner(name: str) -> ProcessOwner | None:
    """The owner a temp file's name carries; None when it carries none."""
    parsed = parse_owned_name(name, TEMP_PREFIX)
    return None if parsed is None else parsed[0]


def sweep_temp_files(paths: Iterable[Path]) -> TempSweep:
    """Removes those of ``paths`` (temp files) whose owner is provably dead; counts all."""
    sweep = TempSweep()
    states: dict[ProcessOwner, OwnerState] = {}
    now = time.time()
    for path in paths:
        try:
            info = path.lstat()
        except OSError:
            continue
        if not stat.S_ISREG(info.st_mode):
            continue
        owner = temp_owner(path.name)
        if owner is None:
            dead = now - info.st_mtime > UNOWNED_TEMP_MAX_AGE_S
            state = OwnerState.DEAD if dead else OwnerState.UNKNOWN
        else:
            state = states.get(owner) or states.setdefault(owner, owner_state(owner))
        if state is OwnerState.DEAD:
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
            sweep.removed += 1
        elif state is OwnerState.ALIVE:
            sweep.kept_live += 1
        else:
            sweep.kept_unknown += 1
    return sweep


def write_atomic(path: Path, data: bytes) -> None:
    """Writes ``data`` to a temp file beside ``path``, fsyncs it, then renames it into place.

    A crash leaves either the old file, the new one, or a temp file that names its owner,
    which recovery removes once that owner is provably dead — never a half-written output
    under the final name.
    """
    temp = temp_path(path)
    try:
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, FILE_MODE)
        try:
            view = memoryview(data)
            while view:
                written = os.write(fd, view)
                view = view[written:]
            os.fsync(fd)
        finally:
            os.close(fd)
        temp.replace(path)
        fsync_dir(path.parent)
    except OSError as exc:
        with contextlib.suppress(OSError):
            temp.unlink()
        raise OutputError(
            f"cannot write {path.name} in {path.parent}: {exc.strerror or exc}",
            transient=exc.errno in _TRANSIENT_ERRNOS,
        ) from exc


def _encode(ext: str, image: npt.NDArray[np.uint8], params: list[int]) -> bytes:
    ok, buffer = cv2.imencode(ext, image, params)
    if not ok:  # pragma: no cover - OpenCV encodes any uint8 image
        raise OutputError(f"OpenCV could not encode a {ext} image of shape {image.shape}")
    return buffer.tobytes()


def _bgr(rgb: npt.NDArray[np.uint8]) -> npt.NDArray[np.uint8]:
    return cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)


def _make_dirs(folder: Path, root: Path) -> None:
    missing = []
    current = folder
    while current != root and not current.exists():
        missing.append(current)
        current = current.parent
    for path in reversed(missing):
        try:
            path.mkdir(mode=DIR_MODE, exist_ok=True)
            # A new folder's entry lives in its parent: without this fsync a crash could
            # lose the folder, and every output in it, after the row said done.
            fsync_dir(path.parent)
        except OSError as exc:
            raise OutputError(
                f"cannot create {path}: {exc.strerror or exc}",
                transient=exc.errno in _TRANSIENT_ERRNOS,
            ) from exc


def fsync_dir(folder: Path) -> None:
    """Makes the entries of ``folder`` (files created, renamed or removed in it) durable."""
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
