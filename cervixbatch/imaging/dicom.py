"""DICOM files to RGB frames, through pydicom and its pylibjpeg decoders.

Patient data never leaves this module: only the identifiers of :class:`DicomInfo` and the
image pixel module are read, and no exception message carries a tag value.

Colour is converted exactly once: pydicom's decoders report the photometric
interpretation of what they return (JPEG YBR comes back as RGB already), and only what is
still YBR is converted here.
"""

from __future__ import annotations

import io
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any, BinaryIO

import numpy as np
import numpy.typing as npt
import pydicom
import pydicom.uid
from pydicom.pixels.decoders.base import get_decoder
from pydicom.pixels.processing import (
    apply_color_lut,
    apply_modality_lut,
    apply_voi,
    convert_color_space,
)
from pydicom.pixels.utils import as_pixel_options

from cervixbatch.errors import InputRejected, RejectReason
from cervixbatch.imaging.codestreams import check_codestreams
from cervixbatch.imaging.frames import DicomInfo, Frame, ReadLimits, RGBImage
from cervixbatch.imaging.header_values import CS_CHARS, clean_text, raw_uid
from cervixbatch.imaging.palette import check_palette
from cervixbatch.imaging.sniff import check_declared

if TYPE_CHECKING:
    from pydicom.dataset import Dataset

    from cervixbatch.imaging.sop import SopClassFilter

__all__ = ["read_dicom"]

_GREY = frozenset({"MONOCHROME1", "MONOCHROME2"})
_YBR_TO_CONVERT = frozenset({"YBR_FULL", "YBR_FULL_422"})
# YBR_ICT/RCT only occur with JPEG 2000, whose decoder hands back RGB.
_SUPPORTED_PHOTOMETRIC = _GREY | _YBR_TO_CONVERT | {"RGB", "PALETTE COLOR", "YBR_ICT", "YBR_RCT"}
_KEPT_UIDS = ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID", "SOPClassUID")
_LO_CHARS = 64  # a Long String, such as Manufacturer


def read_dicom(
    data: bytes, limits: ReadLimits, sop_filter: SopClassFilter | None = None
) -> tuple[tuple[Frame, ...], DicomInfo, Dataset]:
    """Decode every frame of the DICOM file whose bytes are ``data``.

    The header is read first without the pixel data: its SOP class is checked against
    ``sop_filter`` (None accepts every class) and its declared size against ``limits``;
    only then is the pixel data read and decoded, frame by frame. The header is returned
    too: the DICOM outputs are built from it, so they describe exactly these bytes.

    Raises:
        InputRejected: ``UNSUPPORTED_SOP_CLASS``, ``NO_PIXEL_DATA``, ``UNSUPPORTED_DICOM``,
            ``TOO_LARGE``, ``TOO_MANY_FRAMES``, ``TOO_SMALL``, ``TRUNCATED`` or ``CORRUPT``.

    """
    fp = io.BytesIO(data)  # shares the bytes: no copy
    header = _read(fp, stop_before_pixels=True)
    # pydicom stops *before* the pixel data tag: anything left means the tag is there.
    pixel_tag_seen = fp.tell() < len(data)
    syntax = _transfer_syntax(header)
    if sop_filter is not None:
        sop_filter.check(
            _sop_class(header),
            clean_text(_text(header, "Modality"), CS_CHARS),
            clean_text(_text(header, "Manufacturer"), _LO_CHARS),
        )
    rows, columns, frames = _declared_size(header)
    check_declared(columns, rows, frames, limits)
    samples = _check_photometric(header)
    try:
        decoder = get_decoder(syntax)
    except NotImplementedError as exc:
        raise InputRejected(
            RejectReason.UNSUPPORTED_DICOM, "the DICOM transfer syntax is not supported"
        ) from exc
    if not decoder.is_available:
        raise InputRejected(
            RejectReason.UNSUPPORTED_DICOM, "no decoder is installed for the DICOM transfer syntax"
        )

    fp.seek(0)
    ds = _read(fp, stop_before_pixels=False)
    ds.file_meta.TransferSyntaxUID = syntax
    if "FloatPixelData" in ds or "DoubleFloatPixelData" in ds:
        raise InputRejected(
            RejectReason.UNSUPPORTED_DICOM, "floating-point DICOM pixel data is not supported"
        )
    if "PixelData" not in ds:
        # pydicom drops an element whose value is cut short; a tag present but lost is that.
        if pixel_tag_seen:
            raise InputRejected(RejectReason.TRUNCATED, "the DICOM pixel data is cut short")
        raise InputRejected(RejectReason.NO_PIXEL_DATA, "the DICOM object holds no image")

    if syntax.is_encapsulated:
        check_codestreams(ds, syntax, frames, rows * columns * int(samples))
    result = tuple(
        Frame(index=i, rgb=rgb, full_size=(rgb.shape[0], rgb.shape[1]))
        for i, rgb in enumerate(_iter_rgb(ds, decoder, limits))
    )
    if len(result) != frames:
        raise InputRejected(
            RejectReason.TRUNCATED, "the DICOM file holds fewer frames than declared"
        )
    return result, _info(ds, syntax, frames), header


def _sop_class(ds: Dataset) -> str | None:
    """The SOP Class UID of the dataset, else the one its file meta names.

    Raises:
        InputRejected: ``UNSUPPORTED_SOP_CLASS`` when the value is not a UID at all: no
            class could match it, and the message does not quote it.

    """
    uid, valid = raw_uid(ds, "SOPClassUID")
    meta = getattr(ds, "file_meta", None)
    if valid and uid is None and meta is not None:
        uid, valid = raw_uid(meta, "MediaStorageSOPClassUID")
    if not valid:
        raise InputRejected(
            RejectReason.UNSUPPORTED_SOP_CLASS, "the DICOM object's SOP Class UID is not a UID"
        )
    return uid


def _read(fp: BinaryIO, *, stop_before_pixels: bool) -> Dataset:
    """``dcmread`` with every parse failure turned into a rejection.

    ``force=True`` because files without preamble and file meta are accepted; the
    sniffer has already seen a plausible first element.
    """
    try:
        return pydicom.dcmread(fp, force=True, stop_before_pixels=stop_before_pixels)
    except EOFError as exc:
        raise InputRejected(RejectReason.TRUNCATED, "the DICOM file is cut short") from exc
    except MemoryError:
        raise
    except Exception as exc:  # the parser raises many types on bad input
        raise InputRejected(RejectReason.CORRUPT, "the DICOM file cannot be parsed") from exc


def _transfer_syntax(ds: Dataset) -> pydicom.uid.UID:
    """Return the declared transfer syntax, or the encoding found in a bare dataset."""
    meta = getattr(ds, "file_meta", None)
    declared = meta.get("TransferSyntaxUID") if meta is not None else None
    if declared:
        return pydicom.uid.UID(str(declared))
    implicit, little = ds.original_encoding
    if implicit is None or little is None:
        raise InputRejected(RejectReason.CORRUPT, "the DICOM file cannot be parsed")
    if implicit:
        return pydicom.uid.ImplicitVRLittleEndian
    return pydicom.uid.ExplicitVRLittleEndian if little else pydicom.uid.ExplicitVRBigEndian


_BAND_ROWS = 256


def _check_photometric(header: Dataset) -> str:
    """Refuse what is neither grey nor colour, and a palette that would expand past its
    bound; returns the samples per pixel ("1" or "3")."""
    photometric = _text(header, "PhotometricInterpretation") or ""
    # Samples per pixel multiplies what a decoder allocates: only grey or colour.
    samples = _text(header, "SamplesPerPixel") or "1"
    if photometric not in _SUPPORTED_PHOTOMETRIC or samples not in {"1", "3"}:
        raise InputRejected(
            RejectReason.UNSUPPORTED_DICOM, "the DICOM photometric interpretation is not supported"
        )
    if photometric == "PALETTE COLOR":
        check_palette(header)  # a segmented table is counted before pydicom expands it
    return samples


def _declared_size(ds: Dataset) -> tuple[int, int, int]:
    """Return (rows, columns, frames) from the image pixel module."""
    if "Rows" not in ds or "Columns" not in ds:
        raise InputRejected(RejectReason.NO_PIXEL_DATA, "the DICOM object holds no image")
    try:
        rows, columns = int(ds.Rows), int(ds.Columns)
        frames = int(ds.get("NumberOfFrames") or 1)
    except MemoryError:
        raise
    except Exception as exc:  # a malformed value raises whatever its VR parser raises
        raise InputRejected(RejectReason.CORRUPT, "the DICOM image size is malformed") from exc
    return rows, columns, frames


def _iter_rgb(ds: Dataset, decoder: Any, limits: ReadLimits) -> Iterator[RGBImage]:
    """Yield each frame as RGB8, decoding one frame at a time; each decoded frame is held
    to the limits too, before it is converted."""
    try:
        opts = as_pixel_options(ds)
        frames = decoder.iter_array(ds, validate=True, raw=False, **opts)
        for arr, props in frames:
            check_declared(arr.shape[1], arr.shape[0], 1, limits)
            photometric = str(props.get("photometric_interpretation", ""))
            yield _to_rgb(arr, photometric, ds)
    except InputRejected:
        raise
    except MemoryError:
        raise
    except ValueError as exc:
        if "less than expected" in str(exc):
            raise InputRejected(
                RejectReason.TRUNCATED, "the DICOM pixel data is cut short"
            ) from exc
        raise InputRejected(RejectReason.CORRUPT, "the DICOM pixel data cannot be decoded") from exc
    except Exception as exc:  # decoder plugins raise many types on bad input
        raise InputRejected(RejectReason.CORRUPT, "the DICOM pixel data cannot be decoded") from exc


def _to_rgb(arr: npt.NDArray[Any], photometric: str, ds: Dataset) -> RGBImage:
    """Convert one frame, as pydicom decoded it, to C-contiguous RGB8."""
    if photometric in _GREY:
        if arr.ndim != 2:
            raise InputRejected(RejectReason.CORRUPT, "the DICOM pixel data has the wrong shape")
        grey = _grey_to_uint8(arr, ds, invert=photometric == "MONOCHROME1")
        return np.ascontiguousarray(np.repeat(grey[:, :, None], 3, axis=2))
    if photometric == "PALETTE COLOR":
        arr = apply_color_lut(arr, ds)
    elif photometric in _YBR_TO_CONVERT:
        arr = convert_color_space(arr, photometric, "RGB")
    elif photometric != "RGB":
        raise InputRejected(
            RejectReason.UNSUPPORTED_DICOM, "the DICOM photometric interpretation is not supported"
        )
    if arr.ndim != 3 or arr.shape[2] != 3:
        raise InputRejected(RejectReason.CORRUPT, "the DICOM pixel data has the wrong shape")
    return np.ascontiguousarray(_colour_to_uint8(arr, ds, palette=photometric == "PALETTE COLOR"))


def _colour_to_uint8(arr: npt.NDArray[Any], ds: Dataset, *, palette: bool) -> RGBImage:
    """Scale colour samples from their full declared range (not min..max) to 0..255."""
    if arr.dtype == np.uint8:
        return arr.astype(np.uint8, copy=False)
    if palette:
        # 16-bit palette entries: some writers store 8-bit values in them.
        top = 255 if int(arr.max()) <= 255 else 65535
    else:
        top = (1 << int(ds.get("BitsStored") or arr.dtype.itemsize * 8)) - 1
    # A band of rows at a time: never a float64 copy of a whole frame.
    out = np.empty(arr.shape, dtype=np.uint8)
    for start in range(0, arr.shape[0], _BAND_ROWS):
        band = np.clip(arr[start : start + _BAND_ROWS].astype(np.float64), 0, top)
        out[start : start + _BAND_ROWS] = np.rint(band * (255.0 / top))
    return out


def _grey_to_uint8(arr: npt.NDArray[Any], ds: Dataset, *, invert: bool) -> npt.NDArray[np.uint8]:
    """Modality LUT, then the first VOI window or VOI LUT; else the frame's min..max."""
    values = np.asarray(apply_modality_lut(arr, ds), dtype=np.float64)
    window = _first_window(ds)
    if window is not None:
        centre, width = window
        # The linear window of PS3.3 C.11.2.1.2.1, onto 0..255.
        scaled = ((values - (centre - 0.5)) / (width - 1) + 0.5) * 255.0
        out = np.clip(np.rint(scaled), 0, 255).astype(np.uint8)
    else:
        if "VOILUTSequence" in ds:
            values = np.asarray(apply_voi(values, ds), dtype=np.float64)
        low, high = float(values.min()), float(values.max())
        if high <= low:
            out = np.zeros(values.shape, dtype=np.uint8)
        else:
            out = np.rint((values - low) * (255.0 / (high - low))).astype(np.uint8)
    return 255 - out if invert else out


def _first_window(ds: Dataset) -> tuple[float, float] | None:
    """Return the first (centre, width) of the VOI LUT module, if one is usable."""
    if "WindowCenter" not in ds or "WindowWidth" not in ds:
        return None
    try:
        centre, width = _first(ds.WindowCenter), _first(ds.WindowWidth)
    except Exception:  # noqa: BLE001 - a malformed window is ignored, not fatal
        return None
    return (centre, width) if width > 1 else None


def _first(value: Any) -> float:
    """Return the first number of a value that may be multi-valued."""
    if isinstance(value, Sequence) and not isinstance(value, str):
        value = value[0]
    return float(value)


def _text(ds: Dataset, keyword: str) -> str | None:
    """Return an element as stripped text; ``None`` when absent, empty or malformed."""
    try:
        value = ds.get(keyword)
        return (str(value).strip() or None) if value is not None else None
    except Exception:  # noqa: BLE001 - values are parsed lazily and may be garbage
        return None


def _info(ds: Dataset, syntax: pydicom.uid.UID, frames: int) -> DicomInfo:
    """Collect the identifiers we keep; never patient data. A UID that breaks the standard
    is kept as None and its keyword listed in ``invalid_uids``; never its value."""
    uids: dict[str, str | None] = {}
    invalid: list[str] = []
    for keyword in _KEPT_UIDS:
        uids[keyword], valid = raw_uid(ds, keyword)
        if not valid:
            invalid.append(keyword)
    return DicomInfo(
        study_uid=uids["StudyInstanceUID"],
        series_uid=uids["SeriesInstanceUID"],
        sop_instance_uid=uids["SOPInstanceUID"],
        sop_class_uid=uids["SOPClassUID"],
        modality=clean_text(_text(ds, "Modality"), CS_CHARS),
        transfer_syntax_uid=str(syntax),
        number_of_frames=frames,
        invalid_uids=tuple(invalid),
    )
