"""What is decoded is held to the limits, and decoding odd depths stays bounded in memory
(issue 22, item 6): a TIFF that states its size twice, a float TIFF, a DICOM palette
whose segmented lookup table would expand without end. Real bytes, real decoders."""

from __future__ import annotations

import struct
import tracemalloc
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest

from cervixbatch.errors import InputRejected, RejectReason
from cervixbatch.imaging.frames import ReadLimits
from cervixbatch.imaging.reader import decode_input

_LONG, _SHORT = 4, 3


def _tiff(pixels: npt.NDArray[np.generic], sizes: list[tuple[int, int]]) -> bytes:
    """A little-endian baseline TIFF, one uncompressed RGB strip, whose ImageWidth and
    ImageLength entries are ``sizes`` in that order (duplicates allowed)."""
    height, _, _ = pixels.shape
    bits = 32 if pixels.dtype == np.float32 else 8
    data = pixels.tobytes()
    bits_at = 8 + len(data)
    format_at = bits_at + 8
    extra = struct.pack("<3Hxx", bits, bits, bits) + struct.pack("<3Hxx", 3, 3, 3)
    entries = [(tag, _LONG, 1, value) for tag, value in sizes]
    entries += [
        (258, _SHORT, 3, bits_at),  # BitsPerSample
        (259, _SHORT, 1, 1),  # no compression
        (262, _SHORT, 1, 2),  # RGB
        (273, _LONG, 1, 8),  # StripOffsets
        (277, _SHORT, 1, 3),  # SamplesPerPixel
        (278, _LONG, 1, height),  # RowsPerStrip
        (279, _LONG, 1, len(data)),  # StripByteCounts
        (284, _SHORT, 1, 1),  # chunky
    ]
    if bits == 32:
        entries.append((339, _SHORT, 3, format_at))  # SampleFormat: IEEE float
    entries.sort(key=lambda entry: entry[0])  # stable: duplicates keep their order
    ifd = struct.pack("<H", len(entries))
    for tag, kind, count, value in entries:
        if kind == _SHORT and count == 1:
            ifd += struct.pack("<HHIHxx", tag, kind, count, value)
        else:
            ifd += struct.pack("<HHII", tag, kind, count, value)
    ifd += struct.pack("<I", 0)
    return b"II*\x00" + struct.pack("<I", 8 + len(data) + len(extra)) + data + extra + ifd


def test_a_tiff_that_states_its_size_twice_is_not_decoded_past_max_pixels() -> None:
    """A TIFF whose first ImageWidth/ImageLength say 2000x600 and whose duplicates say
    100x100 (libtiff believes the first) is refused as too large under a 500,000-pixel
    limit, never returned as a 1.2-megapixel frame."""
    pixels = np.random.default_rng(0).integers(0, 255, (600, 2000, 3), dtype=np.uint8)
    data = _tiff(pixels, [(256, 2000), (256, 100), (257, 600), (257, 100)])
    with pytest.raises(InputRejected) as caught:
        decode_input(data, ReadLimits(max_pixels=500_000))
    assert caught.value.reason is RejectReason.TOO_LARGE
    # Within the limit, the same file decodes to the size the decoder believed.
    (frame,) = decode_input(data, ReadLimits(max_pixels=2_000_000)).frames
    assert frame.rgb.shape == (600, 2000, 3)


def test_a_float_tiff_decodes_without_float64_copies_of_the_whole_image() -> None:
    """Converting a 2000x2000 float32 RGB TIFF to 8 bits needs at most three times the
    float image's own size at its peak (a whole-image float64 copy alone is twice it)."""
    pixels = np.random.default_rng(1).random((2000, 2000, 3), dtype=np.float32) * 1000
    pixels[0, 0] = np.nan
    data = _tiff(pixels, [(256, 2000), (257, 2000)])
    float_bytes = pixels.nbytes
    tracemalloc.start()
    try:
        (frame,) = decode_input(data, ReadLimits()).frames
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert frame.rgb.dtype == np.uint8 and frame.rgb.shape == (2000, 2000, 3)
    assert peak < 3 * float_bytes, (
        f"peak {peak / 1e6:.0f} MB for a {float_bytes / 1e6:.0f} MB image"
    )
    low, high = float(np.nanmin(pixels)), float(np.nanmax(pixels))
    low = min(low, 0.0)  # NaN counts as 0
    expected = np.rint((pixels[1000, 1000] - low) * (255.0 / (high - low)))
    assert np.array_equal(frame.rgb[1000, 1000], expected.astype(np.uint8))


def _palette_dicom(path: Path, segments: list[int]) -> bytes:
    """A 64x64 PALETTE COLOR VL photograph whose three segmented lookup tables are the
    16-bit ``segments`` (a descriptor of 256 entries of 16 bits)."""
    from pydicom.dataelem import DataElement
    from support.dicom_fixtures import vl_image

    indices = np.arange(64 * 64, dtype=np.uint8).reshape(64, 64)
    table = struct.pack(f"<{len(segments)}H", *segments)
    header: dict[str, object] = {
        "SamplesPerPixel": 1,
        "PhotometricInterpretation": "PALETTE COLOR",
        "PixelData": indices.tobytes(),
    }
    for colour in ("Red", "Green", "Blue"):
        header[f"{colour}PaletteColorLookupTableDescriptor"] = [256, 0, 16]
    written = vl_image(path, [np.zeros((64, 64, 3), dtype=np.uint8)], header=header)
    import pydicom

    ds = pydicom.dcmread(written)
    del ds.PlanarConfiguration
    for colour in ("Red", "Green", "Blue"):
        keyword = f"Segmented{colour}PaletteColorLookupTableData"
        tag = pydicom.datadict.tag_for_keyword(keyword)
        ds[tag] = DataElement(tag, "OW", table)
    ds.save_as(written, enforce_file_format=True)
    return written.read_bytes()


def _doubling(levels: int) -> list[int]:
    """One discrete entry, then ``levels`` indirect segments, each replaying every segment
    before it: the table doubles with each one (2**levels entries from a few hundred bytes)."""
    segments = [0, 1, 40000]
    for level in range(1, levels + 1):
        segments += [2, level, 0, 0]  # replay `level` segments from word 0
    return segments


def test_a_segmented_palette_that_expands_past_its_bound_is_refused_unexpanded(
    tmp_path: Path,
) -> None:
    """A palette whose segmented tables would expand to 2**22 entries (a descriptor allows
    2**16) is refused as corrupt before pydicom expands it; a proper segmented palette
    still decodes."""
    bomb = _palette_dicom(tmp_path / "bomb.dcm", _doubling(22))
    with pytest.raises(InputRejected) as caught:
        decode_input(bomb, ReadLimits())
    assert caught.value.reason is RejectReason.CORRUPT
    proper = _palette_dicom(tmp_path / "ramp.dcm", [0, 1, 0, 1, 255, 65535])
    (frame,) = decode_input(proper, ReadLimits()).frames
    assert frame.rgb.shape == (64, 64, 3)
    assert frame.rgb[0, 0].tolist() == [0, 0, 0] and frame.rgb[-1, -1].tolist() == [255] * 3
