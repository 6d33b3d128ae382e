"""DICOM outputs: the SEG and overlay SC written for DICOM inputs, read back and validated."""

from __future__ import annotations

import subprocess
from pathlib import Path

import cv2
import highdicom as hd
import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset
from support.dicom_sources import VIDEO_ENDOSCOPIC, VL_PHOTOGRAPHIC, make_source
from support.tools import require_executable

from cervixbatch.errors import DicomOutputSkipped, OutputError
from cervixbatch.outputs.dicom import (
    CERVIX_CATEGORY,
    CERVIX_TYPE,
    LESION_CATEGORY,
    LESION_TYPE,
    SC_NAME,
    SEG_NAME,
    write_dicom_results,
)

SEGMENTATION = "1.2.840.10008.5.1.4.1.1.66.4"
SECONDARY_CAPTURE = "1.2.840.10008.5.1.4.1.1.7"
VERSIONS = {"cervix": "c0ffee" + "1" * 58, "lesion": "bead00" + "2" * 58}
PATIENT = ("PatientName", "PatientID", "PatientBirthDate", "PatientSex")
STUDY = ("StudyInstanceUID", "StudyDate", "StudyTime", "AccessionNumber", "StudyID")


@pytest.fixture
def vl_photo(tmp_path: Path) -> Path:
    return make_source(tmp_path, "SC_rgb_rle.dcm", VL_PHOTOGRAPHIC, decompress=True, stem="vlp")


@pytest.fixture
def video_endoscopic(tmp_path: Path) -> Path:
    # Kept RLE-compressed: only the header of the source is ever read.
    return make_source(
        tmp_path, "SC_rgb_rle_2frame.dcm", VIDEO_ENDOSCOPIC, decompress=False, stem="ves"
    )


def masks(shape: tuple[int, int], shift: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """PNG-style 0/255 masks: a disc (cervix) and a rectangle inside it (lesion)."""
    cervix = np.zeros(shape, np.uint8)
    cv2.circle(cervix, (shape[1] // 2 + shift, shape[0] // 2), min(shape) // 3, 255, -1)
    lesion = np.zeros(shape, np.uint8)
    lesion[45:55, 40 + shift : 58 + shift] = 255
    return cervix, lesion


def overlay(shape: tuple[int, int]) -> np.ndarray:
    rng = np.random.default_rng(3)
    return rng.integers(0, 256, (*shape, 3), dtype=np.uint8)


def header_of(source: Path) -> Dataset:
    """The source's header as the reader parses it (without pixel data)."""
    return pydicom.dcmread(source, stop_before_pixels=True, force=True)


def write(source: Path, frame: int, folder: Path, shift: int = 0):
    folder.mkdir(parents=True, exist_ok=True)
    cervix, lesion = masks((100, 100), shift)
    picture = overlay((80, 90))
    result = write_dicom_results(
        header_of(source),
        frame,
        cervix_mask=cervix,
        lesion_mask=lesion,
        overlay_rgb=picture,
        folder=folder,
        model_versions=VERSIONS,
        software_version="9.9.9",
    )
    return result, cervix, lesion, picture


def check_patient_and_study(out: Dataset, source: Dataset) -> None:
    for keyword in PATIENT + STUDY:
        assert out.get(keyword) == source.get(keyword), keyword


def code_of(item: Dataset) -> tuple[str, str]:
    return str(item.CodeValue), str(item.CodingSchemeDesignator)


def test_single_frame_photo_gives_seg_and_sc_in_the_source_study(
    vl_photo: Path, tmp_path: Path
) -> None:
    """A VL Photographic source gives a 2-segment binary SEG and an RGB SC in its study."""
    folder = tmp_path / "out"
    result, cervix, lesion, picture = write(vl_photo, 0, folder)
    source = pydicom.dcmread(vl_photo)

    assert result.seg == folder / SEG_NAME and result.sc == folder / SC_NAME
    assert sorted(p.name for p in folder.iterdir()) == sorted([SEG_NAME, SC_NAME])  # no temp

    seg = pydicom.dcmread(result.seg)
    assert seg.SOPClassUID == SEGMENTATION and seg.SegmentationType == "BINARY"
    assert seg.SOPInstanceUID == result.seg_sop_instance_uid
    assert seg.SeriesInstanceUID == result.seg_series_uid != source.SeriesInstanceUID
    assert seg.SOPInstanceUID not in {source.SOPInstanceUID, result.sc_sop_instance_uid}
    assert seg.StudyInstanceUID == result.study_uid == source.StudyInstanceUID
    check_patient_and_study(seg, source)
    assert (seg.Rows, seg.Columns) == (source.Rows, source.Columns)

    # References: the common instance reference and the per-frame derivation.
    (series,) = seg.ReferencedSeriesSequence
    assert series.SeriesInstanceUID == source.SeriesInstanceUID
    (instance,) = series.ReferencedInstanceSequence
    assert instance.ReferencedSOPInstanceUID == source.SOPInstanceUID
    assert instance.ReferencedSOPClassUID == VL_PHOTOGRAPHIC
    (ref,) = seg.SourceImageSequence
    assert ref.ReferencedSOPInstanceUID == source.SOPInstanceUID
    assert "ReferencedFrameNumber" not in ref
    for group in seg.PerFrameFunctionalGroupsSequence:
        (src,) = group.DerivationImageSequence[0].SourceImageSequence
        assert src.ReferencedSOPInstanceUID == source.SOPInstanceUID
        assert src.ReferencedSOPClassUID == VL_PHOTOGRAPHIC

    # Segments, codes, algorithm and equipment.
    first, second = seg.SegmentSequence
    assert (first.SegmentNumber, second.SegmentNumber) == (1, 2)
    assert code_of(first.SegmentedPropertyCategoryCodeSequence[0]) == (
        CERVIX_CATEGORY.value,
        "SCT",
    )
    assert code_of(first.SegmentedPropertyTypeCodeSequence[0]) == ("71252005", "SCT")
    assert CERVIX_TYPE.value == "71252005"
    assert code_of(second.SegmentedPropertyCategoryCodeSequence[0]) == (
        LESION_CATEGORY.value,
        "SCT",
    )
    assert code_of(second.SegmentedPropertyTypeCodeSequence[0]) == (LESION_TYPE.value, "SCT")
    algorithm = first.SegmentationAlgorithmIdentificationSequence[0]
    assert algorithm.AlgorithmName == "cervixbatch" and algorithm.AlgorithmVersion == "9.9.9"
    assert "c0ffee111111" in algorithm.AlgorithmParameters
    assert "bead00222222" in algorithm.AlgorithmParameters
    ours = [e for e in seg.ContributingEquipmentSequence if e.Manufacturer == "cervixbatch"]
    assert len(ours) == 1
    assert list(ours[0].SoftwareVersions) == [
        "cervixbatch 9.9.9",
        "cervix model c0ffee111111",
        "lesion model bead00222222",
    ]

    # highdicom reads it back; the masks are exactly those passed.
    hseg = hd.seg.segread(result.seg)
    assert hseg.number_of_segments == 2
    pixels = hseg.get_pixels_by_source_instance([source.SOPInstanceUID])
    assert pixels.shape == (1, 100, 100, 2)
    np.testing.assert_array_equal(pixels[0, :, :, 0], (cervix > 0).astype(pixels.dtype))
    np.testing.assert_array_equal(pixels[0, :, :, 1], (lesion > 0).astype(pixels.dtype))

    sc = pydicom.dcmread(result.sc)
    assert sc.SOPClassUID == SECONDARY_CAPTURE and sc.PhotometricInterpretation == "RGB"
    assert sc.SOPInstanceUID == result.sc_sop_instance_uid
    assert sc.SeriesInstanceUID == result.sc_series_uid
    assert sc.SeriesInstanceUID not in {source.SeriesInstanceUID, seg.SeriesInstanceUID}
    check_patient_and_study(sc, source)
    np.testing.assert_array_equal(sc.pixel_array, picture)
    (sc_ref,) = sc.SourceImageSequence
    assert sc_ref.ReferencedSOPInstanceUID == source.SOPInstanceUID
    assert "ReferencedFrameNumber" not in sc_ref
    image = hd.imread(result.sc)  # highdicom reads it back too
    np.testing.assert_array_equal(image.get_frame(1), picture)


def test_multi_frame_source_gives_one_seg_per_frame_referencing_that_frame(
    video_endoscopic: Path, tmp_path: Path
) -> None:
    """Each frame of a multi-frame source gets its own SEG and SC pointing at that frame."""
    source = pydicom.dcmread(video_endoscopic, stop_before_pixels=True)
    results = [write(video_endoscopic, n, tmp_path / f"frame_{n}", shift=5 * n) for n in (0, 1)]

    seg_series = {r.seg_series_uid for r, *_ in results}
    assert len(seg_series) == 1  # every frame of a source joins one SEG series
    assert len({r.seg_sop_instance_uid for r, *_ in results}) == 2
    for frame, (result, cervix, lesion, _) in enumerate(results):
        seg = pydicom.dcmread(result.seg)
        assert seg.InstanceNumber == frame + 1
        check_patient_and_study(seg, source)
        for group in seg.PerFrameFunctionalGroupsSequence:
            (src,) = group.DerivationImageSequence[0].SourceImageSequence
            assert src.ReferencedSOPClassUID == VIDEO_ENDOSCOPIC
            assert src.ReferencedFrameNumber == frame + 1
        # No frame number in the common instance reference (not allowed there).
        ref = seg.ReferencedSeriesSequence[0].ReferencedInstanceSequence[0]
        assert "ReferencedFrameNumber" not in ref
        pixels = hd.seg.segread(result.seg).get_pixels_by_source_frame(
            source.SOPInstanceUID, [frame + 1]
        )
        np.testing.assert_array_equal(pixels[0, :, :, 0], (cervix > 0).astype(pixels.dtype))
        np.testing.assert_array_equal(pixels[0, :, :, 1], (lesion > 0).astype(pixels.dtype))
        sc = pydicom.dcmread(result.sc)
        assert sc.SourceImageSequence[0].ReferencedFrameNumber == frame + 1
        check_patient_and_study(sc, source)


def test_sparse_source_header_and_empty_masks_are_fine(vl_photo: Path, tmp_path: Path) -> None:
    """Missing type-2 attributes, an odd sex value and empty masks still give valid files."""
    ds = pydicom.dcmread(vl_photo)
    for keyword in ("PatientBirthDate", "AccessionNumber", "StudyID", "ReferringPhysicianName"):
        delattr(ds, keyword)
    ds.PatientSex = "X"
    sparse = tmp_path / "sparse.dcm"
    ds.save_as(sparse)
    empty = np.zeros((100, 100), np.uint8)
    folder = tmp_path / "out"
    folder.mkdir()
    result = write_dicom_results(
        header_of(sparse),
        0,
        cervix_mask=empty,
        lesion_mask=empty,
        overlay_rgb=overlay((100, 100)),
        folder=folder,
        model_versions=VERSIONS,
    )
    hseg = hd.seg.segread(result.seg)
    pixels = hseg.get_pixels_by_source_instance([ds.SOPInstanceUID])
    assert pixels.shape == (1, 100, 100, 2) and not pixels.any()
    assert pydicom.dcmread(result.seg).PatientID == "PID-778899"


def test_failures_raise_output_error_without_patient_data(vl_photo: Path, tmp_path: Path) -> None:
    """Bad masks or frames raise OutputError; a source that cannot carry a SEG (no Study
    Instance UID, an unknown character set) raises DicomOutputSkipped with a reason code;
    neither quotes patient data."""
    cervix, lesion = masks((100, 100))
    good = {"cervix_mask": cervix, "lesion_mask": lesion, "overlay_rgb": overlay((10, 10))}
    no_study = header_of(vl_photo)
    del no_study.StudyInstanceUID
    odd_charset = header_of(vl_photo)
    odd_charset.SpecificCharacterSet = "ISO_IR 9999"
    cases: list[tuple[Dataset, int, dict[str, np.ndarray], type[Exception], str]] = [
        (header_of(vl_photo), 0, {**good, "cervix_mask": np.zeros((50, 50), np.uint8)},
         OutputError, "mask"),
        (header_of(vl_photo), 1, good, OutputError, "out of range"),
        (header_of(vl_photo), 0, {**good, "overlay_rgb": np.zeros((10, 10), np.uint8)},
         OutputError, "overlay"),
        (no_study, 0, good, DicomOutputSkipped, "missing_uid: .*StudyInstanceUID"),
        (odd_charset, 0, good, DicomOutputSkipped, "character_set"),
    ]  # fmt: skip
    for header, frame, arrays, error, expected in cases:
        with pytest.raises(error, match=expected) as info:
            write_dicom_results(header, frame, folder=tmp_path, model_versions=VERSIONS, **arrays)
        message = str(info.value)
        assert "Doe" not in message and "PID-778899" not in message and "1980" not in message
    assert not list(tmp_path.glob(".tmp-*")) and not (tmp_path / SEG_NAME).exists()


def test_dciodvfy_finds_no_errors(
    vl_photo: Path, video_endoscopic: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """dicom3tools' dciodvfy validates every SEG and SC against its IOD without an error."""
    dciodvfy = require_executable("dciodvfy", install="Debian: apt-get install dicom3tools")
    written = [write(vl_photo, 0, tmp_path / "photo")[0]]
    written += [write(video_endoscopic, n, tmp_path / f"video_{n}")[0] for n in (0, 1)]
    for result in written:
        for path in (result.seg, result.sc):
            run = subprocess.run(
                [dciodvfy, "-new", str(path)], capture_output=True, text=True, check=False
            )
            output = (run.stdout + run.stderr).strip()
            with capsys.disabled():
                print(f"\ndciodvfy {path.parent.name}/{path.name}:\n{output}")
            errors = [line for line in output.splitlines() if line.startswith("Error")]
            assert not errors, f"{path.name}: {errors}"
