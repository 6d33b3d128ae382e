"""The decompression-bomb check for compressed DICOM pixel data, before any decoding.

Each JPEG or JPEG 2000 codestream in the encapsulated pixel data declares its own size in
its frame header (SOF, or the SIZ marker segment); a codestream larger than the image the
data set declares, or one whose header cannot be parsed, is rejected without decoding it.
"""

from __future__ import annotations

import struct
from typing import TYPE_CHECKING

import pydicom.uid
from pydicom.encaps import generate_frames

from cervixbatch.errors import InputRejected, RejectReason

if TYPE_CHECKING:
    from pydicom.dataset import Dataset

__all__ = ["check_codestreams"]


def check_codestreams(ds: Dataset, syntax: pydicom.uid.UID, frames: int, declared: int) -> None:
    """Refuse a compressed frame whose own header (JPEG SOF, JPEG 2000 SIZ) declares more
    samples than the DICOM header: decoders allocate what the codestream says. One flipped
    bit in a 3 kB JPEG 2000 file made OpenJPEG take 12 GB and 60 s, a JPEG frame claiming
    30000x30000 5 GB (found by benchmarks/fuzz_readers.py).

    A frame whose header this check cannot read is refused too: a check that gives up is
    no check, and the decoder would allocate whatever that header declares.
    """
    family = _codestream_family(syntax)
    if family is None:
        return  # RLE: the decoder sizes its output from the DICOM header alone
    read_samples = _jpeg_frame_samples if family == "jpeg" else _j2k_samples
    try:
        codestreams = list(generate_frames(ds.PixelData, number_of_frames=frames))
    except MemoryError:
        raise
    except Exception as exc:  # pydicom raises several types on a malformed encapsulation
        raise InputRejected(
            RejectReason.CORRUPT, "the DICOM encapsulated pixel data cannot be parsed"
        ) from exc
    for codestream in codestreams:
        try:
            size = read_samples(codestream)
        except (struct.error, IndexError) as exc:
            size = None
            cause: Exception | None = exc
        else:
            cause = None
        if size is None:
            raise InputRejected(
                RejectReason.CORRUPT,
                f"a compressed DICOM frame has no {family.upper()} image header that can be "
                "read to check its size",
            ) from cause
        if size > declared:
            raise InputRejected(
                RejectReason.CORRUPT,
                "a compressed DICOM frame declares a larger image than the DICOM header",
            )


_JPEG_SYNTAXES = frozenset(
    {
        pydicom.uid.JPEGBaseline8Bit,
        pydicom.uid.JPEGExtended12Bit,
        pydicom.uid.JPEGLossless,
        pydicom.uid.JPEGLosslessSV1,
        pydicom.uid.JPEGLSLossless,
        pydicom.uid.JPEGLSNearLossless,
    }
)
_J2K_SYNTAXES = frozenset(
    {
        pydicom.uid.JPEG2000Lossless,
        pydicom.uid.JPEG2000,
        pydicom.uid.HTJ2KLossless,
        pydicom.uid.HTJ2KLosslessRPCL,
        pydicom.uid.HTJ2K,
    }
)


def _codestream_family(syntax: pydicom.uid.UID) -> str | None:
    """``"jpeg"`` or ``"j2k"`` for syntaxes whose frames carry their own image size; None
    for RLE. Any other encapsulated syntax has no decoder here and is refused earlier."""
    if syntax in _JPEG_SYNTAXES:
        return "jpeg"
    if syntax in _J2K_SYNTAXES:
        return "j2k"
    if syntax == pydicom.uid.RLELossless:
        return None
    raise InputRejected(
        RejectReason.UNSUPPORTED_DICOM, "the DICOM transfer syntax is not supported"
    )


_JPEG_SOF = frozenset({*range(0xC0, 0xC4), *range(0xC5, 0xC8), *range(0xC9, 0xCC), 0xF7})
_JPEG_SOF |= frozenset(range(0xCD, 0xD0))


def _jpeg_frame_samples(data: bytes) -> int | None:
    """Width x height x components of a JPEG (or JPEG-LS) frame header, if there is one."""
    if data[:2] != b"\xff\xd8":
        return None
    pos = 2
    while pos + 4 <= len(data) and data[pos] == 0xFF:
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
        elif marker in (0x01, 0xD8) or 0xD0 <= marker <= 0xD7:  # no length
            pos += 2
        elif marker in (0xD9, 0xDA):
            return None
        elif marker in _JPEG_SOF and pos + 10 <= len(data):
            height, width = struct.unpack_from(">HH", data, pos + 5)
            return int(width) * int(height) * data[pos + 9]
        else:
            pos += 2 + struct.unpack_from(">H", data, pos + 2)[0]
    return None


_SOC_SIZ = b"\xff\x4f\xff\x51"
_JP2_SIGNATURE = b"\x00\x00\x00\x0cjP  \r\n\x87\n"
_JP2_MAX_BOXES = 64  # a JP2 header has a handful; more is a malformed or hostile file


def _j2k_samples(data: bytes) -> int | None:
    """Width x height x components of a JPEG 2000 codestream's SIZ marker segment; None
    when there is no well-formed SIZ where PS3.5 puts it (right after SOC, at the start of
    the frame, or at the start of the JP2 ``jp2c`` box some writers wrap it in)."""
    start = _jp2_codestream_start(data) if data.startswith(_JP2_SIGNATURE) else 0
    if start is None or data[start : start + 4] != _SOC_SIZ:
        return None
    (length,) = struct.unpack_from(">H", data, start + 4)
    if start + 4 + length > len(data) or length < 41:
        return None
    xsiz, ysiz, xosiz, yosiz = struct.unpack_from(">IIII", data, start + 8)
    (components,) = struct.unpack_from(">H", data, start + 40)
    if components == 0 or length != 38 + 3 * components:
        return None
    return max(0, xsiz - xosiz) * max(0, ysiz - yosiz) * components


def _jp2_codestream_start(data: bytes) -> int | None:
    """The offset of the contiguous codestream box (``jp2c``) of a JP2 file, if any."""
    pos = 0
    for _ in range(_JP2_MAX_BOXES):
        if pos + 8 > len(data):
            return None
        length, kind = struct.unpack_from(">I4s", data, pos)
        header = 8
        if length == 1:  # a 64-bit length follows the type
            (length,) = struct.unpack_from(">Q", data, pos + 8)
            header = 16
        if kind == b"jp2c":
            return pos + header
        if length < header:  # 0 ("to the end") is only allowed for the last box, jp2c
            return None
        pos += length
    return None
