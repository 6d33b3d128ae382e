"""Helpers that craft image files for the imaging tests (photos, DICOM, bad files)."""

from __future__ import annotations

import io
import struct
import warnings
import zlib
from pathlib import Path

import cv2
import numpy as np
import pydicom
from pydicom.data import get_testdata_file
from pydicom.dataset import FileMetaDataset

__all__ = [
    "bundled",
    "dicom_file",
    "encode",
    "exif_app1",
    "insert_after_soi",
    "png_chunk",
    "png_with_ihdr",
    "quadrants_bgr",
    "set_jpeg_sof_size",
    "write",
]


def bundled(name: str) -> Path:
    """A file bundled with pydicom; never downloaded (there is no network here)."""
    path = get_testdata_file(name, download=False)
    assert isinstance(path, str), f"{name} is not bundled with this pydicom"
    return Path(path)


def quadrants_bgr(height: int = 48, width: int = 64) -> np.ndarray:
    """BGR picture: red top-left, green top-right, blue bottom-left, white bottom-right."""
    img = np.zeros((height, width, 3), np.uint8)
    h, w = height // 2, width // 2
    img[:h, :w] = (0, 0, 255)
    img[:h, w:] = (0, 255, 0)
    img[h:, :w] = (255, 0, 0)
    img[h:, w:] = (255, 255, 255)
    return img


def encode(img: np.ndarray, ext: str, params: list[int] | None = None) -> bytes:
    ok, buf = cv2.imencode(ext, img, params or [])
    assert ok
    return buf.tobytes()


def write(tmp_path: Path, name: str, data: bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


def exif_app1(orientation: int) -> bytes:
    """An APP1 Exif segment whose IFD0 holds only Orientation (SHORT)."""
    ifd = struct.pack("<H", 1) + struct.pack("<HHIHH", 0x0112, 3, 1, orientation, 0)
    tiff = b"II*\x00" + struct.pack("<I", 8) + ifd + struct.pack("<I", 0)
    payload = b"Exif\x00\x00" + tiff
    return b"\xff\xe1" + struct.pack(">H", len(payload) + 2) + payload


def insert_after_soi(jpeg: bytes, segment: bytes) -> bytes:
    return jpeg[:2] + segment + jpeg[2:]


def set_jpeg_sof_size(jpeg: bytes, width: int, height: int) -> bytes:
    """Overwrite the size in the first SOF0/SOF2 segment of a real JPEG."""
    data = bytearray(jpeg)
    for marker in (b"\xff\xc0", b"\xff\xc2"):
        pos = data.find(marker)
        if pos >= 0:
            struct.pack_into(">HH", data, pos + 5, height, width)
            return bytes(data)
    raise AssertionError("no SOF0/SOF2 segment")


def png_chunk(kind: bytes, body: bytes) -> bytes:
    crc = zlib.crc32(kind + body) & 0xFFFFFFFF
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", crc)


def png_with_ihdr(width: int, height: int, idat: bytes | None = None) -> bytes:
    """A PNG with a correct IHDR (8-bit RGB) of the given size; its IDAT is tiny."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    body = idat if idat is not None else zlib.compress(b"\x00" * 64)
    return (
        b"\x89PNG\r\n\x1a\n"
        + png_chunk(b"IHDR", ihdr)
        + png_chunk(b"IDAT", body)
        + png_chunk(b"IEND", b"")
    )


def dicom_file(
    tmp_path: Path,
    source: str,
    name: str = "out.dcm",
    *,
    bare: bool = False,
    transfer_syntax: str | None = None,
    **changes: object,
) -> Path:
    """Rewrite a pydicom test file with some elements changed.

    ``bare`` writes it without preamble and file meta (implicit VR little endian).
    """
    ds = pydicom.dcmread(bundled(source))
    for keyword, value in changes.items():
        setattr(ds, keyword, value)
    out = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if bare:
            ds.file_meta = FileMetaDataset()
            ds.preamble = None
            pydicom.dcmwrite(
                out, ds, implicit_vr=True, little_endian=True, enforce_file_format=False
            )
        else:
            if transfer_syntax is not None:
                ds.file_meta.TransferSyntaxUID = transfer_syntax
            ds.save_as(out)
    return write(tmp_path, name, out.getvalue())
