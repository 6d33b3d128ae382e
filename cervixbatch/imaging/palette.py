"""The size a DICOM palette's lookup tables expand to, counted before they are expanded.

A segmented palette lookup table (PS3.3 C.7.9.2) is a small program: discrete runs,
linear ramps and indirect segments that replay earlier ones. A few hundred bytes of
indirect segments that replay each other expand to billions of entries, and pydicom
expands them into Python lists whole. A table holds at most 2^16 entries; this module
walks the segments the way pydicom does, counting instead of expanding, and refuses the
palette as soon as the count passes that bound (or the walk goes too deep or too long).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from cervixbatch.errors import InputRejected, RejectReason

if TYPE_CHECKING:
    from collections.abc import Sequence

    from pydicom.dataset import Dataset

__all__ = ["MAX_LUT_ENTRIES", "check_palette"]

MAX_LUT_ENTRIES = 1 << 16  # what a LUT descriptor can declare (0 means 2^16)
_MAX_STEPS = 1 << 18  # segments visited, nested ones included
_MAX_DEPTH = 8  # indirect segments within indirect segments
_SEGMENTED = (
    "SegmentedRedPaletteColorLookupTableData",
    "SegmentedGreenPaletteColorLookupTableData",
    "SegmentedBluePaletteColorLookupTableData",
    "SegmentedAlphaPaletteColorLookupTableData",
)
_DISCRETE, _LINEAR, _INDIRECT = 0, 1, 2


class _Overflow(Exception):
    """The expansion would pass a bound."""


def check_palette(ds: Dataset) -> None:
    """Refuse a palette whose segmented lookup tables would expand past 2^16 entries.

    Raises:
        InputRejected: ``CORRUPT`` for such a table, or one whose segments are malformed.

    """
    present = [keyword for keyword in _SEGMENTED if keyword in ds]
    if not present:
        return  # plain tables: as large as the file, which max_file_mb bounds
    try:
        descriptor = ds.RedPaletteColorLookupTableDescriptor
        eight_bit = int(descriptor[2]) == 8
    except Exception as exc:  # a malformed value raises whatever its VR parser raises
        raise InputRejected(RejectReason.CORRUPT, "the DICOM palette is malformed") from exc
    little = _little_endian(ds)
    for keyword in present:
        words = _words(bytes(ds[keyword].value), eight_bit=eight_bit, little=little)
        try:
            _count(words, _Walk(), nr_segments=None, depth=0, little=little if eight_bit else None)
        except (_Overflow, IndexError) as exc:
            raise InputRejected(
                RejectReason.CORRUPT,
                f"the DICOM palette's segmented lookup table expands past "
                f"{MAX_LUT_ENTRIES} entries or is malformed",
            ) from exc


class _Walk:
    """Entries counted and segments visited so far, across nested segments."""

    def __init__(self) -> None:
        self.entries = 0
        self.steps = 0

    def add(self, entries: int) -> None:
        self.entries += entries
        self.steps += 1
        if self.entries > MAX_LUT_ENTRIES or self.steps > _MAX_STEPS:
            raise _Overflow


def _count(
    words: Sequence[int], walk: _Walk, *, nr_segments: int | None, depth: int, little: bool | None
) -> None:
    """Counts what pydicom's ``_expand_segmented_lut`` would produce from ``words``
    (``little``: the byte order of 8-bit entries; None for 16-bit ones)."""
    if depth > _MAX_DEPTH:
        raise _Overflow
    offset = read = 0
    while offset + 1 < len(words):
        opcode, length = words[offset], words[offset + 1]
        offset += 2
        if opcode == _DISCRETE:
            walk.add(length)
            offset += length
        elif opcode == _LINEAR:
            walk.add(length)
            offset += 1
        elif opcode == _INDIRECT:
            if little is not None:  # four 8-bit entries, in pydicom's order
                w = words[offset : offset + 4]
                a, b, c, d = (w[3], w[2], w[1], w[0]) if little else (w[2], w[3], w[0], w[1])
                start = (a << 8 | b) << 16 | (c << 8 | d)
                offset += 4
            else:
                start = words[offset + 1] << 16 | words[offset]
                offset += 2
            walk.add(0)
            _count(words[start:], walk, nr_segments=length, depth=depth + 1, little=little)
        else:
            raise _Overflow
        read += 1
        if read == nr_segments:
            return


def _words(data: bytes, *, eight_bit: bool, little: bool) -> list[int]:
    dtype = np.dtype("u1") if eight_bit else np.dtype("<u2" if little else ">u2")
    usable = len(data) - len(data) % dtype.itemsize
    words: list[int] = np.frombuffer(data[:usable], dtype=dtype).tolist()
    return words


def _little_endian(ds: Dataset) -> bool:
    meta = getattr(ds, "file_meta", None)
    syntax = getattr(meta, "TransferSyntaxUID", None) if meta is not None else None
    if syntax is not None:
        return bool(syntax.is_little_endian)
    return bool(getattr(ds, "is_little_endian", True))
