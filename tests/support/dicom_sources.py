"""Colposcopy-like DICOM sources made from pydicom's bundled files, with patient data."""

from __future__ import annotations

from pathlib import Path

import pydicom
from pydicom.data import get_testdata_file
from pydicom.uid import generate_uid

VL_PHOTOGRAPHIC = "1.2.840.10008.5.1.4.1.1.77.1.4"


VIDEO_ENDOSCOPIC = "1.2.840.10008.5.1.4.1.1.77.1.1.1"


def make_source(tmp_path: Path, name: str, sop_class: str, *, decompress: bool, stem: str) -> Path:
    """A colposcopy-like DICOM source from a bundled pydicom file, with patient data set."""
    path = get_testdata_file(name, download=False)
    assert isinstance(path, str), f"{name} is not bundled with this pydicom"
    ds = pydicom.dcmread(path)
    if decompress:
        ds.decompress()
    ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID = sop_class
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.SeriesInstanceUID = generate_uid()
    ds.PatientName = "Doe^Jane"
    ds.PatientID = "PID-778899"
    ds.PatientBirthDate = "19800101"
    ds.PatientSex = "F"
    ds.AccessionNumber = "ACC-1"
    ds.Modality = "XC" if sop_class == VL_PHOTOGRAPHIC else "ES"
    ds.Manufacturer = "Colposcope Inc"
    out = tmp_path / f"{stem}.dcm"
    ds.save_as(out, enforce_file_format=True)
    return out
