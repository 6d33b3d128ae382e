"""Photos (JPEG, PNG, TIFF, BMP, WebP) to one RGB frame, through OpenCV.

Decisions:
- EXIF orientation is applied by OpenCV itself: ``cv2.imdecode`` honours it for
  ``IMREAD_COLOR``, the ``IMREAD_REDUCED_*`` flags and ``IMREAD_ANYCOLOR`` (checked on
  OpenCV 5.0; only ``IMREAD_UNCHANGED`` ignores it, so that flag is never used).
- An alpha channel is dropped, not composited: ``IMREAD_ANYCOLOR`` strips it.
- 16-bit images are scaled from the full 0..65535 range to 0..255, never clipped.
- CMYK JPEGs come out as RGB through libjpeg's own conversion.
"""

from __future__ import annotations

import os
import struct
from typing import Any

# A backstop for the one case whose size is not probed first (an unusual TIFF): OpenCV
# refuses images over this many pixels. It is read once, at OpenCV's first decode.
os.environ.setdefault("OPENCV_IO_MAX_IMAGE_PIXELS", str(1 << 28))

import cv2
import numpy as np
import numpy.typing as npt

from cervixbatch.errors import InputRejected, RejectReason
from cervixbatch.imaging.frames import Frame, ReadLimits, RGBImage
from cervixbatch.imaging.sniff import PhotoHeader, check_declared, probe_photo

__all__ = ["PHOTO_FORMATS", "REDUCED_JPEG_DECODES", "decode_photo"]

PHOTO_FORMATS = frozenset({"jpeg", "png", "tiff", "bmp", "webp"})

_ANY = cv2.IMREAD_ANYCOLOR | cv2.IMREAD_ANYDEPTH
# libjpeg's DCT scaling: decoding at 1/8, 1/4 or 1/2 costs a fraction of a full decode.
REDUCED_JPEG_DECODES = (
    (8, cv2.IMREAD_REDUCED_COLOR_8),
    (4, cv2.IMREAD_REDUCED_COLOR_4),
    (2, cv2.IMREAD_REDUCED_COLOR_2),
)


def decode_photo(
    data: bytes, fmt: str, limits: ReadLimits, *, min_working_side: int | None = None
) -> Frame:
    """Decode the bytes of a photo whose format was sniffed as ``fmt``.

    With ``min_working_side`` a JPEG is decoded at 1/2, 1/4 or 1/8 scale, the smallest
    whose long side stays at least that long; ``Frame.full_size`` stays the full size.

    Raises:
        InputRejected: on a declared size out of ``limits``, truncation or corruption.

    """
    header = probe_photo(data, fmt)
    if header is not None:
        check_declared(header.width, header.height, 1, limits)
    _check_complete(data, fmt, header)

    factor, flags = 1, _ANY
    if fmt == "jpeg" and header is not None:
        factor, flags = _jpeg_scale(header, min_working_side)
    try:
        image = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), flags)
    except cv2.error as exc:
        raise InputRejected(RejectReason.CORRUPT, f"the {fmt} data cannot be decoded") from exc
    if image is None or image.size == 0:
        raise InputRejected(RejectReason.CORRUPT, f"the {fmt} data cannot be decoded")

    height, width = image.shape[:2]
    if factor == 1:
        full_size = (height, width)
    else:
        assert header is not None
        full_size = _full_size(header, factor, (height, width))
    # What was decoded, not only what the header said, is held to the limits (a header
    # can say two things; the decoder may believe the other), before any conversion.
    check_declared(full_size[1], full_size[0], 1, limits)
    return Frame(index=0, rgb=to_rgb8(image), full_size=full_size)


def to_rgb8(image: npt.NDArray[Any]) -> RGBImage:
    """Convert an OpenCV image (grey, BGR or BGRA; any depth) to C-contiguous RGB8."""
    if image.dtype == np.uint16:
        # Round to nearest over the full 16-bit range: 65535 -> 255, no clipping.
        eight: npt.NDArray[np.uint8] = ((image.astype(np.uint32) * 255 + 32767) // 65535).astype(
            np.uint8
        )
    elif image.dtype != np.uint8:
        eight = _stretch(image)
    else:
        eight = image
    if eight.ndim == 2:
        rgb = cv2.cvtColor(eight, cv2.COLOR_GRAY2RGB)
    elif eight.shape[2] == 4:
        rgb = cv2.cvtColor(eight, cv2.COLOR_BGRA2RGB)
    elif eight.shape[2] == 3:
        rgb = cv2.cvtColor(eight, cv2.COLOR_BGR2RGB)
    elif eight.shape[2] == 1:
        rgb = cv2.cvtColor(eight[:, :, 0], cv2.COLOR_GRAY2RGB)
    else:
        raise InputRejected(RejectReason.CORRUPT, "the image has an unusual number of channels")
    return np.ascontiguousarray(rgb, dtype=np.uint8)


_STRETCH_ROWS = 256  # rows converted at a time: a float64 copy of the whole is never made


def _stretch(image: npt.NDArray[Any]) -> npt.NDArray[np.uint8]:
    """Map the value range of an unusual depth (float, 32-bit) linearly onto 0..255
    (NaN and infinities count as 0), a band of rows at a time: besides the image and the
    result, memory holds one band as float64, whatever the image's size."""
    low, high = np.inf, -np.inf
    for start in range(0, image.shape[0], _STRETCH_ROWS):
        band = _finite(image[start : start + _STRETCH_ROWS])
        low, high = min(low, float(band.min())), max(high, float(band.max()))
    out = np.zeros(image.shape, dtype=np.uint8)
    if high <= low:
        return out
    scale = 255.0 / (high - low)
    for start in range(0, image.shape[0], _STRETCH_ROWS):
        band = _finite(image[start : start + _STRETCH_ROWS])
        out[start : start + _STRETCH_ROWS] = np.rint((band - low) * scale)
    return out


def _finite(band: npt.NDArray[Any]) -> npt.NDArray[np.float64]:
    return np.nan_to_num(band.astype(np.float64), nan=0.0, posinf=0.0, neginf=0.0)


def _check_complete(data: bytes, fmt: str, header: PhotoHeader | None) -> None:
    """Reject files cut short, which some decoders would silently pad with grey."""
    truncated = False
    if fmt == "jpeg" and header is not None:
        # Entropy-coded data never holds FF D9: after the frame header it is the EOI.
        truncated = data.find(b"\xff\xd9", header.scan_start) < 0
    elif fmt == "png":
        truncated = data.rfind(b"IEND") < 33 or not _png_chunks_fit(data)
    elif fmt == "webp":
        truncated = 8 + struct.unpack_from("<I", data, 4)[0] > len(data)
    elif fmt == "bmp":
        (declared,) = struct.unpack_from("<I", data, 2)
        truncated = declared > len(data)
    if truncated:
        raise InputRejected(RejectReason.TRUNCATED, f"the {fmt} file is cut short")


def _png_chunks_fit(data: bytes) -> bool:
    """True when every chunk up to IEND lies within the file. OpenCV allocates a chunk's
    declared length before reading it: a 200-byte file claiming a 3.7 GB chunk took 3.6 GB
    of memory and 7 s to refuse (found by benchmarks/fuzz_readers.py)."""
    pos = 8
    while pos + 12 <= len(data):
        (length,) = struct.unpack_from(">I", data, pos)
        if length > len(data) - pos - 12:
            return False
        if data[pos + 4 : pos + 8] == b"IEND":
            return True
        pos += 12 + length
    return False


def _jpeg_scale(header: PhotoHeader, min_working_side: int | None) -> tuple[int, int]:
    """Pick the largest DCT reduction keeping the long side >= ``min_working_side``."""
    if min_working_side is not None:
        long_side = max(header.width, header.height)
        for factor, flag in REDUCED_JPEG_DECODES:
            if -(-long_side // factor) >= min_working_side:
                return factor, flag
    return 1, cv2.IMREAD_COLOR


def _full_size(header: PhotoHeader, factor: int, reduced: tuple[int, int]) -> tuple[int, int]:
    """Return the oriented full (height, width) of a JPEG decoded at 1/``factor``.

    libjpeg scales to ceil(side / factor). The decoded shape says whether OpenCV rotated
    the image; only when both readings fit (near-square) does our own EXIF reading decide.
    """
    plain, turned = (header.height, header.width), (header.width, header.height)
    fits_plain = reduced == (-(-plain[0] // factor), -(-plain[1] // factor))
    fits_turned = reduced == (-(-turned[0] // factor), -(-turned[1] // factor))
    if fits_plain != fits_turned:
        return plain if fits_plain else turned
    return turned if header.orientation >= 5 else plain
