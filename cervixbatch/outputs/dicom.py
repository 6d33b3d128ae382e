"""DICOM outputs for DICOM inputs: a binary Segmentation and a Secondary Capture overlay.

For one frame of one DICOM source this writes, into the frame's outbox folder:

- ``seg.dcm``: a DICOM Segmentation (BINARY) with two segments, 1 = cervix region and
  2 = acetowhite lesion, at the source frame's full resolution, referencing that frame;
- ``overlay_sc.dcm``: a Secondary Capture Image (RGB) of the overlay.

Both join the source's study (Study Instance UID, patient and study modules copied from
it) in new series. The series UIDs are derived from the source instance, the object kind
and the model versions, so every frame of one source lands in the same two series; the
SOP Instance UIDs are new on every call.

highdicom accepts only a single source frame when the source has no Frame of Reference
(VL Photographic, VL/Video Endoscopic, Secondary Captures). So one SEG is written per
source frame, always: highdicom is shown a header-only copy of the source as a plain
single-frame image, and the true SOP class and the Referenced Frame Number are put back
into the references afterwards. Sources with a Frame of Reference take the same path, for
simplicity: the SEG is aligned pixel for pixel through its references, not in space.

The source's header is the dataset parsed from the very bytes the masks were computed
from: the source file is never read again. A header that cannot carry a SEG and SC (no
Study Instance UID, a character set that cannot be copied, one highdicom refuses) raises
:class:`DicomOutputSkipped`: the input's masks and overlay stand, the row says why.

Patient data is copied from file to file by highdicom and pydicom only: it is never read
into a log field or an exception message.
"""

from __future__ import annotations

import copy
import dataclasses
import io
from pathlib import Path
from typing import Any

import highdicom as hd
import numpy as np
import numpy.typing as npt
import pydicom
from pydicom.dataset import Dataset
from pydicom.sr.coding import Code
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from cervixbatch.errors import DicomOutputSkipped, OutputError
from cervixbatch.outputs.atomic import write_atomic
from cervixbatch.outputs.dicom_source import check_source, source_view
from cervixbatch.version import __version__

__all__ = [
    "CERVIX_CATEGORY",
    "CERVIX_TYPE",
    "LESION_CATEGORY",
    "LESION_TYPE",
    "SC_NAME",
    "SEG_NAME",
    "DicomOutputs",
    "write_dicom_results",
]

SEG_NAME = "seg.dcm"
SC_NAME = "overlay_sc.dcm"

MANUFACTURER = "cervixbatch"
MODEL_NAME = "cervixbatch two-stage UNet"
SERIES_NUMBER_SEG = 9701  # high numbers keep derived series after the acquired ones
SERIES_NUMBER_SC = 9702
VERSION_PREFIX = 12  # hex digits of a model's sha256 shown in the files

# Categories from CID 7150 (Segmentation Property Categories); types are SNOMED CT.
CERVIX_CATEGORY = Code("91723000", "SCT", "Anatomical Structure")
CERVIX_TYPE = Code("71252005", "SCT", "Cervix")  # SNOMED "Cervix uteri structure"
LESION_CATEGORY = Code("49755003", "SCT", "Morphologically Abnormal Structure")
LESION_TYPE = Code("52988006", "SCT", "Lesion")
AI_FAMILY = Code("123110", "DCM", "Artificial Intelligence")  # CID 7162
PROCESSING = Code("109104", "DCM", "Processing Equipment")
SOURCE_PURPOSE = Code("121322", "DCM", "Source image for image processing operation")


@dataclasses.dataclass(frozen=True, slots=True)
class DicomOutputs:
    """What :func:`write_dicom_results` wrote for one source frame."""

    seg: Path
    sc: Path
    seg_sop_instance_uid: str
    sc_sop_instance_uid: str
    seg_series_uid: str
    sc_series_uid: str
    study_uid: str


@dataclasses.dataclass(frozen=True, slots=True)
class _Job:
    """What both builders need to know about one source frame."""

    header: Dataset
    frame: int  # 0-based
    frames: int
    versions: dict[str, str]  # sha256 prefixes of the two models
    software: str
    equipment: hd.ContributingEquipment

    @property
    def frame_number(self) -> int | None:
        """The 1-based frame to reference, for a source that has more than one."""
        return self.frame + 1 if self.frames > 1 else None

    def series_uid(self, kind: str) -> str:
        """The same inputs give the same series: every frame of a source joins one series."""
        entropy = [str(self.header.SOPInstanceUID), kind, self.software, *self.versions.values()]
        return str(generate_uid(entropy_srcs=entropy))


def write_dicom_results(
    header: Dataset,
    frame: int,
    *,
    cervix_mask: npt.NDArray[np.uint8],
    lesion_mask: npt.NDArray[np.uint8],
    overlay_rgb: npt.NDArray[np.uint8],
    folder: Path,
    model_versions: dict[str, str],
    software_version: str = __version__,
) -> DicomOutputs:
    """Write the SEG and the overlay SC of frame ``frame`` (0-based) of a DICOM source.

    Args:
        header: The source's dataset (pixel data not needed), parsed from the very bytes
            the masks were computed from (``DecodedInput.dicom_header``); never re-read
            from the source's path, which may hold other bytes by now.
        frame: The 0-based frame index within the source.
        cervix_mask: H x W uint8, 0/255 (any non-zero is foreground), at the frame's size.
        lesion_mask: Same, for the lesion.
        overlay_rgb: The overlay picture, H' x W' x 3 uint8 (any size).
        folder: An existing folder inside the outbox; the files get fixed names there.
        model_versions: ``{"cervix": sha256, "lesion": sha256}`` of the two models.
        software_version: cervixbatch's version.

    Raises:
        DicomOutputSkipped: The source's header cannot carry a SEG and SC (no Study
            Instance UID, an encoding or character set that cannot be copied, highdicom
            refuses it): the input's other outputs stand, this says why these are missing.
        OutputError: The masks do not fit the source, or the files cannot be written.
            No message carries patient data.

    """
    frames, size = check_source(header)
    if not 0 <= frame < frames:
        raise OutputError(f"frame {frame} is out of range: the DICOM source has {frames}")
    for name, mask in (("cervix", cervix_mask), ("lesion", lesion_mask)):
        if mask.shape != size:
            raise OutputError(f"the {name} mask is {mask.shape}, the source frame is {size}")
    if overlay_rgb.ndim != 3 or overlay_rgb.shape[2] != 3 or overlay_rgb.dtype != np.uint8:
        raise OutputError(f"the overlay must be H x W x 3 uint8, got {overlay_rgb.shape}")

    versions = {
        stage: str(model_versions.get(stage, "unknown"))[:VERSION_PREFIX]
        for stage in ("cervix", "lesion")
    }
    job = _Job(
        header, frame, frames, versions, software_version, _equipment(versions, software_version)
    )
    try:
        seg = _build_seg(job, cervix_mask, lesion_mask)
        sc = _build_sc(job, overlay_rgb)
    except Exception as exc:  # noqa: BLE001 - highdicom raises ValueError, TypeError, …
        # The message of a highdicom error may quote a tag value: only its type is kept.
        raise DicomOutputSkipped(
            "not_buildable", f"highdicom could not build the DICOM outputs ({type(exc).__name__})"
        ) from None

    outputs = DicomOutputs(
        seg=folder / SEG_NAME,
        sc=folder / SC_NAME,
        seg_sop_instance_uid=str(seg.SOPInstanceUID),
        sc_sop_instance_uid=str(sc.SOPInstanceUID),
        seg_series_uid=str(seg.SeriesInstanceUID),
        sc_series_uid=str(sc.SeriesInstanceUID),
        study_uid=str(header.StudyInstanceUID),
    )
    seg_bytes, sc_bytes = _encode(seg), _encode(sc)
    write_atomic(outputs.seg, seg_bytes)
    write_atomic(outputs.sc, sc_bytes)
    return outputs


def _equipment(versions: dict[str, str], software: str) -> hd.ContributingEquipment:
    return hd.ContributingEquipment(
        manufacturer=MANUFACTURER,
        purpose_of_reference=PROCESSING,
        manufacturer_model_name=MODEL_NAME,
        software_versions=[
            f"cervixbatch {software}",
            f"cervix model {versions['cervix']}",
            f"lesion model {versions['lesion']}",
        ],
        contribution_description="Automatic segmentation of cervix and acetowhite lesion",
    )


def _build_seg(
    job: _Job, cervix_mask: npt.NDArray[np.uint8], lesion_mask: npt.NDArray[np.uint8]
) -> hd.seg.Segmentation:
    """The binary SEG: segment 1 the cervix region, 2 the lesion, one frame each."""
    versions = job.versions
    algorithm = hd.AlgorithmIdentificationSequence(
        name="cervixbatch",
        family=AI_FAMILY,
        version=job.software,
        source=MANUFACTURER,
        parameters={"cervix_model": versions["cervix"], "lesion_model": versions["lesion"]},
    )
    # (number, label, category, type, colour, anatomic region): segment 1 the cervix,
    # segment 2 the lesion, which lies in the cervix
    segments = [
        (1, "Cervix region", CERVIX_CATEGORY, CERVIX_TYPE, (0, 230, 90), None),
        (2, "Acetowhite lesion", LESION_CATEGORY, LESION_TYPE, (255, 225, 0), [CERVIX_TYPE]),
    ]
    descriptions = [
        hd.seg.SegmentDescription(
            segment_number=number,
            segment_label=label,
            segmented_property_category=category,
            segmented_property_type=property_type,
            algorithm_type=hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC,
            algorithm_identification=algorithm,
            anatomic_regions=regions,
            display_color=hd.color.CIELabColor.from_rgb(*colour),
        )
        for number, label, category, property_type, colour, regions in segments
    ]
    # (frames=1, rows, columns, segments=2): the "stacked segments" layout.
    stacked = np.stack([cervix_mask != 0, lesion_mask != 0], axis=-1)[np.newaxis].astype(np.uint8)
    seg = hd.seg.Segmentation(
        source_images=[source_view(job.header)],
        pixel_array=stacked,
        segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
        segment_descriptions=descriptions,
        series_instance_uid=job.series_uid("seg"),
        series_number=SERIES_NUMBER_SEG,
        sop_instance_uid=generate_uid(),
        instance_number=job.frame + 1,
        manufacturer=MANUFACTURER,
        manufacturer_model_name=MODEL_NAME,
        software_versions=job.software,
        device_serial_number="0",
        series_description="cervixbatch segmentation",
        content_description="Cervix region and acetowhite lesion",
        content_label="CERVIXBATCH",
        # An empty lesion is a finding too: both segments always have their frame.
        omit_empty_frames=False,
        transfer_syntax_uid=ExplicitVRLittleEndian,
        contributing_equipment=[job.equipment],
    )
    _restore_references(seg, str(job.header.SOPClassUID), job.frame_number)
    # General Image, Type 2C without a Frame of Reference: the source's, or empty.
    orientation = _patient_orientation(job.header)
    seg.PatientOrientation = list(orientation) if orientation else None
    return seg


def _restore_references(seg: Dataset, sop_class_uid: str, frame_number: int | None) -> None:
    """Puts the source's true SOP class, and its frame number, into every reference.

    highdicom shares one item between the Source Image Sequence and the Common Instance
    Reference, where a frame number is not allowed: each place gets its own copy.
    """

    def fixed(item: Dataset, *, frame: bool) -> Dataset:
        item = copy.deepcopy(item)
        item.ReferencedSOPClassUID = sop_class_uid
        if frame and frame_number is not None:
            item.ReferencedFrameNumber = frame_number
        return item

    for group in seg.PerFrameFunctionalGroupsSequence:
        for derivation in group.get("DerivationImageSequence", []):
            derivation.SourceImageSequence = [
                fixed(item, frame=True) for item in derivation.SourceImageSequence
            ]
    seg.SourceImageSequence = [fixed(item, frame=True) for item in seg.SourceImageSequence]
    for series in seg.ReferencedSeriesSequence:
        series.ReferencedInstanceSequence = [
            fixed(item, frame=False) for item in series.ReferencedInstanceSequence
        ]


def _build_sc(job: _Job, overlay_rgb: npt.NDArray[np.uint8]) -> hd.sc.SCImage:
    """The overlay as an RGB Secondary Capture in the source's study, referencing it."""
    header = job.header
    view = source_view(header)
    orientation = _patient_orientation(view)
    sc = hd.sc.SCImage.from_ref_dataset(
        ref_dataset=view,
        pixel_array=np.ascontiguousarray(overlay_rgb),
        photometric_interpretation=hd.PhotometricInterpretationValues.RGB,
        bits_allocated=8,
        coordinate_system=hd.CoordinateSystemNames.PATIENT,
        series_instance_uid=job.series_uid("sc"),
        series_number=SERIES_NUMBER_SC,
        sop_instance_uid=generate_uid(),
        instance_number=job.frame + 1,
        manufacturer=MANUFACTURER,
        # highdicom needs an orientation for PATIENT; replaced below when the source has none.
        patient_orientation=orientation or ("L", "F"),
        transfer_syntax_uid=ExplicitVRLittleEndian,
        contributing_equipment=[job.equipment],
        series_description="cervixbatch overlay",
        software_versions=job.software,
        manufacturer_model_name=MODEL_NAME,
    )
    if orientation is None:
        sc.PatientOrientation = None  # type: ignore[assignment]  # Type 2: empty, no claim
    reference = Dataset()
    reference.ReferencedSOPClassUID = header.SOPClassUID
    reference.ReferencedSOPInstanceUID = header.SOPInstanceUID
    if job.frame_number is not None:
        reference.ReferencedFrameNumber = job.frame_number
    reference.PurposeOfReferenceCodeSequence = [hd.sr.CodedConcept(*SOURCE_PURPOSE)]
    sc.SourceImageSequence = [reference]
    sc.DerivationDescription = "Overlay of the cervix region and acetowhite lesion contours"
    sc.BurnedInAnnotation = "YES"  # the overlay carries drawn contours and text
    # General Series: Laterality is Type 2C unless the body part is known to be unpaired.
    if str(header.get("Laterality") or "") in {"R", "L"}:
        sc.Laterality = header.Laterality
    sc.BodyPartExamined = str(header.get("BodyPartExamined") or "").strip() or "CERVIX"
    return sc


def _patient_orientation(header: Dataset) -> tuple[str, str] | None:
    """The source's orientation when it is two valid biped values, else None."""
    value: Any = header.get("PatientOrientation")
    if value is None or isinstance(value, str) or len(value) != 2:
        return None
    try:
        row, column = (hd.enum.PatientOrientationValuesBiped(str(v)).value for v in value)
    except ValueError:
        return None
    return row, column


def _encode(ds: Dataset) -> bytes:
    buffer = io.BytesIO()
    try:
        pydicom.dcmwrite(buffer, ds, enforce_file_format=True)
    except Exception as exc:  # noqa: BLE001 - pydicom raises many types on an invalid dataset
        raise DicomOutputSkipped(
            "not_encodable", f"the DICOM output cannot be encoded ({type(exc).__name__})"
        ) from None
    return buffer.getvalue()
