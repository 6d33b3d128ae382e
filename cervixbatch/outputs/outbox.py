"""The outbox: where each result goes, and how it is written (atomically, inside it only).

Folder names come from database ids alone — never from file names or DICOM tags — and
every path is resolved and checked to lie inside the outbox before anything is written.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import os
import uuid
from pathlib import Path

import cv2
import numpy as np
import numpy.typing as npt

from cervixbatch.errors import OutputError
from cervixbatch.outputs.png import encode_mask_png

__all__ = [
    "TEMP_PREFIX",
    "FrameOutputs",
    "Outbox",
    "write_atomic",
]

TEMP_PREFIX = ".tmp-"
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


class Outbox:
    """The output folder tree: ``<outbox>/<input id>/`` or ``…/<input id>/frame_NNNN/``."""

    def __init__(self, root: Path) -> None:
        self.root = root.resolve()

    def input_dir(self, input_id: int) -> Path:
        """The folder of one input, named by its database id."""
        return self._inside(self.root / f"{int(input_id):08d}")

    def frame_dir(self, input_id: int, frame: int, frame_count: int) -> Path:
        """Single-frame inputs write into the input folder; multi-frame ones one folder each."""
        base = self.input_dir(input_id)
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

    def remove_temp_files(self) -> int:
        """Deletes temp files a crash left behind; returns how many."""
        removed = 0
        if not self.root.is_dir():
            return 0
        for path in self.root.rglob(TEMP_PREFIX + "*"):
            if path.is_file() and not path.is_symlink():
                path.unlink(missing_ok=True)
                removed += 1
        return removed

    def _inside(self, path: Path) -> Path:
        resolved = path.resolve()
        if resolved != self.root and self.root not in resolved.parents:
            raise OutputError(f"refusing to write outside the outbox: {resolved}")
        return resolved


def write_atomic(path: Path, data: bytes) -> None:
    """Writes ``data`` to a temp file beside ``path``, fsyncs it, then renames it into place.

    A crash leaves either the old file, the new one, or a ``.tmp-`` file that recovery
    removes — never a half-written output under the final name.
    """
    temp = path.with_name(f"{TEMP_PREFIX}{uuid.uuid4().hex}-{path.name}")
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
        _fsync_dir(path.parent)
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
        except OSError as exc:
            raise OutputError(
                f"cannot create {path}: {exc.strerror or exc}",
                transient=exc.errno in _TRANSIENT_ERRNOS,
            ) from exc


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
