"""Format detection from the first bytes, and the declared size of a photo from its header.

Nothing here decodes pixels: the point is to refuse a decompression bomb (a PNG whose
header claims 60000 x 60000 pixels, say) before any decoder allocates it.
"""

from __future__ import annotations

import dataclasses
import struct
from typing import TYPE_CHECKING

from cervixbatch.errors import InputRejected, RejectReason

if TYPE_CHECKING:
    from collections.abc import Callable

    from cervixbatch.imaging.frames import ReadLimits

__all__ = [
    "SNIFF_BYTES",
    "PhotoHeader",
    "check_declared",
    "probe_photo",
    "sniff_format",
]

SNIFF_BYTES = 4096
"""How many leading bytes :func:`sniff_format` needs at most."""

_PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
_BMP_DIB_SIZES = frozenset({12, 16, 40, 52, 56, 64, 108, 124})
# Every VR of PS3.5 6.2: an explicit-VR element starts tag (4 bytes) + one of these.
_DICOM_VRS = frozenset(
    b"AE AS AT CS DA DS DT FD FL IS LO LT OB OD OF OL OV OW PN SH SL SQ SS ST SV TM UC "
    b"UI UL UN UR US UT UV".split()
)
# SOF0..SOF15, minus DHT (C4), JPG (C8) and DAC (CC) which share the range.
_JPEG_SOF = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}
_JPEG_STANDALONE = frozenset({0x01, *range(0xD0, 0xD8)})
_MAGIC = (
    (b"\xff\xd8\xff", "jpeg"),
    (_PNG_MAGIC, "png"),
    (b"II*\x00", "tiff"),
    (b"MM\x00*", "tiff"),
)
_TIFF_SHORT, _TIFF_LONG = 3, 4
_TAG_WIDTH, _TAG_LENGTH, _TAG_ORIENTATION = 256, 257, 274


@dataclasses.dataclass(frozen=True, slots=True)
class PhotoHeader:
    """What a photo's header declares.

    ``width`` and ``height`` are as stored (before EXIF orientation); ``orientation`` is
    the EXIF/TIFF orientation (1..8, 1 when absent). ``scan_start`` is, for JPEG, the
    offset just past the frame header: the end-of-image marker must come after it.
    """

    width: int
    height: int
    orientation: int = 1
    scan_start: int = 0


def sniff_format(head: bytes) -> str | None:
    """Name the format of a file from its first bytes, or ``None`` when it is none of ours.

    Returns one of ``"jpeg"``, ``"png"``, ``"tiff"``, ``"bmp"``, ``"webp"``, ``"dicom"``.
    DICOM is tested first: a DICOM preamble may legally hold a TIFF header (dual files).
    """
    if len(head) >= 132 and head[128:132] == b"DICM":
        return "dicom"
    for magic, name in _MAGIC:
        if head.startswith(magic):
            return name
    return next((name for name, test in _SHAPE_TESTS if test(head)), None)


def _looks_like_bmp(head: bytes) -> bool:
    """Check for "BM" followed, at offset 14, by the size of a known DIB header."""
    return (
        head.startswith(b"BM")
        and len(head) >= 18
        and int.from_bytes(head[14:18], "little") in _BMP_DIB_SIZES
    )


def _looks_like_webp(head: bytes) -> bool:
    """Check for a RIFF container of form type WEBP."""
    return len(head) >= 16 and head[:4] == b"RIFF" and head[8:12] == b"WEBP"


def _looks_like_bare_dicom(head: bytes) -> bool:
    """Check for a dataset without preamble: a (0002,xxxx) or (0008,xxxx) first tag, LE."""
    if len(head) < 8 or head[1] != 0 or head[0] not in (0x02, 0x08):
        return False
    if head[4:6] in _DICOM_VRS:
        return True
    # Implicit VR: a 32-bit length follows; a first element is short.
    return int.from_bytes(head[4:8], "little") < 1024


_SHAPE_TESTS: tuple[tuple[str, Callable[[bytes], bool]], ...] = (
    ("bmp", _looks_like_bmp),
    ("webp", _looks_like_webp),
    ("dicom", _looks_like_bare_dicom),
)


def check_declared(width: int, height: int, frames: int, limits: ReadLimits) -> None:
    """Refuse dimensions declared by a header before anything is decoded.

    Raises:
        InputRejected: ``CORRUPT`` for a zero or negative size, ``TOO_LARGE``,
            ``TOO_MANY_FRAMES`` or ``TOO_SMALL``.

    """
    if width <= 0 or height <= 0 or frames <= 0:
        raise InputRejected(RejectReason.CORRUPT, "the header declares an empty image")
    if width * height > limits.max_pixels:
        raise InputRejected(
            RejectReason.TOO_LARGE,
            f"the image declares {width}x{height} pixels, over the limit of "
            f"{limits.max_pixels} pixels per frame",
        )
    if frames > limits.max_frames:
        raise InputRejected(
            RejectReason.TOO_MANY_FRAMES,
            f"the image declares {frames} frames, over the limit of {limits.max_frames}",
        )
    if width * height * frames > limits.max_total_pixels:
        raise InputRejected(
            RejectReason.TOO_LARGE,
            f"the image declares {frames} frames of {width}x{height} pixels, over the limit "
            f"of {limits.max_total_pixels} pixels in all",
        )
    if min(width, height) < limits.min_side:
        raise InputRejected(
            RejectReason.TOO_SMALL,
            f"the image is {width}x{height} pixels, under the minimum side of {limits.min_side}",
        )


def probe_photo(data: bytes, fmt: str) -> PhotoHeader | None:
    """Read the declared size of a photo of format ``fmt`` from its bytes.

    Returns ``None`` only for a TIFF too unusual to probe (OpenCV's own pixel limit
    guards that case).

    Raises:
        InputRejected: ``TRUNCATED`` when the header is cut short, ``CORRUPT`` when it
            is malformed.

    """
    try:
        if fmt == "jpeg":
            return _probe_jpeg(data)
        if fmt == "png":
            return _probe_png(data)
        if fmt == "bmp":
            return _probe_bmp(data)
        if fmt == "webp":
            return _probe_webp(data)
        if fmt == "tiff":
            return _probe_tiff(data)
    except struct.error as exc:
        raise InputRejected(RejectReason.TRUNCATED, f"the {fmt} header is cut short") from exc
    raise ValueError(f"not a photo format: {fmt}")


def _probe_png(data: bytes) -> PhotoHeader:
    if data[12:16] != b"IHDR":
        raise InputRejected(RejectReason.CORRUPT, "the png file does not start with a header")
    width, height = struct.unpack_from(">II", data, 16)
    return PhotoHeader(width, height)


def _probe_bmp(data: bytes) -> PhotoHeader:
    (dib_size,) = struct.unpack_from("<I", data, 14)
    if dib_size == 12:  # OS/2 BITMAPCOREHEADER: 16-bit sizes
        width, height = struct.unpack_from("<HH", data, 18)
    else:
        width, height = struct.unpack_from("<ii", data, 18)
    # A negative height means rows are stored top-down.
    return PhotoHeader(width, abs(height))


def _probe_webp(data: bytes) -> PhotoHeader:
    chunk = data[12:16]
    if chunk == b"VP8 ":
        if data[23:26] != b"\x9d\x01\x2a":
            raise InputRejected(RejectReason.CORRUPT, "the webp frame header is malformed")
        width, height = struct.unpack_from("<HH", data, 26)
        return PhotoHeader(width & 0x3FFF, height & 0x3FFF)
    if chunk == b"VP8L":
        if data[20:21] != b"\x2f":
            raise InputRejected(RejectReason.CORRUPT, "the webp lossless header is malformed")
        (bits,) = struct.unpack_from("<I", data, 21)
        return PhotoHeader((bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1)
    if chunk == b"VP8X":
        if len(data) < 30:
            raise struct.error("short VP8X chunk")
        width = 1 + int.from_bytes(data[24:27], "little")
        height = 1 + int.from_bytes(data[27:30], "little")
        return PhotoHeader(width, height)
    raise InputRejected(RejectReason.CORRUPT, "the webp file has no known image chunk")


def _probe_tiff(data: bytes) -> PhotoHeader | None:
    tags = _tiff_ifd0(data, (_TAG_WIDTH, _TAG_LENGTH, _TAG_ORIENTATION))
    if tags is None or _TAG_WIDTH not in tags or _TAG_LENGTH not in tags:
        return None
    return PhotoHeader(tags[_TAG_WIDTH], tags[_TAG_LENGTH], tags.get(_TAG_ORIENTATION, 1))


def _tiff_ifd0(data: bytes, wanted: tuple[int, ...]) -> dict[int, int] | None:
    """Read single SHORT/LONG values of ``wanted`` tags from the first IFD of a TIFF.

    A tag given twice counts with its larger value: decoders differ on which one they
    believe. Returns ``None`` for what this small reader does not handle (BigTIFF, odd
    offsets).
    """
    order = {b"II": "<", b"MM": ">"}.get(data[:2])
    if order is None or struct.unpack_from(order + "H", data, 2)[0] != 42:
        return None
    (offset,) = struct.unpack_from(order + "I", data, 4)
    if offset < 8 or offset + 2 > len(data):
        return None
    (count,) = struct.unpack_from(order + "H", data, offset)
    found: dict[int, int] = {}
    for i in range(count):
        entry = offset + 2 + 12 * i
        if entry + 12 > len(data):
            break
        tag, kind, n = struct.unpack_from(order + "HHI", data, entry)
        if tag in wanted and n == 1 and kind in (_TIFF_SHORT, _TIFF_LONG):
            fmt = order + ("H" if kind == _TIFF_SHORT else "I")
            value = struct.unpack_from(fmt, data, entry + 8)[0]
            found[tag] = max(value, found.get(tag, value))
    return found


def _probe_jpeg(data: bytes) -> PhotoHeader:
    """Walk the marker segments up to the frame header (SOFn), skipping APPn and others."""
    pos, orientation, seen_exif = 2, 1, False
    while True:
        marker, pos = _next_marker(data, pos)
        if marker in _JPEG_STANDALONE:
            continue
        if marker in (0xD9, 0xDA):  # end of image, or scan data, before any frame header
            raise InputRejected(RejectReason.CORRUPT, "the jpeg file has no frame header")
        (length,) = struct.unpack_from(">H", data, pos)
        end = pos + length
        if length < 2:
            raise InputRejected(RejectReason.CORRUPT, "the jpeg segment structure is broken")
        if end > len(data):
            raise InputRejected(RejectReason.TRUNCATED, "the jpeg file ends before its header")
        if marker in _JPEG_SOF:
            height, width = struct.unpack_from(">HH", data, pos + 3)
            return PhotoHeader(width, height, orientation, end)
        if marker == 0xE1 and not seen_exif and data[pos + 2 : pos + 8] == b"Exif\x00\x00":
            seen_exif = True  # like libjpeg readers, only the first Exif segment counts
            orientation = _exif_orientation(data[pos + 8 : end])
        pos = end


def _next_marker(data: bytes, pos: int) -> tuple[int, int]:
    """Return the marker code at ``pos`` and the offset just past it."""
    if pos < len(data) and data[pos] != 0xFF:
        raise InputRejected(RejectReason.CORRUPT, "the jpeg segment structure is broken")
    while pos < len(data) and data[pos] == 0xFF:  # fill bytes may pad a marker
        pos += 1
    if pos >= len(data):
        raise InputRejected(RejectReason.TRUNCATED, "the jpeg file ends before its header")
    return data[pos], pos + 1


def _exif_orientation(tiff: bytes) -> int:
    """Return the Orientation of an Exif block; 1 when absent or unreadable (optional)."""
    try:
        tags = _tiff_ifd0(tiff, (_TAG_ORIENTATION,))
    except struct.error:
        return 1
    value = (tags or {}).get(_TAG_ORIENTATION, 1)
    return value if 1 <= value <= 8 else 1
