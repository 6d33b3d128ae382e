"""Which DICOM objects are colposcopy-capable images: the SOP class filter.

A DICOM file with pixel data is not necessarily a photograph of a cervix: CT, MR,
ultrasound and even Segmentation objects carry pixels too. Segmenting those would write a
"cervix" SEG and overlay into a study of another kind (and forward it to the PACS). So a
DICOM input is segmented only when its SOP class is one of ``[dicom] accept_classes``
(default: the visible-light photographic and endoscopic classes and Secondary Capture);
Secondary Capture, which can hold anything, also needs a modality of XC, ES, OT or none.
Every other object is rejected as ``unsupported_sop_class``.

pydicom is imported lazily here: the configuration imports the defaults at start-up.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable

from cervixbatch.errors import InputRejected, RejectReason

__all__ = [
    "DEFAULT_ACCEPT_CLASSES",
    "OWN_MANUFACTURER",
    "SC_MODALITIES",
    "SECONDARY_CAPTURE_CLASSES",
    "SopClassFilter",
    "describe",
    "resolve_sop_classes",
]

VL_PHOTOGRAPHIC = "1.2.840.10008.5.1.4.1.1.77.1.4"
VIDEO_PHOTOGRAPHIC = "1.2.840.10008.5.1.4.1.1.77.1.4.1"
VL_ENDOSCOPIC = "1.2.840.10008.5.1.4.1.1.77.1.1"
VIDEO_ENDOSCOPIC = "1.2.840.10008.5.1.4.1.1.77.1.1.1"
SECONDARY_CAPTURE = "1.2.840.10008.5.1.4.1.1.7"
MULTI_FRAME_TRUE_COLOR_SC = "1.2.840.10008.5.1.4.1.1.7.4"

DEFAULT_ACCEPT_CLASSES: tuple[str, ...] = (
    VL_PHOTOGRAPHIC,
    VIDEO_PHOTOGRAPHIC,
    VL_ENDOSCOPIC,
    VIDEO_ENDOSCOPIC,
    SECONDARY_CAPTURE,
    MULTI_FRAME_TRUE_COLOR_SC,
)
"""The SOP classes a colposcope writes: VL Photographic and VL Endoscopic images, their
video classes, and Secondary Capture (single-frame, and multi-frame true colour)."""

# Every Secondary Capture class: a capture of anything, so the modality must say "photo".
SECONDARY_CAPTURE_CLASSES = frozenset(
    {SECONDARY_CAPTURE, *(f"{SECONDARY_CAPTURE}.{n}" for n in range(1, 5))}
)
SC_MODALITIES = frozenset({"XC", "ES", "OT"})
"""External-camera photography, endoscopy, other: what a colposcope's SC may declare."""

OWN_MANUFACTURER = "cervixbatch"
"""The Manufacturer of the SEG and SC we write: our own overlay sent back to us (by a PACS
or a colleague) is not a photo to segment again."""


def resolve_sop_classes(names: Iterable[str]) -> tuple[str, ...]:
    """The SOP class UIDs named by ``names`` (UIDs, or keywords as in DICOM PS3.6 such as
    ``VLPhotographicImageStorage``), in order, without repeats.

    Raises:
        ValueError: naming the first entry that is neither a SOP class UID nor a keyword.

    """
    # pydicom's table of PS3.6 UIDs (re-exported, untyped, by pydicom.uid)
    from pydicom._uid_dict import UID_dictionary
    from pydicom.uid import UID

    by_keyword = {entry[4]: uid for uid, entry in UID_dictionary.items() if entry[1] == "SOP Class"}
    resolved: list[str] = []
    for name in names:
        text = name.strip()
        uid = by_keyword.get(text)
        if uid is None and UID(text).is_valid and text[:1].isdigit():
            uid = text
        if uid is None:
            raise ValueError(f"{name!r} is neither a SOP class UID nor a SOP class keyword")
        if uid not in resolved:
            resolved.append(uid)
    return tuple(resolved)


def describe(uid: str) -> str:
    """A SOP class's name and UID for messages: "CT Image Storage (1.2.840...)"."""
    from pydicom._uid_dict import UID_dictionary
    from pydicom.uid import UID

    name = UID(uid).name if uid in UID_dictionary else ""
    return f"{name} ({uid})" if name and name != uid else uid


@dataclasses.dataclass(frozen=True, slots=True)
class SopClassFilter:
    """The DICOM objects that may be segmented: by SOP class, and modality for SC."""

    classes: frozenset[str] = frozenset(DEFAULT_ACCEPT_CLASSES)

    def check(self, sop_class: str | None, modality: str | None, manufacturer: str | None) -> None:
        """Raise unless an object of this SOP class (and modality) may be segmented.

        Raises:
            InputRejected: ``UNSUPPORTED_SOP_CLASS``, saying which class (or modality) it is.

        """
        if not sop_class:
            raise InputRejected(
                RejectReason.UNSUPPORTED_SOP_CLASS,
                "the DICOM object names no SOP class, so its kind of image is unknown",
            )
        if sop_class not in self.classes:
            raise InputRejected(
                RejectReason.UNSUPPORTED_SOP_CLASS,
                f"the DICOM object is a {describe(sop_class)}, not a kind of image segmented "
                "here (see [dicom] accept_classes)",
            )
        shown = (modality or "OT")[:16]  # a CS value: 16 characters at most
        if sop_class in SECONDARY_CAPTURE_CLASSES and shown not in SC_MODALITIES:
            raise InputRejected(
                RejectReason.UNSUPPORTED_SOP_CLASS,
                f"the DICOM object is a Secondary Capture of modality {shown}: only XC, ES, "
                "OT or none can be a colposcopy photo",
            )
        if (manufacturer or "").strip() == OWN_MANUFACTURER:
            raise InputRejected(
                RejectReason.UNSUPPORTED_SOP_CLASS,
                "the DICOM object is an output of cervixbatch (an overlay), not a photo",
            )
