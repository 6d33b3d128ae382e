"""The outbox: where each result goes, and how it is written (atomically, with
``outputs.atomic``; inside it only).

Folder names come from database ids alone — never from file names or DICOM tags — and
every path is resolved and checked to lie inside the outbox before anything is written.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import cv2
import numpy as np
import numpy.typing as npt

from cervixbatch.errors import OutputError
from cervixbatch.outputs.atomic import (
    TEMP_PREFIX,
    TRANSIENT_ERRNOS,
    TempSweep,
    fsync_dir,
    sweep_temp_files,
    write_atomic,
)
from cervixbatch.outputs.png import encode_mask_png

__all__ = [
    "DIR_MODE",
    # the atomic writer's, still importable from here (the service's Storage SCP uses them)
    "FrameOutputs",
    "Outbox",
    "make_dirs",
]

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
    dicom_sr: Path | None = None  # the measurements as a DICOM SR (TID 1500)
    dicom_sr_uid: str | None = None
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
        make_dirs(folder, self.root)
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


def _encode(ext: str, image: npt.NDArray[np.uint8], params: list[int]) -> bytes:
    ok, buffer = cv2.imencode(ext, image, params)
    if not ok:  # pragma: no cover - OpenCV encodes any uint8 image
        raise OutputError(f"OpenCV could not encode a {ext} image of shape {image.shape}")
    return buffer.tobytes()


def _bgr(rgb: npt.NDArray[np.uint8]) -> npt.NDArray[np.uint8]:
    return cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)


def make_dirs(folder: Path, root: Path) -> None:
    """Creates ``folder`` and its missing parents up to ``root``, each made durable."""
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
                transient=exc.errno in TRANSIENT_ERRNOS,
            ) from exc
