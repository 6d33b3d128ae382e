"""DICOM inputs end to end: SEG and SC beside the PNG outputs, forwarded to a PACS, and
instances sent to the running daemon's Storage SCP processed like dropped files."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import cv2
import highdicom as hd
import numpy as np
import pydicom
import pytest
from click.testing import CliRunner
from pydicom.dataset import Dataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid
from pynetdicom import AE
from pynetdicom.sop_class import (
    Comprehensive3DSRStorage,
    CTImageStorage,
    SecondaryCaptureImageStorage,
    SegmentationStorage,
    Verification,
    VLPhotographicImageStorage,
)
from support.daemon import Daemon, counts, wait_for
from support.dicom_fixtures import VL_ENDOSCOPIC, vl_image
from support.dicom_scp import Receiver
from support.net import free_port
from support.photos import draw_photo

from cervixbatch.cli import main


def test_dicom_input_gets_seg_and_sc_matching_the_masks_and_forwarded(
    tmp_path: Path, make_config: Callable[..., Path]
) -> None:
    """A two-frame DICOM yields per frame a SEG whose segments equal the PNG masks, an SC
    and an SR, all in the source's study, recorded in the report and C-STOREd to the PACS."""
    receiver = Receiver(
        [SegmentationStorage, SecondaryCaptureImageStorage, Comprehensive3DSRStorage]
    )
    try:
        config = make_config(
            dicom__forward=f"PACS@127.0.0.1:{receiver.port}", dicom__forward_retries=1
        )
        source = vl_image(
            tmp_path / "drop" / "exam.dcm",
            [draw_photo(160, 120, seed=1), draw_photo(160, 120, seed=2)],
            VL_ENDOSCOPIC,
        )
        runner = CliRunner()
        result = runner.invoke(main, ["--config", str(config), "process", str(source)])
        assert result.exit_code == 0, result.output
        report = json.loads(
            runner.invoke(main, ["--config", str(config), "report", "--format", "json"]).stdout
        )
    finally:
        receiver.close()
    (item,) = report["items"]
    assert item["status"] == "done" and len(item["results"]) == 2
    original = pydicom.dcmread(source)
    for frame in item["results"]:
        outputs = frame["outputs"]
        seg = hd.seg.segread(outputs["dicom_seg"])
        assert seg.StudyInstanceUID == original.StudyInstanceUID
        assert seg.SeriesInstanceUID != original.SeriesInstanceUID
        assert seg.PatientID == original.PatientID and seg.PatientName == original.PatientName
        assert seg.SOPInstanceUID == frame["dicom"]["seg_sop_instance_uid"]
        assert len(seg.SegmentSequence) == 2
        pixels = seg.get_pixels_by_source_frame(
            source_sop_instance_uid=original.SOPInstanceUID,
            source_frame_numbers=[frame["frame"] + 1],
        )[0]
        for index, name in ((0, "cervix_mask"), (1, "lesion_mask")):
            png = cv2.imread(outputs[name], cv2.IMREAD_GRAYSCALE) > 0
            np.testing.assert_array_equal(pixels[..., index].astype(bool), png)
        sc = pydicom.dcmread(outputs["dicom_sc"])
        sr = hd.sr.srread(outputs["dicom_sr"])  # the measurements, referencing the SEG
        assert sr.SOPInstanceUID == frame["dicom"]["sr_sop_instance_uid"]
        assert sr.StudyInstanceUID == original.StudyInstanceUID
        assert sc.StudyInstanceUID == original.StudyInstanceUID
        assert frame["dicom"]["forward_status"] == "sent"
    received = {str(ds.SOPInstanceUID) for ds in receiver.datasets}
    expected = {
        f["dicom"][k]
        for f in item["results"]
        for k in ("seg_sop_instance_uid", "sc_sop_instance_uid", "sr_sop_instance_uid")
    }
    assert received == expected


def test_dicom_outputs_can_be_switched_off(
    tmp_path: Path, make_config: Callable[..., Path]
) -> None:
    """With [dicom] outputs = false a DICOM input gets only the PNG/JPEG outputs."""
    config = make_config(dicom__outputs=False)
    source = vl_image(tmp_path / "drop" / "exam.dcm", [draw_photo(160, 120, seed=3)])
    runner = CliRunner()
    assert runner.invoke(main, ["--config", str(config), "process", str(source)]).exit_code == 0
    report = json.loads(
        runner.invoke(main, ["--config", str(config), "report", "--format", "json"]).stdout
    )
    (frame,) = report["items"][0]["results"]
    assert "dicom_seg" not in frame["outputs"] and "dicom" not in frame


@pytest.mark.slow
def test_instances_sent_to_the_daemon_are_processed(
    tmp_path: Path, make_config: Callable[..., Path], daemons: Callable[..., Daemon]
) -> None:
    """A VL Photographic and a multi-frame VL Endoscopic image sent by C-STORE to the
    running daemon are processed; C-ECHO answers; a CT image is refused."""
    port = free_port()
    config = make_config(
        dicom__listen=f"127.0.0.1:{port}",
        dicom__ae_title="CERVIXBATCH",
        dicom__allowed_callers=["COLPOSCOPE"],
    )
    daemon = daemons(config)
    daemon.wait_event("ready")
    photo = pydicom.dcmread(vl_image(tmp_path / "src" / "a.dcm", [draw_photo(160, 120, seed=4)]))
    video = pydicom.dcmread(
        vl_image(
            tmp_path / "src" / "b.dcm",
            [draw_photo(160, 120, seed=5), draw_photo(160, 120, seed=6)],
            VL_ENDOSCOPIC,
        )
    )
    ae = AE(ae_title="COLPOSCOPE")
    for context in (VLPhotographicImageStorage, VL_ENDOSCOPIC, CTImageStorage, Verification):
        ae.add_requested_context(context, ExplicitVRLittleEndian)
    assoc = ae.associate("127.0.0.1", port, ae_title="CERVIXBATCH")
    assert assoc.is_established
    try:
        assert assoc.send_c_echo().Status == 0x0000
        assert assoc.send_c_store(photo).Status == 0x0000
        assert assoc.send_c_store(video).Status == 0x0000
        ct = Dataset()
        ct.SOPClassUID, ct.SOPInstanceUID = CTImageStorage, generate_uid()
        accepted = [c.abstract_syntax for c in assoc.accepted_contexts]
        assert CTImageStorage not in accepted
    finally:
        assoc.release()
    wait_for(lambda: counts(config).get("done") == 2, 90, "2 DICOM done", daemon)
    assert daemon.stop() == 0
