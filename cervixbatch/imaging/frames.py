"""What a reader hands to the pipeline: decoded frames plus the little metadata we keep."""

from __future__ import annotations

import dataclasses
import enum
from typing import Any

import numpy as np
import numpy.typing as npt

from cervixbatch.config import LimitsConfig

__all__ = ["DecodedInput", "DicomInfo", "Frame", "InputKind", "ReadLimits"]

RGBImage = npt.NDArray[np.uint8]


class InputKind(enum.StrEnum):
    """The family of an input file, decided by its content."""

    PHOTO = "photo"
    DICOM = "dicom"


_LIMITS = LimitsConfig()


@dataclasses.dataclass(frozen=True, slots=True)
class ReadLimits:
    """Limits checked before decoding, from the file size and the declared header.

    The defaults are ``[limits]``'s (one place states them: :class:`LimitsConfig`).
    """

    max_file_bytes: int = int(_LIMITS.max_file_mb * 1024 * 1024)
    max_pixels: int = _LIMITS.max_pixels  # per frame, width x height as declared
    max_frames: int = _LIMITS.max_frames
    min_side: int = _LIMITS.min_side  # smaller images carry no usable picture of a cervix
    # Frames x pixels, as declared: a multi-frame file within the two limits above could
    # still decode to 100 G pixels; this bounds one input's memory (about 3 GB as RGB8).
    max_total_pixels: int = _LIMITS.max_total_pixels

    @classmethod
    def from_config(cls, limits: LimitsConfig) -> ReadLimits:
        """The limits ``[limits]`` sets."""
        return cls(
            max_file_bytes=int(limits.max_file_mb * 1024 * 1024),
            max_pixels=limits.max_pixels,
            max_frames=limits.max_frames,
            min_side=limits.min_side,
            max_total_pixels=limits.max_total_pixels,
        )


@dataclasses.dataclass(frozen=True, slots=True)
class Frame:
    """One decoded picture.

    ``rgb`` is the working image (H x W x 3, uint8, C-contiguous, RGB order). It may be
    decoded at a reduced resolution; ``full_size`` is always the (height, width) of the
    image at its own resolution (after EXIF orientation), which is what masks are written at.
    """

    index: int
    rgb: RGBImage
    full_size: tuple[int, int]

    @property
    def scale(self) -> float:
        """Full-resolution pixels per working-image pixel (1.0 when decoded at full size)."""
        return float(self.full_size[0] / self.rgb.shape[0])


@dataclasses.dataclass(frozen=True, slots=True)
class DicomInfo:
    """Identifiers of a DICOM input. Never patient data: those stay in the file."""

    study_uid: str | None
    series_uid: str | None
    sop_instance_uid: str | None
    sop_class_uid: str | None
    modality: str | None
    transfer_syntax_uid: str | None
    number_of_frames: int
    # keywords of the UIDs above that broke the standard and are None for that reason
    invalid_uids: tuple[str, ...] = ()


@dataclasses.dataclass(frozen=True, slots=True)
class DecodedInput:
    """Every frame of one input file, in order.

    For DICOM, ``dicom_header`` is the pydicom dataset (without pixel data) parsed from the
    same bytes as the frames: the SEG and SC are built from it, never from the file again.
    It holds patient data: it is never logged.
    """

    kind: InputKind
    format: str  # "jpeg", "png", "tiff", "bmp", "webp" or "dicom"
    frames: tuple[Frame, ...]
    dicom: DicomInfo | None = None
    dicom_header: Any = dataclasses.field(default=None, repr=False)  # pydicom Dataset
