"""Header values that break the standard are checked where they are read: the row gets
what its columns can hold, the outputs that need valid UIDs are skipped, named by field."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pydicom
import pytest
from click.testing import CliRunner
from support.dicom_fixtures import out_of_standard_header, vl_image
from support.photos import draw_photo

from cervixbatch.cli import main
from cervixbatch.errors import DicomOutputSkipped, InputRejected
from cervixbatch.imaging.frames import ReadLimits
from cervixbatch.imaging.header_values import checked_uid, clean_text, uid_is_valid
from cervixbatch.imaging.reader import read_input
from cervixbatch.imaging.sop import SopClassFilter
from cervixbatch.outputs.dicom import write_dicom_results

if TYPE_CHECKING:
    from collections.abc import Callable

SKIPPED_FIELDS = "invalid_uid: SOPInstanceUID, StudyInstanceUID, SeriesInstanceUID"


@pytest.mark.parametrize(
    ("value", "valid"),
    [
        ("1.2.840.10008.5.1.4.1.1.77.1.4", True),
        ("1." + "2" * 62, True),  # 64 characters
        ("1." + "2" * 63, False),  # 65
        ("1.2..3", False),
        ("1.2.3.", False),
        (".1.2", False),
        ("1.2.a", False),
        ("1.2 .3", False),
        ("1.2.3\x00", False),
        ("", False),
    ],
)
def test_uid_is_valid_follows_the_standard(value: str, *, valid: bool) -> None:
    """A UID is at most 64 characters of digit components separated by single dots."""
    assert uid_is_valid(value) is valid


def test_checked_uid_drops_padding_and_refuses_the_rest() -> None:
    """Padding spaces and NULs at the ends are dropped; anything else invalid gives None."""
    assert checked_uid("1.2.3\x00") == ("1.2.3", True)
    assert checked_uid(" 1.2.3 ") == ("1.2.3", True)
    assert checked_uid(None) == (None, True)
    assert checked_uid("\x00") == (None, True)
    assert checked_uid("1.2." + "3" * 80) == (None, False)
    assert checked_uid("1.2.\x003") == (None, False)


def test_clean_text_drops_control_characters_and_cuts_to_width() -> None:
    """NULs and control characters go, the rest is cut to the column's width."""
    assert clean_text("X\x00C", 16) == "XC"
    assert clean_text("\x00\x00", 16) is None
    assert clean_text("ab\ncd\x7f\x9fe", 16) == "abcde"
    assert clean_text("A" * 40, 16) == "A" * 16
    assert clean_text(None, 16) is None


def _poison(tmp_path: Path, seed: int = 1) -> Path:
    return vl_image(
        tmp_path / f"poison-{seed}.dcm",
        [draw_photo(160, 120, seed=seed)],
        header=out_of_standard_header(seed),
    )


def test_reading_keeps_no_value_that_breaks_the_standard(tmp_path: Path) -> None:
    """Invalid UIDs are read as None and named in ``invalid_uids``; Modality loses its NUL."""
    decoded = read_input(_poison(tmp_path), ReadLimits(), sop_filter=SopClassFilter())
    info = decoded.dicom
    assert info is not None
    assert (info.study_uid, info.series_uid, info.sop_instance_uid) == (None, None, None)
    assert info.invalid_uids == ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID")
    assert info.sop_class_uid == "1.2.840.10008.5.1.4.1.1.77.1.4"
    assert info.modality == "XC"
    assert len(decoded.frames) == 1


def test_an_invalid_sop_class_is_rejected_without_quoting_it(tmp_path: Path) -> None:
    """A SOP Class UID that is no UID cannot match any class: rejected, value not quoted."""
    bad_class = "1.2.840.10008.5.1.4.1.1.77.1.4\x00x" + "9" * 60
    path = vl_image(
        tmp_path / "class.dcm", [draw_photo(160, 120)], header={"SOPClassUID": bad_class}
    )
    with pytest.raises(InputRejected) as info:
        read_input(path, ReadLimits(), sop_filter=SopClassFilter())
    assert info.value.reason.value == "unsupported_sop_class"
    assert "999999" not in info.value.detail and "\x00" not in info.value.detail


def test_seg_and_sc_are_skipped_naming_the_fields_not_the_values(tmp_path: Path) -> None:
    """Outputs that would carry the source's UIDs are skipped as ``invalid_uid``."""
    header = out_of_standard_header(1)
    source = pydicom.dcmread(_poison(tmp_path), stop_before_pixels=True)
    mask = np.zeros((120, 160), np.uint8)
    with pytest.raises(DicomOutputSkipped) as info:
        write_dicom_results(
            source,
            0,
            cervix_mask=mask,
            lesion_mask=mask,
            overlay_rgb=np.zeros((60, 80, 3), np.uint8),
            folder=tmp_path,
            model_versions={"cervix": "a" * 64, "lesion": "b" * 64},
        )
    assert info.value.reason == "invalid_uid"
    assert info.value.detail.startswith(SKIPPED_FIELDS)
    for value in header.values():
        assert value not in str(info.value)
    assert not list(tmp_path.glob("*.dcm.*")) and not (tmp_path / "seg.dcm").exists()


def test_a_dicom_with_out_of_standard_uids_is_done_without_seg_and_sc(
    tmp_path: Path, make_config: Callable[..., Path]
) -> None:
    """`process` segments such a DICOM: done, masks written, UID columns NULL, and each
    frame records SEG and SC skipped as ``invalid_uid`` with the fields named."""
    config = make_config()
    header = out_of_standard_header(3)
    source = vl_image(tmp_path / "drop" / "exam.dcm", [draw_photo(160, 120, seed=3)], header=header)
    runner = CliRunner()
    result = runner.invoke(main, ["--config", str(config), "process", str(source)])
    assert result.exit_code == 0, result.output
    out = runner.invoke(main, ["--config", str(config), "report", "--format", "json"]).stdout
    (item,) = json.loads(out)["items"]
    assert item["status"] == "done"
    assert item["study_uid"] is None and item["series_uid"] is None
    (frame,) = item["results"]
    assert Path(frame["outputs"]["cervix_mask"]).is_file()
    assert "dicom_seg" not in frame["outputs"]
    skipped = frame["dicom_skipped"]
    assert skipped["reason"] == "invalid_uid"
    assert skipped["detail"].startswith(SKIPPED_FIELDS)
    for value in header.values():
        assert value not in out
