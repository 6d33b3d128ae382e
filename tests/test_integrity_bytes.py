"""A result belongs to the bytes it names: an input is read once and verified against its
registered sha256, DICOM outputs come from those same bytes, and only colposcopy-capable
DICOM objects (by SOP class) are segmented."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import cv2
import pydicom
import pytest
from click.testing import CliRunner
from pydicom.data import get_testdata_file
from support.dicom_fixtures import VL_PHOTO, vl_image
from support.photos import draw_photo, write_photo

from cervixbatch.cli import main
from cervixbatch.config import load_config
from cervixbatch.model.pair import load_stages
from cervixbatch.store.db import open_database
from cervixbatch.worker.runner import Runner

CT_IMAGE = "1.2.840.10008.5.1.4.1.1.2"


def _run(config: Path, *args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, ["--config", str(config), *args], catch_exceptions=False)
    return result.exit_code, result.stdout, result.stderr


def _items(config: Path) -> list[dict[str, Any]]:
    code, out, err = _run(config, "report", "--format", "json")
    assert code == 0, err
    return list(json.loads(out)["items"])


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file()) if folder.exists() else []


def _bundled(name: str) -> bytes:
    path = get_testdata_file(name, download=False)
    assert isinstance(path, str), f"{name} is not bundled with this pydicom"
    return Path(path).read_bytes()


def _process_with_runner(config_path: Path, path: Path, between: Callable[[Runner], None]) -> None:
    """Registers ``path``, lets ``between`` act on the runner, then drains the queue."""
    config = load_config(config_path)
    db = open_database(config.database.url)
    try:
        with Runner(config, db, load_stages(config)) as runner:
            assert runner.registrar.register(path) is not None
            between(runner)
            runner.process_until_empty()
    finally:
        db.dispose()


def test_a_file_replaced_while_queued_is_processed_as_a_new_input(
    tmp_path: Path, make_config: Callable[..., Path]
) -> None:
    """A queued photo replaced at the same path by one of another size before its claim:
    the old item ends `changed` (both digests in its detail) without outputs, and the new
    bytes are an input of their own whose masks have the new photo's size."""
    config = make_config()
    path = write_photo(tmp_path / "inbox" / "exam.png", draw_photo(320, 240, seed=1))
    old_sha = _sha256(path.read_bytes())
    new_bytes = cv2.imencode(".png", draw_photo(200, 150, seed=2))[1].tobytes()

    _process_with_runner(config, path, lambda _: path.write_bytes(new_bytes))

    by_sha = {item["sha256"]: item for item in _items(config)}
    assert set(by_sha) == {old_sha, _sha256(new_bytes)}
    old, new = by_sha[old_sha], by_sha[_sha256(new_bytes)]
    assert (old["status"], old["reason"], old["results"]) == ("rejected", "changed", [])
    assert old_sha in old["detail"] and _sha256(new_bytes) in old["detail"]
    assert not (tmp_path / "outbox" / f"{old['id']:08d}").exists()
    assert new["status"] == "done" and new["path"] == "exam.png"
    (result,) = new["results"]
    for name in ("cervix_mask", "lesion_mask"):
        mask = cv2.imread(result["outputs"][name], cv2.IMREAD_UNCHANGED)
        assert mask.shape == (150, 200), "the masks are not those of the new bytes"


def test_dicom_outputs_join_the_study_of_the_bytes_that_were_segmented(
    tmp_path: Path, make_config: Callable[..., Path]
) -> None:
    """A DICOM input replaced by another patient's exam (same size) while it is being
    segmented: every SEG and SC joins the study of the bytes its input row names, never
    the study of whatever lies at the path when the outputs are written."""
    config = make_config()
    path = vl_image(tmp_path / "inbox" / "exam.dcm", [draw_photo(160, 120, seed=3)])
    first = path.read_bytes()
    second = vl_image(tmp_path / "elsewhere" / "other.dcm", [draw_photo(160, 120, seed=4)])
    study_of = {
        _sha256(data): str(pydicom.dcmread(source).StudyInstanceUID)
        for data, source in ((first, path), (second.read_bytes(), second))
    }
    replaced: list[bool] = []

    def replace_once() -> None:
        if not replaced:
            path.write_bytes(second.read_bytes())
            replaced.append(True)

    def arm(runner: Runner) -> None:
        # The lease keeper hears of progress after each read and between model calls:
        # the file is replaced after its bytes were read, before any output is written.
        progress = runner.leases.progress

        def replace_then_progress() -> None:
            replace_once()
            progress()

        runner.leases.progress = replace_then_progress  # type: ignore[method-assign]

    _process_with_runner(config, path, arm)

    assert replaced
    segs = 0
    for item in _items(config):
        for result in item["results"]:
            for name in ("dicom_seg", "dicom_sc"):
                written = pydicom.dcmread(result["outputs"][name])
                assert str(written.StudyInstanceUID) == study_of[item["sha256"]], name
                segs += name == "dicom_seg"
    assert segs >= 1


def test_ct_mr_and_seg_objects_are_rejected_without_any_output(
    tmp_path: Path, make_config: Callable[..., Path]
) -> None:
    """pydicom's CT, MR and SEG test files and a nuclear-medicine Secondary Capture are
    rejected as unsupported_sop_class: no SEG, no SC, no file at all in the outbox; a
    colposcope's VL Photographic image beside them is processed."""
    config = make_config()
    drop = tmp_path / "drop"
    drop.mkdir()
    others = {
        "ct.dcm": "CT_small.dcm",
        "mr.dcm": "MR_small.dcm",
        "seg.dcm": "liver_1frame.dcm",
        "nm.dcm": "JPEG2000.dcm",  # Secondary Capture, modality NM
    }
    for name, bundled in others.items():
        (drop / name).write_bytes(_bundled(bundled))
    vl_image(drop / "colposcope.dcm", [draw_photo(160, 120, seed=5)])

    code, _, err = _run(config, "process", str(drop))
    assert code == 0, err

    items = {Path(item["path"]).name: item for item in _items(config)}
    for name in others:
        item = items[name]
        assert (item["status"], item["reason"]) == ("rejected", "unsupported_sop_class"), item
        assert item["results"] == []
        assert not (tmp_path / "outbox" / f"{item['id']:08d}").exists()
    assert "CT Image Storage" in items["ct.dcm"]["detail"]
    assert "modality NM" in items["nm.dcm"]["detail"]
    colposcope = items["colposcope.dcm"]
    assert colposcope["status"] == "done"
    outbox_files = _files(tmp_path / "outbox")
    assert {p.parent.name for p in outbox_files} == {f"{colposcope['id']:08d}"}
    assert sum(p.suffix == ".dcm" for p in outbox_files) == 3  # its SEG, SC and SR only


def test_accept_classes_names_the_classes_segmented(
    tmp_path: Path, make_config: Callable[..., Path]
) -> None:
    """`[dicom] accept_classes` by keyword replaces the default: listed CT is segmented and
    a VL Photographic image, no longer listed, is rejected."""
    config = make_config(dicom__accept_classes=["CTImageStorage"])
    assert load_config(config).dicom.accept_classes == (CT_IMAGE,)
    drop = tmp_path / "drop"
    drop.mkdir()
    (drop / "ct.dcm").write_bytes(_bundled("CT_small.dcm"))
    vl_image(drop / "photo.dcm", [draw_photo(160, 120, seed=6)], VL_PHOTO)
    code, _, err = _run(config, "process", str(drop))
    assert code == 0, err
    items = {Path(item["path"]).name: item for item in _items(config)}
    assert items["ct.dcm"]["status"] == "done"
    assert (items["photo.dcm"]["status"], items["photo.dcm"]["reason"]) == (
        "rejected",
        "unsupported_sop_class",
    )


@pytest.mark.parametrize("source", ["no_study_uid", "big_endian"])
def test_a_dicom_output_that_cannot_be_built_does_not_fail_the_input(
    source: str, tmp_path: Path, make_config: Callable[..., Path]
) -> None:
    """A DICOM without StudyInstanceUID is done with masks and overlay, its SEG/SC skipped
    with a recorded reason and no .dcm left in the outbox; a big-endian one gets its SEG."""
    config = make_config(limits__min_side=1)
    drop = tmp_path / "drop"
    drop.mkdir()
    if source == "no_study_uid":
        path = vl_image(drop / "exam.dcm", [draw_photo(160, 120, seed=7)])
        ds = pydicom.dcmread(path)
        del ds.StudyInstanceUID
        ds.save_as(path, enforce_file_format=True)
    else:  # pydicom's explicit VR big endian RGB Secondary Capture (3 x 3 pixels)
        (drop / "exam.dcm").write_bytes(_bundled("SC_rgb_small_odd_big_endian.dcm"))

    code, _, err = _run(config, "process", str(drop))
    assert code == 0, err

    (item,) = _items(config)
    assert item["status"] == "done", item
    (result,) = item["results"]
    assert Path(result["outputs"]["cervix_mask"]).is_file()
    assert Path(result["outputs"]["overlay"]).is_file()
    dicom_files = [p for p in _files(tmp_path / "outbox") if p.suffix == ".dcm"]
    if source == "no_study_uid":
        assert "dicom_seg" not in result["outputs"] and not dicom_files
        assert result["dicom_skipped"]["reason"] == "missing_uid"
        assert "StudyInstanceUID" in result["dicom_skipped"]["detail"]
    else:
        assert "dicom_skipped" not in result
        seg = pydicom.dcmread(result["outputs"]["dicom_seg"])
        assert seg.StudyInstanceUID == pydicom.dcmread(drop / "exam.dcm").StudyInstanceUID


def test_our_own_overlay_sent_back_is_not_segmented_again(
    tmp_path: Path, make_config: Callable[..., Path]
) -> None:
    """The overlay Secondary Capture cervixbatch wrote, dropped back into the inbox (as a
    PACS or a colleague might), is rejected as unsupported_sop_class, not segmented."""
    config = make_config()
    drop = tmp_path / "drop"
    vl_image(drop / "exam.dcm", [draw_photo(160, 120, seed=8)])
    assert _run(config, "process", str(drop))[0] == 0
    (item,) = _items(config)
    overlay = Path(item["results"][0]["outputs"]["dicom_sc"])
    again = tmp_path / "again"
    again.mkdir()
    (again / "overlay.dcm").write_bytes(overlay.read_bytes())
    assert _run(config, "process", str(again))[0] == 0
    back = next(i for i in _items(config) if i["id"] != item["id"])
    assert (back["status"], back["reason"]) == ("rejected", "unsupported_sop_class")
    assert "cervixbatch" in back["detail"]


def test_a_copy_that_still_holds_the_bytes_is_used_and_the_changed_one_is_not_deleted(
    tmp_path: Path, make_config: Callable[..., Path]
) -> None:
    """The same photo seen at two paths, one overwritten with another photo before the
    claim, with `watch.after = "delete"`: the input is read from the copy that still holds
    its bytes, and the overwritten file is not deleted as if it were that input: it is
    processed as an input of its own first."""
    config = make_config(watch__after="delete")
    inbox = tmp_path / "inbox"
    first = write_photo(inbox / "a.png", draw_photo(320, 240, seed=9))
    copy = inbox / "b.png"
    copy.write_bytes(first.read_bytes())
    other = cv2.imencode(".png", draw_photo(200, 150, seed=10))[1].tobytes()

    def overwrite_after_registering_the_copy(runner: Runner) -> None:
        assert runner.registrar.register(copy) is not None
        first.write_bytes(other)

    _process_with_runner(config, first, overwrite_after_registering_the_copy)

    items = _items(config)
    assert [item["status"] for item in items] == ["done", "done"]
    new = next(item for item in items if item["sha256"] == _sha256(other))
    (result,) = new["results"]
    assert cv2.imread(result["outputs"]["cervix_mask"], cv2.IMREAD_UNCHANGED).shape == (150, 200)
