"""The measurements as a DICOM SR (Comprehensive 3D SR, TID 1500): values counted on the
SEG's masks, each group referencing its SEG segment and the source frame, the model pair
named, valid for dciodvfy, read back with highdicom."""

from __future__ import annotations

import subprocess
from pathlib import Path

import highdicom as hd
import numpy as np
import pydicom
import pytest
from pydicom.sr.coding import Code
from support.dicom_sources import VIDEO_ENDOSCOPIC, VL_PHOTOGRAPHIC, make_source
from support.tools import require_executable

from cervixbatch.outputs.dicom import write_dicom_results
from cervixbatch.outputs.dicom_sr import AREA, SR_NAME, write_dicom_sr

VERSIONS = {"cervix": "c0ffee" + "1" * 58, "lesion": "bead00" + "2" * 58}
COMPREHENSIVE_3D_SR = "1.2.840.10008.5.1.4.1.1.88.34"


def masks() -> tuple[np.ndarray, np.ndarray]:
    """100 x 100: a 60 x 50 cervix (30 % of the picture), a 10 x 15 lesion in it (5 %)."""
    cervix = np.zeros((100, 100), np.uint8)
    cervix[20:80, 25:75] = 255
    lesion = np.zeros_like(cervix)
    lesion[40:50, 30:45] = 255
    return cervix, lesion


def write_all(source: Path, frame: int, folder: Path, spacing: list[float] | None = None):
    header = pydicom.dcmread(source, stop_before_pixels=True)
    header.PixelSpacing = spacing  # None: removed
    if spacing is None:
        del header.PixelSpacing
    folder.mkdir(parents=True, exist_ok=True)
    cervix, lesion = masks()
    dicom = write_dicom_results(
        header,
        frame,
        cervix_mask=cervix,
        lesion_mask=lesion,
        overlay_rgb=np.zeros((100, 100, 3), np.uint8),
        folder=folder,
        model_versions=VERSIONS,
    )
    sr = write_dicom_sr(
        header,
        dicom.seg,
        frame,
        cervix_mask=cervix,
        lesion_mask=lesion,
        folder=folder,
        model_versions=VERSIONS,
    )
    return header, dicom, sr


def measurements(group: object) -> dict[str, tuple[float, str]]:
    return {
        m.name.meaning: (float(m.value), m.unit.value)
        for m in group.get_measurements()  # type: ignore[attr-defined]
    }


def texts(item: pydicom.Dataset) -> dict[str, list[str]]:
    """Concept code -> the TEXT values among an SR content item's children."""
    found: dict[str, list[str]] = {}
    for child in item.get("ContentSequence", []):
        if child.ValueType == "TEXT":
            code = str(child.ConceptNameCodeSequence[0].CodeValue)
            found.setdefault(code, []).append(str(child.TextValue))
    return found


@pytest.fixture
def vl_photo(tmp_path: Path) -> Path:
    return make_source(tmp_path, "SC_rgb_rle.dcm", VL_PHOTOGRAPHIC, decompress=True, stem="vlp")


def test_sr_holds_the_shares_and_lesion_area_each_referencing_its_segment(
    vl_photo: Path, tmp_path: Path
) -> None:
    """With Pixel Spacing 0.1 mm: cervix 30 % of the picture, lesion 5 % of the cervix and
    1.5 mm²; group 1 references SEG frame 1 (cervix), group 2 frame 2 (lesion); the source
    image and the model pair are named; the SR is in the source's study."""
    header, dicom, sr = write_all(vl_photo, 0, tmp_path / "out", spacing=[0.1, 0.1])
    assert sr.path == tmp_path / "out" / SR_NAME
    assert (sr.cervix_share, sr.lesion_share) == (30.0, 5.0)
    assert sr.lesion_area_mm2 == pytest.approx(1.5)

    report = hd.sr.srread(sr.path)
    assert report.SOPClassUID == COMPREHENSIVE_3D_SR
    assert report.SOPInstanceUID == sr.sop_instance_uid
    assert report.StudyInstanceUID == header.StudyInstanceUID
    assert report.PatientID == header.PatientID and report.PatientName == header.PatientName
    assert report.SeriesInstanceUID not in {dicom.seg_series_uid, dicom.sc_series_uid}
    cervix, lesion = report.content.get_planar_roi_measurement_groups()
    assert str(cervix.tracking_identifier) == "Cervix region"
    assert measurements(cervix) == {"Cervix region share of image area": (30.0, "%")}
    assert measurements(lesion) == {
        "Lesion share of cervix region area": (5.0, "%"),
        AREA.meaning: (1.5, "mm2"),
    }
    for number, group in ((1, cervix), (2, lesion)):
        reference = group.referenced_segmentation_frame
        (seg_item,) = reference[0].ReferencedSOPSequence
        assert seg_item.ReferencedSOPInstanceUID == dicom.seg_sop_instance_uid
        assert seg_item.ReferencedFrameNumber == number  # the SEG frame of segment n
        (source_item,) = reference[1].ReferencedSOPSequence
        assert source_item.ReferencedSOPInstanceUID == header.SOPInstanceUID
        assert source_item.ReferencedSOPClassUID == VL_PHOTOGRAPHIC
        assert "ReferencedFrameNumber" not in source_item  # a single-frame source
        for measurement in group.get_measurements():
            algorithm = texts(measurement[0])
            assert algorithm["111001"] == ["cervixbatch"]  # Algorithm Name
            assert algorithm["111002"] == [  # Algorithm Parameters: the model pair
                "cervix_model=c0ffee111111",
                "lesion_model=bead00222222",
            ]
    evidence = {
        str(item.ReferencedSOPInstanceUID)
        for study in report.CurrentRequestedProcedureEvidenceSequence
        for series in study.ReferencedSeriesSequence
        for item in series.ReferencedSOPSequence
    }
    assert evidence == {str(header.SOPInstanceUID), dicom.seg_sop_instance_uid}


def test_without_pixel_spacing_there_is_no_area(vl_photo: Path, tmp_path: Path) -> None:
    """No Pixel Spacing in the source: the shares only, no lesion area in mm²."""
    _, _, sr = write_all(vl_photo, 0, tmp_path / "out")
    assert sr.lesion_area_mm2 is None
    _, lesion = hd.sr.srread(sr.path).content.get_planar_roi_measurement_groups()
    assert AREA.meaning not in measurements(lesion)
    names = [m.name for m in lesion.get_measurements()]
    assert Code("42798000", "SCT", "Area") not in names


def test_dciodvfy_finds_no_errors_in_the_sr(tmp_path: Path) -> None:
    """dciodvfy validates the SR of a single-frame photo and of frame 2 of a multi-frame
    Video Endoscopic source (whose references carry the frame number) without an error."""
    dciodvfy = require_executable("dciodvfy", install="Debian: apt-get install dicom3tools")
    photo = make_source(tmp_path, "SC_rgb_rle.dcm", VL_PHOTOGRAPHIC, decompress=True, stem="p")
    video = make_source(
        tmp_path, "SC_rgb_rle_2frame.dcm", VIDEO_ENDOSCOPIC, decompress=False, stem="v"
    )
    written = [write_all(photo, 0, tmp_path / "photo", spacing=[0.1, 0.1])[2]]
    written.append(write_all(video, 1, tmp_path / "video")[2])
    (_, lesion) = hd.sr.srread(written[1].path).content.get_planar_roi_measurement_groups()
    (source_item,) = lesion.referenced_segmentation_frame[1].ReferencedSOPSequence
    assert source_item.ReferencedFrameNumber == 2
    for sr in written:
        run = subprocess.run(
            [dciodvfy, "-new", str(sr.path)], capture_output=True, text=True, check=False
        )
        output = (run.stdout + run.stderr).strip()
        errors = [line for line in output.splitlines() if line.startswith("Error")]
        assert not errors, errors
        # The one warning allowed: our private coding scheme of the two shares.
        warnings = [line for line in output.splitlines() if line.startswith("Warning")]
        assert all("99CVXB" in line for line in warnings), warnings
