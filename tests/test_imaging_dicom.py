"""DICOM through read_input, on pydicom's bundled test files (none downloaded)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pydicom
import pytest
from support.imaging_fixtures import bundled, dicom_file, write

from cervixbatch.imaging.frames import InputKind, ReadLimits
from cervixbatch.imaging.reader import read_input

if TYPE_CHECKING:
    from pathlib import Path

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")

LIMITS = ReadLimits(min_side=1)
SC_CLASS = "1.2.840.10008.5.1.4.1.1.7"
# The ten horizontal bands of pydicom's SC_rgb* files, top to bottom (as its tests assert).
SC_BANDS = [
    (255, 0, 0),
    (255, 128, 128),
    (0, 255, 0),
    (128, 255, 128),
    (0, 0, 255),
    (128, 128, 255),
    (0, 0, 0),
    (64, 64, 64),
    (192, 192, 192),
    (255, 255, 255),
]


def band_colours(rgb: np.ndarray) -> list[tuple[int, ...]]:
    return [tuple(int(v) for v in rgb[row, 50]) for row in range(5, 100, 10)]


def assert_bands(rgb: np.ndarray, tol: int) -> None:
    assert rgb.shape == (100, 100, 3)
    for got, want in zip(band_colours(rgb), SC_BANDS, strict=True):
        assert max(abs(g - w) for g, w in zip(got, want, strict=True)) <= tol, (got, want)


def read(name: str, limits: ReadLimits = LIMITS):
    return read_input(bundled(name), limits)


@pytest.mark.parametrize(
    ("name", "syntax", "tol"),
    [
        ("SC_rgb_rle.dcm", "1.2.840.10008.1.2.5", 0),  # RLE, RGB
        ("SC_rgb_rle_16bit.dcm", "1.2.840.10008.1.2.5", 0),  # 16-bit RGB, scaled
        ("SC_rgb_jpeg_gdcm.dcm", "1.2.840.10008.1.2.4.70", 0),  # JPEG lossless
        ("SC_rgb_gdcm_KY.dcm", "1.2.840.10008.1.2.4.91", 0),  # JPEG 2000
        ("SC_rgb_dcmtk_+eb+cr.dcm", "1.2.840.10008.1.2.4.50", 2),  # JPEG baseline, RGB
        # JPEG baseline stored as YBR_FULL / YBR_FULL_422: converted once, not twice.
        ("SC_rgb_dcmtk_+eb+cy+n1.dcm", "1.2.840.10008.1.2.4.50", 8),
        ("SC_rgb_dcmtk_+eb+cy+s2.dcm", "1.2.840.10008.1.2.4.50", 8),
        # Uncompressed YBR_FULL_422: pydicom upsamples and converts.
        ("SC_ybr_full_422_uncompressed.dcm", "1.2.840.10008.1.2.1", 8),
    ],
)
def test_secondary_capture_colours(name: str, syntax: str, tol: int) -> None:
    """Secondary Capture files in every encoding decode to the same RGB colour bands."""
    decoded = read(name)
    assert decoded.kind is InputKind.DICOM
    assert decoded.format == "dicom"
    (frame,) = decoded.frames
    assert frame.rgb.dtype == np.uint8
    assert frame.rgb.flags.c_contiguous
    assert frame.full_size == (100, 100)
    assert_bands(frame.rgb, tol)
    info = decoded.dicom
    assert info is not None
    assert info.transfer_syntax_uid == syntax
    assert info.sop_class_uid == SC_CLASS
    assert info.modality == "OT"
    assert info.number_of_frames == 1


def test_ybr_jpeg_matches_lossless_reference() -> None:
    """A YBR JPEG DICOM decodes to colours close to the lossless reference."""
    reference = read("SC_rgb_rle.dcm").frames[0].rgb.astype(int)
    ybr = read("SC_rgb_dcmtk_+eb+cy+n1.dcm").frames[0].rgb.astype(int)
    # Lossy chroma smears band edges; on average the colours agree closely.
    assert np.abs(ybr - reference).mean() < 4


def test_dicom_info_identifiers() -> None:
    """The study, series and instance UIDs are carried through from the DICOM file."""
    source = pydicom.dcmread(bundled("SC_rgb_rle.dcm"))
    info = read("SC_rgb_rle.dcm").dicom
    assert info is not None
    assert info.study_uid == source.StudyInstanceUID
    assert info.series_uid == source.SeriesInstanceUID
    assert info.sop_instance_uid == source.SOPInstanceUID


def test_multi_frame_rle() -> None:
    """Every frame of a multi-frame RLE file is decoded, in order."""
    decoded = read("SC_rgb_rle_2frame.dcm")
    assert [f.index for f in decoded.frames] == [0, 1]
    assert decoded.dicom is not None
    assert decoded.dicom.number_of_frames == 2
    assert_bands(decoded.frames[0].rgb, 0)
    # pydicom's tests: the second frame is the first one inverted.
    assert_bands(255 - decoded.frames[1].rgb, 0)


def test_multi_frame_ybr_jpeg_ultrasound() -> None:
    """A 30-frame YBR JPEG ultrasound file decodes to 30 RGB frames."""
    decoded = read("examples_ybr_color.dcm")  # US multi-frame, JPEG baseline YBR_FULL_422
    assert len(decoded.frames) == 30
    assert [f.index for f in decoded.frames] == list(range(30))
    assert all(f.rgb.shape == (240, 320, 3) for f in decoded.frames)
    assert decoded.dicom is not None
    assert decoded.dicom.modality == "US"
    assert decoded.dicom.number_of_frames == 30


def test_grey_ct_uses_full_range() -> None:
    """A greyscale CT without a window is stretched to the full 0-255 range."""
    rgb = read("CT_small.dcm").frames[0].rgb  # signed 16-bit, no window
    assert rgb.shape == (128, 128, 3)
    assert (rgb[..., 0] == rgb[..., 1]).all()
    assert (rgb[..., 1] == rgb[..., 2]).all()
    assert rgb.min() == 0
    assert rgb.max() == 255


def test_grey_mr_window_is_applied() -> None:
    """An MR image's window centre and width are applied as DICOM defines them."""
    ds = pydicom.dcmread(bundled("MR_small_RLE.dcm"))
    centre, width = float(ds.WindowCenter), float(ds.WindowWidth)
    stored = ds.pixel_array.astype(float)
    expected = np.clip(np.rint(((stored - (centre - 0.5)) / (width - 1) + 0.5) * 255), 0, 255)
    rgb = read("MR_small_RLE.dcm").frames[0].rgb
    assert (rgb[..., 0] == expected).all()


def test_monochrome1_is_inverted(tmp_path: Path) -> None:
    """MONOCHROME1 comes out as the inverse of the same pixels as MONOCHROME2."""
    mono2 = read_input(dicom_file(tmp_path, "CT_small.dcm", "m2.dcm"), LIMITS).frames[0].rgb
    path = dicom_file(tmp_path, "CT_small.dcm", "m1.dcm", PhotometricInterpretation="MONOCHROME1")
    mono1 = read_input(path, LIMITS).frames[0].rgb
    assert (mono1 == 255 - mono2).all()


def test_palette_colour() -> None:
    """Palette colour images are looked up into real RGB."""
    rgb = read("examples_palette.dcm").frames[0].rgb
    assert rgb.shape == (350, 800, 3)
    assert rgb.flags.c_contiguous
    assert not (rgb[..., 0] == rgb[..., 1]).all()  # real colour, not grey


@pytest.mark.parametrize(
    ("name", "shape"),
    [
        ("image_dfl.dcm", (512, 512, 3)),  # deflated explicit VR little endian
        ("MR_small_bigendian.dcm", (64, 64, 3)),
        ("MR_small_jpeg_ls_lossless.dcm", (64, 64, 3)),
        ("JPEG2000.dcm", (1024, 256, 3)),
        ("examples_jpeg2k.dcm", (480, 640, 3)),  # YBR_RCT JPEG 2000
        ("examples_rgb_color.dcm", (240, 320, 3)),
    ],
)
def test_other_encodings(name: str, shape: tuple[int, int, int]) -> None:
    """Deflated, big-endian, JPEG-LS and JPEG 2000 files decode to the expected shape."""
    (frame,) = read(name).frames
    assert frame.rgb.shape == shape
    assert frame.rgb.dtype == np.uint8


def test_same_image_across_encodings() -> None:
    """The same image in three transfer syntaxes decodes to identical pixels."""
    plain = read("MR_small_bigendian.dcm").frames[0].rgb
    assert (read("MR_small_RLE.dcm").frames[0].rgb == plain).all()
    assert (read("MR_small_jpeg_ls_lossless.dcm").frames[0].rgb == plain).all()


def test_file_without_preamble_or_meta(tmp_path: Path) -> None:
    """A bare DICOM data set without preamble or file meta is still read."""
    path = dicom_file(tmp_path, "CT_small.dcm", "bare", bare=True)
    assert path.read_bytes()[128:132] != b"DICM"
    decoded = read_input(path, LIMITS)
    assert decoded.format == "dicom"
    assert decoded.dicom is not None
    assert decoded.dicom.transfer_syntax_uid == "1.2.840.10008.1.2"
    assert (decoded.frames[0].rgb == read("CT_small.dcm").frames[0].rgb).all()


def test_dicom_named_like_a_photo(tmp_path: Path) -> None:
    """The format comes from the content: a DICOM file named .jpg is read as DICOM."""
    path = write(tmp_path, "photo.jpg", bundled("SC_rgb_rle.dcm").read_bytes())
    assert read_input(path, LIMITS).format == "dicom"


def test_dicom_preamble_holding_a_tiff_header_is_dicom() -> None:
    # CT_small.dcm's preamble starts with "II*\0" (a DICOM/TIFF dual file).
    """A DICOM preamble that looks like TIFF does not fool the sniffer."""
    assert bundled("CT_small.dcm").read_bytes()[:4] == b"II*\x00"
    assert read("CT_small.dcm").format == "dicom"
