"""Photos through read_input: formats by content, colour order, depth, alpha, EXIF, scale."""

from __future__ import annotations

import io
from typing import TYPE_CHECKING

import cv2
import numpy as np
import pytest
from PIL import Image
from support.imaging_fixtures import encode, exif_app1, insert_after_soi, quadrants_bgr, write

from cervixbatch.imaging.frames import InputKind, ReadLimits
from cervixbatch.imaging.reader import read_input

if TYPE_CHECKING:
    from pathlib import Path

LIMITS = ReadLimits()
RED, GREEN, BLUE, WHITE = (255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 255)


def assert_frame_ok(rgb: np.ndarray) -> None:
    assert rgb.dtype == np.uint8
    assert rgb.ndim == 3
    assert rgb.shape[2] == 3
    assert rgb.flags.c_contiguous


def assert_quadrants(rgb: np.ndarray, tol: int = 12) -> None:
    """Quadrant centres of quadrants_bgr(), in RGB order."""
    h, w = rgb.shape[:2]
    centres = {
        (h // 4, w // 4): RED,
        (h // 4, 3 * w // 4): GREEN,
        (3 * h // 4, w // 4): BLUE,
        (3 * h // 4, 3 * w // 4): WHITE,
    }
    for (y, x), colour in centres.items():
        got = rgb[y, x].astype(int)
        assert np.abs(got - np.array(colour)).max() <= tol, ((y, x), got, colour)


@pytest.mark.parametrize(
    ("ext", "fmt", "tol"),
    [
        (".jpg", "jpeg", 12),
        (".png", "png", 0),
        (".tif", "tiff", 0),
        (".bmp", "bmp", 0),
        (".webp", "webp", 12),
    ],
)
def test_formats_decode_to_rgb(tmp_path: Path, ext: str, fmt: str, tol: int) -> None:
    """Every supported photo format decodes to one contiguous RGB uint8 frame."""
    path = write(tmp_path, "photo" + ext, encode(quadrants_bgr(), ext))
    decoded = read_input(path, LIMITS)
    assert decoded.kind is InputKind.PHOTO
    assert decoded.format == fmt
    assert decoded.dicom is None
    (frame,) = decoded.frames
    assert frame.index == 0
    assert frame.rgb.shape == (48, 64, 3)
    assert frame.full_size == (48, 64)
    assert frame.scale == 1.0
    assert_frame_ok(frame.rgb)
    assert_quadrants(frame.rgb, tol)


def test_lossless_webp(tmp_path: Path) -> None:
    """Lossless WebP keeps the exact colours."""
    data = encode(quadrants_bgr(), ".webp", [cv2.IMWRITE_WEBP_QUALITY, 101])
    assert data[12:16] == b"VP8L"
    frame = read_input(write(tmp_path, "a.webp", data), LIMITS).frames[0]
    assert_quadrants(frame.rgb, 0)


@pytest.mark.parametrize("name", ["photo.jpg", "photo.dcm", "photo", "photo.txt"])
def test_format_comes_from_content_not_name(tmp_path: Path, name: str) -> None:
    """A PNG under any name or extension is read as PNG."""
    path = write(tmp_path, name, encode(quadrants_bgr(), ".png"))
    assert read_input(path, LIMITS).format == "png"


def test_16_bit_png_is_scaled_not_clipped(tmp_path: Path) -> None:
    """16-bit PNG values are scaled to 8 bits, not clipped."""
    img = np.zeros((32, 32), np.uint16)
    img[:, :8] = 65535
    img[:, 8:16] = 32768
    img[:, 16:24] = 1000
    path = write(tmp_path, "a.png", encode(img, ".png"))
    rgb = read_input(path, LIMITS).frames[0].rgb
    assert_frame_ok(rgb)
    assert tuple(rgb[0, 0]) == (255, 255, 255)
    assert tuple(rgb[0, 8]) == (128, 128, 128)
    assert tuple(rgb[0, 16]) == (4, 4, 4)  # 1000/65535*255, not clipped to 255
    assert tuple(rgb[0, 30]) == (0, 0, 0)


def test_16_bit_colour_tiff(tmp_path: Path) -> None:
    """16-bit colour TIFF comes out as the right 8-bit RGB."""
    img = quadrants_bgr().astype(np.uint16) * 257
    rgb = read_input(write(tmp_path, "a.tif", encode(img, ".tif")), LIMITS).frames[0].rgb
    assert_frame_ok(rgb)
    assert_quadrants(rgb, 0)


def test_grey_png_becomes_rgb(tmp_path: Path) -> None:
    """A greyscale PNG becomes three equal RGB channels."""
    grey = np.tile(np.arange(64, dtype=np.uint8) * 4, (32, 1))
    rgb = read_input(write(tmp_path, "g.png", encode(grey, ".png")), LIMITS).frames[0].rgb
    assert_frame_ok(rgb)
    assert rgb.shape == (32, 64, 3)
    assert (rgb[:, :, 0] == grey).all()
    assert (rgb[:, :, 1] == grey).all()
    assert (rgb[:, :, 2] == grey).all()


def test_rgba_png_drops_alpha(tmp_path: Path) -> None:
    """Alpha is dropped without compositing the colours onto black."""
    bgra = np.zeros((32, 32, 4), np.uint8)
    bgra[..., :3] = quadrants_bgr(32, 32)
    bgra[..., 3] = 0  # fully transparent: the colour is kept, not composited to black
    bgra[:16, :, 3] = 255
    rgb = read_input(write(tmp_path, "a.png", encode(bgra, ".png")), LIMITS).frames[0].rgb
    assert_frame_ok(rgb)
    assert_quadrants(rgb, 0)


def test_cmyk_jpeg_comes_out_rgb(tmp_path: Path) -> None:
    """A CMYK JPEG comes out as RGB with the right colour."""
    image = Image.new("CMYK", (40, 30), (0, 255, 255, 0))  # pure red in CMYK
    out = io.BytesIO()
    image.save(out, "JPEG", quality=95)
    rgb = read_input(write(tmp_path, "cmyk.jpg", out.getvalue()), LIMITS).frames[0].rgb
    assert_frame_ok(rgb)
    assert rgb.shape == (30, 40, 3)
    assert np.abs(rgb[15, 20].astype(int) - np.array(RED)).max() <= 8


def _oriented_jpeg(height: int, width: int, orientation: int) -> bytes:
    """A JPEG whose stored left half is red, right half blue, with an Exif Orientation."""
    img = np.zeros((height, width, 3), np.uint8)
    img[:, : width // 2] = (0, 0, 255)
    img[:, width // 2 :] = (255, 0, 0)
    return insert_after_soi(
        encode(img, ".jpg", [cv2.IMWRITE_JPEG_QUALITY, 95]), exif_app1(orientation)
    )


def test_exif_orientation_6_is_applied(tmp_path: Path) -> None:
    # Orientation 6: rotate 90 degrees clockwise to display; the left half goes on top.
    """EXIF orientation 6 rotates the photo and its full size."""
    path = write(tmp_path, "o.jpg", _oriented_jpeg(40, 80, 6))
    frame = read_input(path, LIMITS).frames[0]
    assert frame.rgb.shape == (80, 40, 3)
    assert frame.full_size == (80, 40)
    assert np.abs(frame.rgb[20, 20].astype(int) - np.array(RED)).max() <= 12
    assert np.abs(frame.rgb[60, 20].astype(int) - np.array(BLUE)).max() <= 12


def test_exif_orientation_1_is_left_alone(tmp_path: Path) -> None:
    """EXIF orientation 1 leaves the photo as stored."""
    frame = read_input(write(tmp_path, "o.jpg", _oriented_jpeg(40, 80, 1)), LIMITS).frames[0]
    assert frame.rgb.shape == (40, 80, 3)


def test_exif_orientation_with_reduced_decode(tmp_path: Path) -> None:
    """EXIF orientation is applied together with reduced JPEG decoding."""
    path = write(tmp_path, "o.jpg", _oriented_jpeg(400, 800, 6))
    frame = read_input(path, LIMITS, min_working_side=100).frames[0]
    assert frame.full_size == (800, 400)
    assert frame.rgb.shape == (100, 50, 3)  # 1/8: the long side is exactly 100
    assert frame.scale == 8.0
    assert np.abs(frame.rgb[25, 25].astype(int) - np.array(RED)).max() <= 12


@pytest.mark.parametrize(
    ("min_side", "expected"),
    [
        (None, (600, 800)),
        (100, (75, 100)),  # 1/8
        (101, (150, 200)),  # 1/4
        (300, (300, 400)),  # 1/2
        (401, (600, 800)),  # no reduction keeps 401: full size
        (5000, (600, 800)),
    ],
)
def test_reduced_jpeg_decode(
    tmp_path: Path, min_side: int | None, expected: tuple[int, int]
) -> None:
    """Large JPEGs decode at the smallest libjpeg scale that keeps the working side."""
    path = write(tmp_path, "big.jpg", encode(quadrants_bgr(600, 800), ".jpg"))
    frame = read_input(path, LIMITS, min_working_side=min_side).frames[0]
    assert frame.rgb.shape[:2] == expected
    assert frame.full_size == (600, 800)
    assert_frame_ok(frame.rgb)
    assert_quadrants(frame.rgb, 16)


def test_reduced_decode_rounds_odd_sizes_up(tmp_path: Path) -> None:
    """Reduced decoding of odd sizes rounds up as libjpeg does."""
    path = write(tmp_path, "odd.jpg", encode(quadrants_bgr(101, 203), ".jpg"))
    frame = read_input(path, LIMITS, min_working_side=25).frames[0]
    assert frame.rgb.shape[:2] == (13, 26)  # libjpeg: ceil(101/8), ceil(203/8)
    assert frame.full_size == (101, 203)


def test_png_is_not_reduced(tmp_path: Path) -> None:
    """PNGs, which have no reduced decode, are read at full size."""
    path = write(tmp_path, "big.png", encode(quadrants_bgr(600, 800), ".png"))
    frame = read_input(path, LIMITS, min_working_side=100).frames[0]
    assert frame.rgb.shape[:2] == (600, 800)
    assert frame.full_size == (600, 800)
