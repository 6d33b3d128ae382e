"""What the DICOM outputs take from their source's header: checks that it can carry a SEG
and an SC, and the plain single-frame view of it that highdicom accepts."""

from __future__ import annotations

import copy

from pydicom.charset import python_encoding
from pydicom.dataset import Dataset

from cervixbatch.errors import DicomOutputSkipped
from cervixbatch.imaging.header_values import raw_uid

__all__ = ["SC_SURROGATE", "check_source", "source_view"]

# Type 2 attributes highdicom reads by attribute access: present-but-empty if missing.
_TYPE2_DEFAULTS = (
    "PatientName", "PatientID", "PatientBirthDate", "PatientSex", "AccessionNumber",
    "StudyID", "StudyDate", "StudyTime", "ReferringPhysicianName",
)  # fmt: skip
_SEX = frozenset({"M", "F", "O"})
_SOURCE_UIDS = ("SOPClassUID", "SOPInstanceUID", "StudyInstanceUID", "SeriesInstanceUID")
SC_SURROGATE = "1.2.840.10008.5.1.4.1.1.7"  # Secondary Capture Image Storage
# Frame and spatial attributes left out of the copy highdicom sees (see _source_view).
_SPATIAL = (
    "NumberOfFrames", "FrameIncrementPointer", "SharedFunctionalGroupsSequence",
    "PerFrameFunctionalGroupsSequence", "FrameOfReferenceUID", "PositionReferenceIndicator",
    "ImagePositionPatient", "ImageOrientationPatient", "ImageOrientationSlide",
    "TotalPixelMatrixOriginSequence", "PixelSpacing", "SliceThickness", "SpacingBetweenSlices",
)  # fmt: skip


def check_source(header: Dataset) -> tuple[int, tuple[int, int]]:
    """The frame count and frame size (rows, columns) of a source that can carry a SEG and
    an SC: identifiers present and valid UIDs, an encoding and character set they can be
    copied in. An invalid UID is named by its keyword, never quoted."""
    invalid = []
    for keyword in _SOURCE_UIDS:
        uid, valid = raw_uid(header, keyword)
        if not valid:
            invalid.append(keyword)
        elif uid is None:
            raise DicomOutputSkipped("missing_uid", f"the DICOM source has no {keyword}")
    if invalid:
        raise DicomOutputSkipped(
            "invalid_uid",
            f"invalid_uid: {', '.join(invalid)} (a UID is at most 64 digits and dots)",
        )
    _check_character_set(header)
    try:
        frames = max(1, int(header.get("NumberOfFrames") or 1))
        return frames, (int(header.Rows), int(header.Columns))
    except Exception:  # noqa: BLE001 - a malformed value raises whatever its VR parser raises
        raise DicomOutputSkipped(
            "malformed_header", "the DICOM source has no valid image size or frame count"
        ) from None


def _check_character_set(header: Dataset) -> None:
    """Patient and study text is copied into the outputs: its character set must be one
    pydicom can decode and encode again, or names would be written garbled."""
    try:
        declared = header.get("SpecificCharacterSet")
    except Exception:  # noqa: BLE001 - a malformed value
        declared = "?"
    values = [] if declared is None else [declared] if isinstance(declared, str) else declared
    unknown = [str(v) for v in values if str(v).strip() and str(v) not in python_encoding]
    if unknown:
        raise DicomOutputSkipped(
            "character_set", "the DICOM source declares a character set that cannot be copied"
        )


def source_view(header: Dataset) -> Dataset:
    """A copy of the header that highdicom takes as one plain single-frame image.

    highdicom accepts a single source frame only without a Frame of Reference, and reads
    functional groups from any multi-frame IOD. So the copy claims the single-frame
    Secondary Capture class and drops frame and spatial attributes; the true SOP class
    and the frame number are put back into the references afterwards
    (``_restore_references`` in :mod:`.dicom`). A photo's pixel spacing is not copied: the SEG lies
    pixel for pixel over its source frame.
    """
    view = copy.deepcopy(header)
    view.SOPClassUID = SC_SURROGATE
    for keyword in _SPATIAL:
        if keyword in view:
            delattr(view, keyword)
    for keyword in _TYPE2_DEFAULTS:
        if keyword not in view:
            setattr(view, keyword, None)
    # highdicom validates the sex against M/F/O; an odd value is left empty, not fatal.
    if str(view.PatientSex or "").strip().upper() not in _SEX:
        view.PatientSex = None
    return view
