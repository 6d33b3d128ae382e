"""DICOM files for tests: colposcope-like images with patient identifiers to leak-check."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from pydicom import config
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

VL_PHOTO = "1.2.840.10008.5.1.4.1.1.77.1.4"
VL_ENDOSCOPIC = "1.2.840.10008.5.1.4.1.1.77.1.1"


def long_uid(length: int, seed: int) -> str:
    """Digits and dots, ``length`` characters: over 64, a UID that breaks the standard as a
    vendor's private root does."""
    uid = f"1.2.826.0.1.3680043.10.{seed}.{'7' * length}"[:length]
    assert not uid.endswith(".")
    return uid


def out_of_standard_header(seed: int) -> dict[str, Any]:
    """Header values as real exports carry them: a Study Instance UID of 80 characters, a
    Series UID of 70, a SOP Instance UID of 90 and a NUL byte in Modality."""
    return {
        "StudyInstanceUID": long_uid(80, seed),
        "SeriesInstanceUID": long_uid(70, seed),
        "SOPInstanceUID": long_uid(90, seed),
        "Modality": "X\x00C",
    }


def vl_image(
    path: Path,
    frames: list[np.ndarray],
    sop_class: str = VL_PHOTO,
    header: dict[str, Any] | None = None,
) -> Path:
    """A colposcope-like DICOM: RGB frames, patient and study modules filled in; ``header``
    overrides elements, written as given even where they break the standard."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = sop_class
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.StudyInstanceUID = generate_uid()
    ds.SeriesInstanceUID = generate_uid()
    ds.StudyID, ds.SeriesNumber, ds.InstanceNumber = "1", 1, 1
    ds.Modality = "XC" if sop_class == VL_PHOTO else "ES"
    ds.PatientName, ds.PatientID = "Doe^Jane", "PID-778899"
    ds.PatientBirthDate, ds.PatientSex = "19700101", "F"
    ds.StudyDate, ds.StudyTime, ds.AccessionNumber = "20260101", "101010", "A1"
    ds.ReferringPhysicianName, ds.Manufacturer = "", "ACME"
    ds.ContentDate, ds.ContentTime = "20260101", "101010"
    ds.ImageType = ["ORIGINAL", "PRIMARY"]
    ds.Rows, ds.Columns = frames[0].shape[:2]
    if len(frames) > 1:
        ds.NumberOfFrames = len(frames)
    ds.SamplesPerPixel, ds.PhotometricInterpretation, ds.PlanarConfiguration = 3, "RGB", 0
    ds.BitsAllocated = ds.BitsStored = 8
    ds.HighBit, ds.PixelRepresentation = 7, 0
    ds.PixelData = np.stack(frames).tobytes()
    path.parent.mkdir(parents=True, exist_ok=True)
    with config.disable_value_validation():
        # An element keeps the validation mode it was made with: made anew here.
        for keyword, value in (header or {}).items():
            if keyword in ds:
                delattr(ds, keyword)
            setattr(ds, keyword, value)
        for keyword in ("SOPClassUID", "SOPInstanceUID"):
            if header and keyword in header:  # the file meta says the same
                delattr(meta, f"MediaStorage{keyword}")
                setattr(meta, f"MediaStorage{keyword}", header[keyword])
        ds.save_as(path, enforce_file_format=True)
    return path
