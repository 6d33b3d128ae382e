"""A hostile corpus for the inbox: real DICOM and photos that are not colposcopy, crafted
bad files, odd names, and entries that must be ignored (symlink, hidden, temp name, FIFO,
too deep). Each entry says what must become of it, so one test can check every one.

Built in memory by :func:`build_corpus`, laid into an inbox by :func:`drop`.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import os
import random
import struct
import warnings
import zlib
from pathlib import Path

import cv2
import numpy as np
import pydicom
from PIL import Image
from pydicom.data import get_testdata_file
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

__all__ = [
    "ESCAPE",
    "PATIENT_ID",
    "PATIENT_NAME",
    "CorpusFile",
    "Ignored",
    "build_corpus",
    "dicom_jpeg_sof_bomb",
    "drop",
    "j2k_siz_bomb",
    "png_chunk_bomb",
    "sha256",
]

PATIENT_NAME = "Doe^Jane"
ESCAPE = "../../../../tmp/escape"
PATIENT_ID = ESCAPE
MAX_FILE_MB = 2  # the test's limits.max_file_mb: one file is made larger than this
DEEP = 34  # folders: deeper than discovery.MAX_DEPTH (32)
VL_PHOTO = "1.2.840.10008.5.1.4.1.1.77.1.4"
VIDEO_ENDOSCOPIC = "1.2.840.10008.5.1.4.1.1.77.1.1.1"


@dataclasses.dataclass(frozen=True, slots=True)
class CorpusFile:
    """A regular file for the inbox and what must become of it."""

    name: str | bytes  # inbox-relative; bytes for a name that is not UTF-8
    data: bytes
    status: str  # "done" or "rejected"
    reason: str | None = None  # the reject reason, when it is known
    frames: int | None = None  # expected result rows, when done
    no_cervix: bool = False  # not a red pixel in it: the analytic cervix model finds none

    @property
    def relative(self) -> Path:
        """The inbox-relative path (bytes names through the file system encoding)."""
        return Path(os.fsdecode(self.name))


@dataclasses.dataclass(frozen=True, slots=True)
class Ignored:
    """An entry that is never an input, and the ``report --ignored`` reason it must show."""

    name: str
    reason: str


def sha256(data: bytes) -> str:
    """Hex sha256 of some bytes."""
    return hashlib.sha256(data).hexdigest()


def _bundled(name: str) -> bytes:
    path = get_testdata_file(name, download=False)
    assert isinstance(path, str), f"{name} is not bundled with this pydicom"
    return Path(path).read_bytes()


def _encode(rgb: np.ndarray, ext: str) -> bytes:
    if rgb.ndim == 3 and rgb.shape[2] == 3:
        rgb = cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)
    elif rgb.ndim == 3 and rgb.shape[2] == 4:
        rgb = cv2.cvtColor(rgb, cv2.COLOR_RGBA2BGRA)
    ok, buffer = cv2.imencode(ext, rgb)
    assert ok
    return buffer.tobytes()


def _photo(seed: int, size: tuple[int, int] = (320, 240)) -> np.ndarray:
    """A colposcopy-like photo: dark field, pink disc, white patch (distinct per seed)."""
    rng = np.random.default_rng(seed)
    width, height = size
    image = np.full((height, width, 3), 20, dtype=np.uint8)
    centre = (width // 2 + int(rng.integers(-10, 10)), height // 2 + int(rng.integers(-10, 10)))
    cv2.ellipse(image, centre, (width // 4, height // 4), 0, 0, 360, (220, 120, 130), -1)
    cv2.circle(image, centre, height // 12, (250, 250, 250), -1)
    image[0, 0] = (seed % 256, seed // 256 % 256, 7)
    return image


def _png_chunk(kind: bytes, body: bytes) -> bytes:
    crc = zlib.crc32(kind + body) & 0xFFFFFFFF
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", crc)


def _png_bomb(width: int, height: int) -> bytes:
    """A PNG whose header claims width x height (8-bit RGB); its data is a few bytes."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _png_chunk(b"IHDR", ihdr)
        + _png_chunk(b"IDAT", zlib.compress(b"\x00" * 64))
        + _png_chunk(b"IEND", b"")
    )


def _jpeg_sof_bomb(width: int, height: int) -> bytes:
    data = bytearray(_encode(_photo(50, (64, 48)), ".jpg"))
    pos = data.find(b"\xff\xc0")
    assert pos >= 0
    struct.pack_into(">HH", data, pos + 5, height, width)
    return bytes(data)


def png_chunk_bomb() -> bytes:
    """A small valid PNG whose IDAT chunk claims 3.7 GB (OpenCV allocated that much)."""
    data = bytearray(_encode(_photo(51, (40, 32)), ".png"))
    pos = data.find(b"IDAT") - 4
    struct.pack_into(">I", data, pos, 3_730_028_942)
    return bytes(data)


def j2k_siz_bomb() -> bytes:
    """pydicom's JPEG 2000 test file (256x1024) whose codestream claims 2097408x1024 (as
    an OT Secondary Capture: the file's own NM modality is refused before any size check)."""
    data = bytearray(_dicom("JPEG2000.dcm", Modality="OT"))
    pos = data.find(b"\xff\x4f\xff\x51")
    struct.pack_into(">I", data, pos + 8, 2_097_408)  # Xsiz: one bit flipped by the fuzzer
    return bytes(data)


def dicom_jpeg_sof_bomb() -> bytes:
    """A JPEG-baseline DICOM (100x100) whose frame header claims 30000x30000."""
    data = bytearray(_bundled("SC_rgb_dcmtk_+eb+cy+np.dcm"))
    pos = data.find(b"\xff\xc0", data.find(b"\xff\xd8"))
    struct.pack_into(">HH", data, pos + 5, 30_000, 30_000)
    return bytes(data)


def _dicom(source: str, **changes: object) -> bytes:
    ds = pydicom.dcmread(io.BytesIO(_bundled(source)))
    for keyword, value in changes.items():
        setattr(ds, keyword, value)
    out = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds.save_as(out)
    return out.getvalue()


def _crafted_sr() -> bytes:
    """A minimal Basic Text SR: a valid DICOM object without any image."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.88.11"
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.preamble = b"\x00" * 128
    ds.SOPClassUID = meta.MediaStorageSOPClassUID
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.StudyInstanceUID = generate_uid()
    ds.SeriesInstanceUID = generate_uid()
    ds.Modality = "SR"
    ds.PatientName = PATIENT_NAME
    ds.PatientID = PATIENT_ID
    ds.ValueType = "CONTAINER"
    ds.ContinuityOfContent = "SEPARATE"
    item = Dataset()
    item.RelationshipType = "CONTAINS"
    item.ValueType = "TEXT"
    item.TextValue = "Cervix seen; no photograph in this object."
    ds.ContentSequence = [item]
    out = io.BytesIO()
    ds.save_as(out, enforce_file_format=True)
    return out.getvalue()


def _cmyk_jpeg() -> bytes:
    image = Image.fromarray(_photo(60)).convert("CMYK")
    out = io.BytesIO()
    image.save(out, format="JPEG", quality=90)
    return out.getvalue()


def _skimage(name: str) -> np.ndarray:
    import skimage.data

    image: np.ndarray = getattr(skimage.data, name)()
    return image


def build_corpus() -> list[CorpusFile]:
    """Every regular file of the corpus, with the fate it must meet (distinct bytes, but for
    one deliberate duplicate under another name)."""
    noise = random.Random(11)
    camera = _skimage("camera")
    no_red = np.zeros((*camera.shape, 3), np.uint8)
    no_red[..., 1] = camera  # green and blue only: not one red pixel
    no_red[..., 2] = camera
    truncated = _encode(_photo(40, (400, 300)), ".jpg")
    sixteen = (_photo(41).astype(np.uint16) * 257)[..., ::-1]  # BGR, 16 bits per sample
    ok, sixteen_png = cv2.imencode(".png", np.ascontiguousarray(sixteen))
    assert ok
    rgba = np.dstack([_photo(42), np.full((240, 320), 200, np.uint8)])
    coffee = _encode(_skimage("coffee"), ".png")
    long_name = "L" * (255 - len(".jpg")) + ".jpg"
    assert len(long_name.encode()) == 255
    return [
        # pydicom's own test files: photo-like Secondary Captures are processed, images of
        # other kinds (CT, MR, ultrasound, nuclear medicine, SEG, SR...) rejected
        CorpusFile("dicom/rgb rle.dcm", _bundled("SC_rgb_rle.dcm"), "done", frames=1),
        CorpusFile("dicom/ybr jpeg.dcm", _bundled("SC_rgb_dcmtk_+eb+cy+np.dcm"), "done", frames=1),
        CorpusFile("dicom/jpeg lossless.dcm", _bundled("SC_rgb_jpeg_gdcm.dcm"), "done", frames=1),
        CorpusFile(
            "dicom/j2k colour.dcm",
            _dicom("examples_jpeg2k.dcm", SOPClassUID=VL_PHOTO, Modality="XC"),
            "done",
            frames=1,
        ),
        CorpusFile("dicom/j2k grey.dcm", _dicom("JPEG2000.dcm", Modality="OT"), "done", frames=1),
        CorpusFile("dicom/two frames.dcm", _bundled("SC_rgb_rle_2frame.dcm"), "done", frames=2),
        CorpusFile(
            "dicom/ybr 30 frames.dcm",
            _dicom("examples_ybr_color.dcm", SOPClassUID=VIDEO_ENDOSCOPIC, Modality="ES"),
            "done",
            frames=30,
        ),
        CorpusFile("dicom/ct.dcm", _bundled("CT_small.dcm"), "rejected", "unsupported_sop_class"),
        CorpusFile("dicom/mr.dcm", _bundled("MR_small.dcm"), "rejected", "unsupported_sop_class"),
        CorpusFile(
            "dicom/us j2k.dcm", _bundled("examples_jpeg2k.dcm"), "rejected", "unsupported_sop_class"
        ),
        CorpusFile(
            "dicom/nm sc.dcm", _bundled("JPEG2000.dcm"), "rejected", "unsupported_sop_class"
        ),
        CorpusFile(
            "dicom/seg.dcm", _bundled("liver_1frame.dcm"), "rejected", "unsupported_sop_class"
        ),
        CorpusFile("dicom/sr.dcm", _bundled("test-SR.dcm"), "rejected", "unsupported_sop_class"),
        CorpusFile(
            "dicom/rtstruct.dcm", _bundled("rtstruct.dcm"), "rejected", "unsupported_sop_class"
        ),
        CorpusFile(
            "dicom/tiny 3x3.dcm", _bundled("SC_rgb_small_odd_jpeg.dcm"), "rejected", "too_small"
        ),
        # scikit-image's sample photos: pictures, but no colposcopy (processed all the same:
        # the models say what they see; the analytic test models see red as "cervix")
        CorpusFile(
            "photos/astronaut.jpg", _encode(_skimage("astronaut"), ".jpg"), "done", frames=1
        ),
        CorpusFile("photos/coffee.png", coffee, "done", frames=1),
        CorpusFile("photos/chelsea.jpg", _encode(_skimage("chelsea"), ".jpg"), "done", frames=1),
        CorpusFile("photos/camera grey.png", _encode(camera, ".png"), "done", frames=1),
        CorpusFile("photos/rocket.jpg", _encode(_skimage("rocket"), ".jpg"), "done", frames=1),
        CorpusFile(
            "photos/no red at all.png", _encode(no_red, ".png"), "done", frames=1, no_cervix=True
        ),
        CorpusFile("photos/same bytes as coffee.png", coffee, "done", frames=1),
        # crafted bad files
        CorpusFile("bad/zero bytes.jpg", b"", "rejected", "empty_file"),
        CorpusFile("bad/truncated.jpg", truncated[: len(truncated) // 2], "rejected", "truncated"),
        CorpusFile("bad/random.dcm", noise.randbytes(4096), "rejected", "unsupported_format"),
        CorpusFile("bad/random.png", noise.randbytes(4096), "rejected", "unsupported_format"),
        CorpusFile(
            "bad/text.jpg",
            b"Patient seen today, photos follow.\n" * 30,
            "rejected",
            "unsupported_format",
        ),
        CorpusFile("bad/crafted sr.dcm", _crafted_sr(), "rejected", "unsupported_sop_class"),
        CorpusFile("bad/png 60000x60000.png", _png_bomb(60000, 60000), "rejected", "too_large"),
        CorpusFile(
            "bad/jpeg 60000x60000.jpg", _jpeg_sof_bomb(60000, 60000), "rejected", "too_large"
        ),
        CorpusFile(
            "bad/100000 frames.dcm",
            _dicom("SC_rgb_rle_2frame.dcm", NumberOfFrames=100_000),
            "rejected",
            "too_many_frames",
        ),
        CorpusFile(
            "bad/20 frames of 10000x10000.dcm",
            _dicom("SC_rgb_rle_2frame.dcm", NumberOfFrames=20, Rows=10_000, Columns=10_000),
            "rejected",
            "too_large",
        ),
        CorpusFile("bad/png chunk of 3.7 GB.png", png_chunk_bomb(), "rejected", "truncated"),
        CorpusFile("bad/j2k codestream bomb.dcm", j2k_siz_bomb(), "rejected", "corrupt"),
        CorpusFile("bad/jpeg frame bomb.dcm", dicom_jpeg_sof_bomb(), "rejected", "corrupt"),
        CorpusFile(
            "bad/enormous.jpg",
            _encode(_photo(43), ".jpg") + bytes(MAX_FILE_MB * 1024 * 1024 + 1),
            "rejected",
            "file_too_large",
        ),
        CorpusFile(
            "bad/one pixel.png",
            _encode(np.zeros((1, 1, 3), np.uint8), ".png"),
            "rejected",
            "too_small",
        ),
        # unusual but valid photos
        CorpusFile("odd/cmyk.jpg", _cmyk_jpeg(), "done", frames=1),
        CorpusFile("odd/rgba.png", _encode(rgba, ".png"), "done", frames=1),
        CorpusFile("odd/16 bit.png", sixteen_png.tobytes(), "done", frames=1),
        # names
        CorpusFile("names/with  spaces in it .jpg", _encode(_photo(1), ".jpg"), "done", frames=1),
        CorpusFile("names/Ωμέγα 試験 ✓.jpg", _encode(_photo(2), ".jpg"), "done", frames=1),
        CorpusFile(
            "names/$(touch pwned);`rm -rf`|&.png", _encode(_photo(3), ".png"), "done", frames=1
        ),
        CorpusFile("names/new\nline.jpg", _encode(_photo(4), ".jpg"), "done", frames=1),
        CorpusFile(
            "names/bell\a escape\x1b[31m tab\t.jpg", _encode(_photo(5), ".jpg"), "done", frames=1
        ),
        CorpusFile("names/" + long_name, _encode(_photo(6), ".jpg"), "done", frames=1),
        CorpusFile("names/-rf --help.jpg", _encode(_photo(7), ".jpg"), "done", frames=1),
        # not UTF-8: cannot be stored as text; rejected, keyed by where it was
        CorpusFile(
            b"names/latin-1 \xe9t\xe9 \xff.jpg",
            _encode(_photo(8), ".jpg"),
            "rejected",
            "unreadable",
        ),
        # DICOM tags that look like paths, and a patient
        CorpusFile(
            "dicom/escape.dcm",
            _dicom(
                "SC_rgb_rle.dcm",
                PatientName=PATIENT_NAME,
                PatientID=PATIENT_ID,
                SeriesDescription=ESCAPE,
                StudyDescription="$(touch pwned)",
            ),
            "done",
            frames=1,
        ),
    ]


def drop(inbox: Path, outside: Path) -> tuple[list[CorpusFile], list[Ignored]]:
    """Lays the corpus into ``inbox`` (running daemon or not) and the entries that must be
    ignored beside it; ``outside`` receives the target of a symlink. Returns both lists."""
    files = build_corpus()
    for item in files:
        path = inbox / item.relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(item.data)
    outside.mkdir(parents=True, exist_ok=True)
    target = outside / "secret.jpg"
    target.write_bytes(_encode(_photo(90), ".jpg"))
    (inbox / "link to outside.jpg").symlink_to(target)
    (inbox / "link to etc").symlink_to("/etc", target_is_directory=True)
    (inbox / ".hidden.jpg").write_bytes(_encode(_photo(91), ".jpg"))
    (inbox / "upload.jpg.part").write_bytes(_encode(_photo(92), ".jpg"))
    os.mkfifo(inbox / "pipe.jpg")
    # Built beside the inbox, then moved in at once: the watcher sees one folder arrive.
    deep = outside / "deep"
    nested = deep.joinpath(*[f"d{i:02d}" for i in range(DEEP)])
    nested.mkdir(parents=True)
    (nested / "too deep.jpg").write_bytes(_encode(_photo(93), ".jpg"))
    deep.rename(inbox / "deep")
    deep_file = "/".join(["deep", *[f"d{i:02d}" for i in range(DEEP)], "too deep.jpg"])
    ignored = [
        Ignored("link to outside.jpg", "symlink"),
        Ignored("link to etc", "symlink"),
        Ignored(".hidden.jpg", "hidden"),
        Ignored("upload.jpg.part", "temp_name"),
        Ignored("pipe.jpg", "not_a_regular_file"),
        Ignored(deep_file, "too_deep"),
    ]
    return files, ignored
