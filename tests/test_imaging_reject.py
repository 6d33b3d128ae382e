"""Every rejection read_input emits, each on a crafted bad file; and a fuzz test."""

from __future__ import annotations

import os
import random
import subprocess
import sys
import tracemalloc
from pathlib import Path

import cv2
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from support.imaging_fixtures import (
    bundled,
    dicom_file,
    encode,
    png_chunk,
    png_with_ihdr,
    quadrants_bgr,
    set_jpeg_sof_size,
    write,
)

from cervixbatch.errors import InputRejected, RejectReason
from cervixbatch.imaging import photo
from cervixbatch.imaging.frames import ReadLimits
from cervixbatch.imaging.reader import read_input

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")

LIMITS = ReadLimits()
PATIENT_NAME = "Doe^Jane"


def rejected(path: Path, limits: ReadLimits = LIMITS) -> InputRejected:
    with pytest.raises(InputRejected) as info:
        read_input(path, limits)
    exc = info.value
    assert exc.detail
    assert str(path) not in exc.detail  # no full path in the sentence
    return exc


def reason_of(path: Path, limits: ReadLimits = LIMITS) -> RejectReason:
    return rejected(path, limits).reason


@pytest.fixture
def no_decoding(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fail the test if OpenCV is asked to decode anything."""

    def refuse(*_args: object) -> None:
        raise AssertionError("cv2.imdecode was called")

    monkeypatch.setattr(photo.cv2, "imdecode", refuse)


# -- the file itself -----------------------------------------------------------------


def test_empty_file(tmp_path: Path) -> None:
    """An empty file is rejected as empty_file."""
    assert reason_of(write(tmp_path, "a.jpg", b"")) is RejectReason.EMPTY_FILE


def test_file_over_size_limit(tmp_path: Path, no_decoding: None) -> None:
    """A file over max_file_bytes is rejected before it is read."""
    path = write(tmp_path, "a.png", encode(quadrants_bgr(), ".png"))
    limits = ReadLimits(max_file_bytes=path.stat().st_size - 1)
    assert reason_of(path, limits) is RejectReason.FILE_TOO_LARGE


def test_missing_file_is_unreadable(tmp_path: Path) -> None:
    """A file that has gone is rejected as unreadable."""
    assert reason_of(tmp_path / "gone.jpg") is RejectReason.UNREADABLE


# Run in a child that lost root's power to ignore file modes (CAP_DAC_OVERRIDE and
# CAP_DAC_READ_SEARCH dropped from its bounding set before exec): CI runs as root.
_READ_AS_UNPRIVILEGED = """
import sys
from pathlib import Path
sys.path.insert(0, sys.argv[1])
from test_imaging_reject import LIMITS, InputRejected, read_input, reason_of
print(reason_of(Path(sys.argv[2])).value)
try:
    read_input(Path(sys.argv[3]), LIMITS)
except InputRejected as exc:
    print(exc.reason.value)
else:
    print("read")
"""
_PR_CAPBSET_DROP = 24
_CAP_DAC_OVERRIDE, _CAP_DAC_READ_SEARCH = 1, 2


def _drop_file_mode_override() -> None:  # pragma: no cover - runs in the child
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    for capability in (_CAP_DAC_OVERRIDE, _CAP_DAC_READ_SEARCH):
        if libc.prctl(_PR_CAPBSET_DROP, capability, 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_CAPBSET_DROP)")


def test_unreadable_file(tmp_path: Path) -> None:
    """A file its reader may not open is rejected as unreadable, also when the suite runs
    as root (then the read happens in a child without root's file-mode override)."""
    path = write(tmp_path, "a.png", encode(quadrants_bgr(), ".png"))
    readable = write(tmp_path, "b.png", encode(quadrants_bgr(), ".png"))
    path.chmod(0)
    try:
        if os.geteuid() != 0:
            assert reason_of(path) is RejectReason.UNREADABLE
            return
        tests = str(Path(__file__).resolve().parent)
        child = subprocess.run(
            [sys.executable, "-c", _READ_AS_UNPRIVILEGED, tests, str(path), str(readable)],
            preexec_fn=_drop_file_mode_override,  # one syscall in the child, before exec
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert child.returncode == 0, child.stderr[-3000:]
        # The same child reads a file its mode allows: the mode alone made the difference.
        assert child.stdout.split() == [RejectReason.UNREADABLE.value, "read"]
    finally:
        path.chmod(0o600)


def test_directory_and_fifo_are_not_regular_files(tmp_path: Path) -> None:
    """Directories and FIFOs are rejected without blocking."""
    assert reason_of(tmp_path) is RejectReason.NOT_A_REGULAR_FILE
    fifo = tmp_path / "pipe.jpg"
    os.mkfifo(fifo)
    assert reason_of(fifo) is RejectReason.NOT_A_REGULAR_FILE  # and it did not block


# -- not an image ----------------------------------------------------------------------


@pytest.mark.parametrize("name", ["noise.png", "noise.dcm", "noise.jpg"])
def test_random_bytes(tmp_path: Path, name: str) -> None:
    """Random bytes under any name are rejected as unsupported_format."""
    data = bytes(random.Random(7).randrange(256) for _ in range(4000))
    assert reason_of(write(tmp_path, name, data)) is RejectReason.UNSUPPORTED_FORMAT


def test_text_file(tmp_path: Path) -> None:
    """A text file is rejected with a detail saying it is not an image."""
    path = write(tmp_path, "notes.jpg", b"Patient seen today, photos to follow.\n" * 20)
    exc = rejected(path)
    assert exc.reason is RejectReason.UNSUPPORTED_FORMAT
    assert "not an image" in exc.detail


def test_gif_is_not_supported(tmp_path: Path) -> None:
    """GIF is rejected as unsupported_format."""
    path = write(tmp_path, "a.gif", encode(quadrants_bgr(), ".gif"))
    assert reason_of(path) is RejectReason.UNSUPPORTED_FORMAT


# -- truncated and corrupt ---------------------------------------------------------------


def test_truncated_jpeg(tmp_path: Path) -> None:
    """JPEGs cut at any point are rejected as truncated."""
    data = encode(quadrants_bgr(200, 200), ".jpg")
    assert reason_of(write(tmp_path, "a.jpg", data[: len(data) // 2])) is RejectReason.TRUNCATED
    assert reason_of(write(tmp_path, "b.jpg", data[:-2])) is RejectReason.TRUNCATED
    assert reason_of(write(tmp_path, "c.jpg", data[:100])) is RejectReason.TRUNCATED


def test_truncated_png(tmp_path: Path) -> None:
    """PNGs cut short are rejected as truncated."""
    data = encode(quadrants_bgr(200, 200), ".png")
    assert reason_of(write(tmp_path, "a.png", data[: len(data) // 2])) is RejectReason.TRUNCATED
    assert reason_of(write(tmp_path, "b.png", data[:20])) is RejectReason.TRUNCATED


@pytest.mark.parametrize("ext", [".webp", ".bmp"])
def test_truncated_webp_and_bmp(tmp_path: Path, ext: str) -> None:
    """WebP and BMP files cut short are rejected as truncated."""
    data = encode(quadrants_bgr(200, 200), ext)
    path = write(tmp_path, "a" + ext, data[: len(data) * 2 // 3])
    assert reason_of(path) is RejectReason.TRUNCATED


@pytest.mark.parametrize("name", ["SC_rgb_rle.dcm", "CT_small.dcm", "SC_rgb_gdcm_KY.dcm"])
def test_truncated_dicom(tmp_path: Path, name: str) -> None:
    """DICOM files cut short are rejected as truncated."""
    data = bundled(name).read_bytes()
    path = write(tmp_path, "a.dcm", data[: len(data) * 3 // 4])
    assert reason_of(path) is RejectReason.TRUNCATED


def test_pydicom_truncated_file() -> None:
    """pydicom's own truncated test file is rejected as truncated."""
    assert reason_of(bundled("MR_truncated.dcm")) is RejectReason.TRUNCATED


def test_png_with_broken_image_data(tmp_path: Path) -> None:
    """A PNG whose image data is not zlib is rejected as corrupt."""
    path = write(tmp_path, "a.png", png_with_ihdr(32, 32, idat=b"not zlib at all"))
    assert reason_of(path) is RejectReason.CORRUPT


def test_jpeg_without_frame_header(tmp_path: Path) -> None:
    """A JPEG without a frame header is rejected as corrupt."""
    data = b"\xff\xd8" + b"\xff\xda\x00\x08" + b"\x00" * 6 + b"\x12\x34" * 20 + b"\xff\xd9"
    assert reason_of(write(tmp_path, "a.jpg", data)) is RejectReason.CORRUPT


def test_garbage_after_dicom_preamble(tmp_path: Path) -> None:
    """Noise after a DICOM preamble is rejected, never decoded."""
    noise = bytes(random.Random(3).randrange(256) for _ in range(2000))
    path = write(tmp_path, "a.dcm", b"\x00" * 128 + b"DICM" + noise)
    assert reason_of(path) in {RejectReason.CORRUPT, RejectReason.NO_PIXEL_DATA}


# -- DICOM without a usable image ------------------------------------------------------------


@pytest.mark.parametrize(
    "name",
    ["test-SR.dcm", "rtstruct.dcm", "ExplVR_LitEndNoMeta.dcm", "waveform_ecg.dcm"],
)
def test_dicom_without_pixel_data(name: str) -> None:
    """DICOM objects without pixel data are rejected as no_pixel_data."""
    assert reason_of(bundled(name)) is RejectReason.NO_PIXEL_DATA


def test_unsupported_photometric(tmp_path: Path) -> None:
    """An unknown photometric interpretation is rejected as unsupported_dicom."""
    path = dicom_file(tmp_path, "SC_rgb_rle.dcm", PhotometricInterpretation="HSV")
    assert reason_of(path) is RejectReason.UNSUPPORTED_DICOM


def test_unusual_samples_per_pixel(tmp_path: Path) -> None:
    """An impossible samples-per-pixel value is rejected as unsupported_dicom."""
    path = dicom_file(tmp_path, "SC_rgb_rle.dcm", SamplesPerPixel=200)
    assert reason_of(path) is RejectReason.UNSUPPORTED_DICOM


def test_unsupported_transfer_syntax(tmp_path: Path) -> None:
    # Encapsulated data relabelled as MPEG-2, which pydicom cannot decode.
    """A transfer syntax without a decoder is rejected as unsupported_dicom."""
    path = dicom_file(tmp_path, "SC_rgb_rle.dcm", transfer_syntax="1.2.840.10008.1.2.4.100")
    assert reason_of(path) is RejectReason.UNSUPPORTED_DICOM


def test_messages_hold_no_patient_data(tmp_path: Path) -> None:
    """Rejection messages carry no patient names, IDs or UIDs."""
    path = dicom_file(tmp_path, "SC_rgb_rle.dcm", PatientName=PATIENT_NAME, PatientID="P-991")
    data = path.read_bytes()
    exc = rejected(write(tmp_path, "cut.dcm", data[: len(data) - 300]))
    assert PATIENT_NAME not in str(exc)
    assert "P-991" not in str(exc)
    assert "1.2." not in str(exc)  # no UIDs either


# -- declared sizes, checked before decoding -------------------------------------------------


def test_png_bomb_rejected_without_allocating(tmp_path: Path, no_decoding: None) -> None:
    """A PNG header claiming 60000x60000 is rejected without allocating it."""
    path = write(tmp_path, "bomb.png", png_with_ihdr(60000, 60000))
    tracemalloc.start()
    try:
        exc = rejected(path)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert exc.reason is RejectReason.TOO_LARGE
    assert "60000x60000" in exc.detail
    assert peak < 1_000_000  # the image would need 10 GB


def test_jpeg_sof_bomb(tmp_path: Path, no_decoding: None) -> None:
    """A JPEG whose SOF claims a huge size is rejected as too_large."""
    data = set_jpeg_sof_size(encode(quadrants_bgr(), ".jpg"), 60000, 60000)
    assert reason_of(write(tmp_path, "bomb.jpg", data)) is RejectReason.TOO_LARGE


def test_progressive_jpeg_sof2_is_probed(tmp_path: Path, no_decoding: None) -> None:
    """Progressive JPEGs (SOF2) are probed for their size too."""
    params = [cv2.IMWRITE_JPEG_PROGRESSIVE, 1]
    data = set_jpeg_sof_size(encode(quadrants_bgr(), ".jpg", params), 60000, 60000)
    assert reason_of(write(tmp_path, "bomb.jpg", data)) is RejectReason.TOO_LARGE


@pytest.mark.parametrize("ext", [".tif", ".bmp", ".webp"])
def test_other_formats_checked_against_max_pixels(
    tmp_path: Path, ext: str, no_decoding: None
) -> None:
    """Every format's declared size is checked against max_pixels."""
    path = write(tmp_path, "a" + ext, encode(quadrants_bgr(48, 64), ext))
    assert reason_of(path, ReadLimits(max_pixels=48 * 64 - 1)) is RejectReason.TOO_LARGE


def test_dicom_too_large(tmp_path: Path) -> None:
    """A DICOM declaring huge rows and columns is rejected as too_large."""
    path = dicom_file(tmp_path, "CT_small.dcm", Rows=60000, Columns=60000)
    assert reason_of(path) is RejectReason.TOO_LARGE


def test_dicom_too_many_frames(tmp_path: Path) -> None:
    """A DICOM with more frames than max_frames is rejected."""
    assert reason_of(bundled("SC_rgb_rle_2frame.dcm"), ReadLimits(max_frames=1)) is (
        RejectReason.TOO_MANY_FRAMES
    )
    path = dicom_file(tmp_path, "SC_rgb_rle_2frame.dcm", NumberOfFrames=100_000)
    assert reason_of(path) is RejectReason.TOO_MANY_FRAMES


@pytest.mark.parametrize("ext", [".png", ".jpg", ".bmp"])
def test_tiny_photo_is_too_small(tmp_path: Path, ext: str, no_decoding: None) -> None:
    """Photos below the minimum side are rejected as too_small."""
    path = write(tmp_path, "tiny" + ext, encode(np.zeros((4, 4, 3), np.uint8), ext))
    assert reason_of(path) is RejectReason.TOO_SMALL


def test_tiny_dicom_is_too_small() -> None:
    """A 3x3 DICOM image is rejected as too_small."""
    assert reason_of(bundled("SC_rgb_small_odd.dcm")) is RejectReason.TOO_SMALL  # 3x3


def test_png_zero_size_header(tmp_path: Path, no_decoding: None) -> None:
    """A PNG header with a zero side is rejected as corrupt."""
    assert reason_of(write(tmp_path, "z.png", png_with_ihdr(0, 10))) is RejectReason.CORRUPT


def test_png_without_ihdr(tmp_path: Path) -> None:
    """A PNG without an IHDR chunk is rejected as corrupt."""
    data = b"\x89PNG\r\n\x1a\n" + png_chunk(b"tEXt", b"a\x00b") + png_chunk(b"IEND", b"")
    assert reason_of(write(tmp_path, "a.png", data)) is RejectReason.CORRUPT


# -- fuzz: anything but InputRejected is a bug ---------------------------------------------

_SEEDS = {
    "jpeg": encode(quadrants_bgr(32, 40), ".jpg"),
    "png": encode(quadrants_bgr(32, 40), ".png"),
    "dicom": bundled("SC_rgb_rle.dcm").read_bytes(),
    "dicom_native": bundled("MR_small_bigendian.dcm").read_bytes(),
}


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    data = bytearray(_SEEDS[draw(st.sampled_from(sorted(_SEEDS)))])
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(["truncate", "flip", "overwrite"]))
        if not data:
            break
        if kind == "truncate":
            del data[draw(st.integers(0, len(data) - 1)) :]
        elif kind == "flip":
            pos = draw(st.integers(0, len(data) - 1))
            data[pos] ^= 1 << draw(st.integers(0, 7))
        else:  # headers are where parsers trust the file most
            pos = draw(st.integers(0, min(len(data), 400) - 1))
            chunk = draw(st.binary(min_size=1, max_size=8))
            data[pos : pos + len(chunk)] = chunk
    return bytes(data)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=mutated())
def test_fuzzed_inputs_only_ever_reject(tmp_path: Path, data: bytes) -> None:
    """Fuzzed bytes either decode to a valid frame or are rejected, never crash."""
    path = write(tmp_path, "fuzz.bin", data)
    limits = ReadLimits(min_side=1)
    try:
        decoded = read_input(path, limits, min_working_side=16)
    except InputRejected:
        return
    assert decoded.frames
    for frame in decoded.frames:
        assert frame.rgb.dtype == np.uint8
        assert frame.rgb.ndim == 3
        assert frame.rgb.shape[2] == 3
        assert frame.rgb.flags.c_contiguous
