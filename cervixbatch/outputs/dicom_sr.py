"""The measurements of one segmented frame as a DICOM Structured Report: ``sr.dcm``.

A Comprehensive 3D SR holding a TID 1500 Measurement Report (built with highdicom) beside
the frame's SEG, in the source's study, in a new series. Two planar ROI groups
(TID 1410), each referencing its SEG segment (and through it the source frame):

- segment 1, the cervix region: the share of the picture it covers (%);
- segment 2, the acetowhite lesion: its share of the cervix region (%) and, when the
  source has a Pixel Spacing, its area in mm².

The values are counted on the very masks the SEG holds, so the report says what the SEG
shows. Every measurement names the algorithm and the model pair (sha256 prefixes). The
shares have no standard code: they use the private coding scheme ``99CVXB``, declared in
the Coding Scheme Identification Sequence; the area is SNOMED CT "Area" in UCUM mm².

Like the SEG's builder this never puts a tag value into an exception message: a failure
is a :class:`~cervixbatch.errors.DicomOutputSkipped` naming only the exception type.
"""

from __future__ import annotations

import dataclasses
import io
from pathlib import Path
from typing import Any

import highdicom as hd
import numpy as np
import numpy.typing as npt
import pydicom
from pydicom.dataset import Dataset
from pydicom.sr.codedict import codes
from pydicom.sr.coding import Code
from pydicom.uid import generate_uid

from cervixbatch.errors import DicomOutputSkipped
from cervixbatch.outputs.atomic import write_atomic
from cervixbatch.outputs.dicom import (
    CERVIX_CATEGORY,
    CERVIX_TYPE,
    LESION_CATEGORY,
    LESION_TYPE,
    MANUFACTURER,
    MODEL_NAME,
    VERSION_PREFIX,
)
from cervixbatch.outputs.dicom_source import check_source
from cervixbatch.version import __version__

__all__ = ["SR_NAME", "SrOutput", "write_dicom_sr"]

SR_NAME = "sr.dcm"
SERIES_NUMBER_SR = 9703  # after the SEG (9701) and SC (9702) series

PRIVATE_SCHEME = "99CVXB"
CERVIX_SHARE = Code("CVXB001", PRIVATE_SCHEME, "Cervix region share of image area")
LESION_SHARE = Code("CVXB002", PRIVATE_SCHEME, "Lesion share of cervix region area")
AREA = Code("42798000", "SCT", "Area")
PERCENT = Code("%", "UCUM", "percent")
SQUARE_MM = Code("mm2", "UCUM", "square millimeter")
COLPOSCOPY = Code("392003006", "SCT", "Colposcopy")
DEVICE_UID = str(generate_uid(entropy_srcs=["cervixbatch", "device observer"]))


@dataclasses.dataclass(frozen=True, slots=True)
class SrOutput:
    """What :func:`write_dicom_sr` wrote."""

    path: Path
    sop_instance_uid: str
    cervix_share: float  # percent of the picture
    lesion_share: float  # percent of the cervix region
    lesion_area_mm2: float | None  # None without a Pixel Spacing


def write_dicom_sr(
    header: Dataset,
    seg_path: Path,
    frame: int,
    *,
    cervix_mask: npt.NDArray[np.uint8],
    lesion_mask: npt.NDArray[np.uint8],
    folder: Path,
    model_versions: dict[str, str],
    software_version: str = __version__,
) -> SrOutput:
    """Write ``sr.dcm`` for frame ``frame`` (0-based) of a DICOM source, next to its SEG.

    Args:
        header: The source's dataset, the one the SEG was built from.
        seg_path: The frame's SEG (``seg.dcm``) as :mod:`cervixbatch.outputs.dicom` wrote it.
        frame: The 0-based frame index within the source.
        cervix_mask: The cervix mask the SEG holds (H x W, non-zero is foreground).
        lesion_mask: The lesion mask the SEG holds.
        folder: The frame's output folder.
        model_versions: ``{"cervix": sha256, "lesion": sha256}``.
        software_version: cervixbatch's version.

    Raises:
        DicomOutputSkipped: highdicom or pydicom refuse the report (``not_buildable``,
            ``not_encodable``); the message names only the exception's type.

    """
    cervix = int(np.count_nonzero(cervix_mask))
    lesion = int(np.count_nonzero(lesion_mask))
    cervix_share = 100.0 * cervix / max(1, cervix_mask.size)
    lesion_share = 100.0 * lesion / cervix if cervix else 0.0
    spacing = pixel_spacing_mm(header)
    lesion_mm2 = lesion * spacing[0] * spacing[1] if spacing else None
    versions = {s: str(model_versions.get(s, "unknown"))[:VERSION_PREFIX] for s in model_versions}
    try:
        seg = pydicom.dcmread(seg_path)
        sr = _build(
            header,
            seg,
            frame,
            versions=versions,
            software=software_version,
            values=(cervix_share, lesion_share, lesion_mm2),
        )
    except Exception as exc:  # noqa: BLE001 - highdicom raises ValueError, TypeError, …
        raise DicomOutputSkipped(
            "not_buildable", f"highdicom could not build the DICOM SR ({type(exc).__name__})"
        ) from None
    buffer = io.BytesIO()
    try:
        pydicom.dcmwrite(buffer, sr, enforce_file_format=True)
    except Exception as exc:  # noqa: BLE001 - pydicom raises many types on an invalid dataset
        raise DicomOutputSkipped(
            "not_encodable", f"the DICOM SR cannot be encoded ({type(exc).__name__})"
        ) from None
    path = folder / SR_NAME
    write_atomic(path, buffer.getvalue())
    return SrOutput(path, str(sr.SOPInstanceUID), cervix_share, lesion_share, lesion_mm2)


def pixel_spacing_mm(header: Dataset) -> tuple[float, float] | None:
    """The source's Pixel Spacing (row, column) in mm when it holds two positive numbers."""
    value: Any = header.get("PixelSpacing")
    try:
        row, column = (float(v) for v in value)
    except (TypeError, ValueError):
        return None
    return (row, column) if row > 0 and column > 0 else None


def _build(
    header: Dataset,
    seg: Dataset,
    frame: int,
    *,
    versions: dict[str, str],
    software: str,
    values: tuple[float, float, float | None],
) -> hd.sr.Comprehensive3DSR:
    cervix_share, lesion_share, lesion_mm2 = values
    algorithm = hd.sr.AlgorithmIdentification(
        name="cervixbatch",
        version=software,
        parameters=[f"cervix_model={versions['cervix']}", f"lesion_model={versions['lesion']}"],
    )

    def measured(name: Code, value: float, unit: Code) -> hd.sr.Measurement:
        return hd.sr.Measurement(
            name=name, value=round(value, 4), unit=unit, algorithm_id=algorithm
        )

    def group(segment: int, label: str, measurements: list[hd.sr.Measurement]) -> Any:
        return hd.sr.PlanarROIMeasurementsAndQualitativeEvaluations(
            tracking_identifier=hd.sr.TrackingIdentifier(
                uid=_uid(header, software, versions, f"tracking {segment}"), identifier=label
            ),
            # The SEG holds one frame per segment, in segment order.
            referenced_segment=hd.sr.ReferencedSegmentationFrame.from_segmentation(
                seg, frame_number=segment, segment_number=segment
            ),
            finding_type=CERVIX_TYPE if segment == 1 else LESION_TYPE,
            finding_category=CERVIX_CATEGORY if segment == 1 else LESION_CATEGORY,
            finding_sites=[hd.sr.FindingSite(CERVIX_TYPE)] if segment == 2 else None,
            algorithm_id=algorithm,
            measurements=measurements,
        )

    lesion = [measured(LESION_SHARE, lesion_share, PERCENT)]
    if lesion_mm2 is not None:
        lesion.append(measured(AREA, lesion_mm2, SQUARE_MM))
    observer = hd.sr.ObserverContext(
        observer_type=codes.DCM.Device,
        observer_identifying_attributes=hd.sr.DeviceObserverIdentifyingAttributes(
            uid=DEVICE_UID, name="cervixbatch", manufacturer_name=MANUFACTURER,
            model_name=MODEL_NAME,
        ),
    )  # fmt: skip
    report = hd.sr.MeasurementReport(
        observation_context=hd.sr.ObservationContext(observer_device_context=observer),
        procedure_reported=COLPOSCOPY,
        imaging_measurements=[
            group(1, "Cervix region", [measured(CERVIX_SHARE, cervix_share, PERCENT)]),
            group(2, "Acetowhite lesion", lesion),
        ],
    )
    sr = hd.sr.Comprehensive3DSR(
        evidence=[header, seg],
        content=report,
        series_instance_uid=_uid(header, software, versions, "sr"),
        series_number=SERIES_NUMBER_SR,
        sop_instance_uid=generate_uid(),
        instance_number=frame + 1,
        manufacturer=MANUFACTURER,
        is_complete=True,
        series_description="cervixbatch measurements",
    )
    _fix_image_references(sr, str(seg.SOPClassUID), single_frame=check_source(header)[0] == 1)
    scheme = Dataset()
    scheme.CodingSchemeDesignator = PRIVATE_SCHEME
    scheme.CodingSchemeName = "cervixbatch measurements"
    scheme.CodingSchemeResponsibleOrganization = "cervixbatch"
    sr.CodingSchemeIdentificationSequence = [scheme]
    return sr


def _fix_image_references(sr: Dataset, seg_class: str, *, single_frame: bool) -> None:
    """The Image SOP Instance Reference Macro takes a frame number or a segment number, not
    both (highdicom writes both for a SEG frame), and no frame number for a single-frame
    image (highdicom writes 1): PS3.3 Table 10-3, as dciodvfy checks it."""
    stack = list(sr.get("ContentSequence", []))
    while stack:
        item = stack.pop()
        stack.extend(item.get("ContentSequence", []))
        if item.get("ValueType") != "IMAGE":
            continue
        for reference in item.get("ReferencedSOPSequence", []):
            has_frame = "ReferencedFrameNumber" in reference
            if str(reference.ReferencedSOPClassUID) == seg_class:
                if has_frame and "ReferencedSegmentNumber" in reference:
                    del reference.ReferencedSegmentNumber
            elif single_frame and has_frame:
                del reference.ReferencedFrameNumber


def _uid(header: Dataset, software: str, versions: dict[str, str], kind: str) -> str:
    """The same source, kind and versions give the same UID (like the SEG's series)."""
    entropy = [str(header.SOPInstanceUID), kind, software, *versions.values()]
    return str(generate_uid(entropy_srcs=entropy))
