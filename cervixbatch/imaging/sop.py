"""Which DICOM objects are colposcopy-capable images: the SOP class filter.

A DICOM file with pixel data is not necessarily a photograph of a cervix: CT, MR,
ultrasound and even Segmentation objects carry pixels too. Segmenting those would write a
"cervix" SEG and overlay into a study of another kind (and forward it to the PACS). So a
DICOM input is segmented only when its SOP class is one of ``[dicom] accept_classes``
(default: the visible-light photographic and endoscopic classes and Secondary Capture);
Secondary Capture, which can hold anything, also needs a modality of XC, ES, OT or none.
Every other object is rejected as ``unsupported_sop_class``.

The default list is the configuration's (``cervixbatch.config.DEFAULT_ACCEPT_CLASSES``),
which also turns keywords into UIDs.
"""

from __future__ import annotations

import dataclasses

from pydicom._uid_dict import UID_dictionary  # PS3.6's UIDs (pydicom.uid re-exports it)
from pydicom.uid import UID

from cervixbatch.config import DEFAULT_ACCEPT_CLASSES
from cervixbatch.errors import InputRejected, RejectReason

__all__ = [
    "OWN_MANUFACTURER",
    "SC_MODALITIES",
    "SECONDARY_CAPTURE_CLASSES",
    "SopClassFilter",
    "describe",
]

SECONDARY_CAPTURE = "1.2.840.10008.5.1.4.1.1.7"

# Every Secondary Capture class: a capture of anything, so the modality must say "photo".
SECONDARY_CAPTURE_CLASSES = frozenset(
    {SECONDARY_CAPTURE, *(f"{SECONDARY_CAPTURE}.{n}" for n in range(1, 5))}
)
SC_MODALITIES = frozenset({"XC", "ES", "OT"})
"""External-camera photography, endoscopy, other: what a colposcope's SC may declare."""

OWN_MANUFACTURER = "cervixbatch"
"""The Manufacturer of the SEG and SC we write: our own overlay sent back to us (by a PACS
or a colleague) is not a photo to segment again."""


def describe(uid: str) -> str:
    """A SOP class's name and UID for messages: "CT Image Storage (1.2.840...)"."""
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
