"""A real PACS: Orthanc (Debian's package) sends to our Storage SCP, dcmtk's storescu
sends too, and the results come back into the source's study in Orthanc, checked through
its REST API and QIDO-RS and read back with highdicom."""

from __future__ import annotations

import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import highdicom as hd
import pydicom
import pytest
import requests
from support.daemon import Daemon, counts, query, wait_for
from support.dicom_fixtures import vl_image
from support.orthanc_support import MODALITY, OUR_AE, Orthanc
from support.photos import draw_photo
from support.tools import require_executable

from cervixbatch.config import Config, DicomConfig
from cervixbatch.imaging.frames import ReadLimits
from cervixbatch.imaging.reader import read_input
from cervixbatchd.scp import StorageSCP

SEGMENTATION = "1.2.840.10008.5.1.4.1.1.66.4"
SECONDARY_CAPTURE = "1.2.840.10008.5.1.4.1.1.7"
PATIENT_AND_STUDY = (
    "PatientName",
    "PatientID",
    "PatientBirthDate",
    "PatientSex",
    "StudyInstanceUID",
    "StudyDate",
    "StudyTime",
    "AccessionNumber",
    "StudyID",
)


@pytest.fixture
def pacs(orthanc: Orthanc) -> Iterator[Orthanc]:
    """The session's Orthanc, emptied after the test."""
    yield orthanc
    orthanc.clear()


@pytest.fixture
def our_scp(pacs: Orthanc, tmp_path: Path) -> Iterator[Callable[..., StorageSCP]]:
    """Starts our Storage SCP where Orthanc's modality ``cervixbatch`` points."""
    started: list[StorageSCP] = []

    def start(*callers: str) -> StorageSCP:
        settings = DicomConfig(
            listen=f"127.0.0.1:{pacs.scp_port}", ae_title=OUR_AE, allowed_callers=callers
        )
        server = StorageSCP(Config(dicom=settings), tmp_path / f"inbox-{len(started)}")
        server.start()
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


def storescu(port: int, calling: str, *files: Path) -> subprocess.CompletedProcess[str]:
    """dcmtk's storescu: an independent sender, calling AE ``calling``."""
    exe = require_executable("storescu", install="apt-get install dcmtk")
    return subprocess.run(
        [exe, "-aet", calling, "-aec", OUR_AE, "127.0.0.1", str(port), *map(str, files)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def received(server: StorageSCP) -> dict[str, Path]:
    """SOP Instance UID -> file, of what our SCP stored."""
    if not server.folder.exists():
        return {}
    return {
        str(pydicom.dcmread(p, stop_before_pixels=True).SOPInstanceUID): p
        for p in server.folder.glob("*.dcm")
    }


def store_to_us(pacs: Orthanc, study_id: str) -> requests.Response:
    """Orthanc's REST: C-STORE a study to our modality, waiting for the job."""
    return requests.post(
        f"{pacs.url}/modalities/{MODALITY}/store",
        json={"Resources": [study_id], "Synchronous": True},
        timeout=120,
    )


def test_orthanc_and_storescu_send_to_our_scp_from_allowed_callers_only(
    pacs: Orthanc, our_scp: Callable[..., StorageSCP], tmp_path: Path
) -> None:
    """A study Orthanc sends (REST /modalities/.../store) and a file storescu sends land in
    the inbox readable; a caller not in allowed_callers stores nothing."""
    photo = vl_image(tmp_path / "src" / "a.dcm", [draw_photo(160, 120, seed=11)])
    other = vl_image(tmp_path / "src" / "b.dcm", [draw_photo(160, 120, seed=12)])
    study = pacs.upload(photo)["ParentStudy"]

    closed = our_scp("COLPOSCOPE")  # neither Orthanc nor dcmtk may send
    assert not store_to_us(pacs, study).ok
    refused = storescu(pacs.scp_port, "DCMTK", other)
    assert refused.returncode != 0
    assert "Association Rejected" in refused.stdout + refused.stderr
    assert received(closed) == {}
    closed.stop()

    server = our_scp("ORTHANC", "DCMTK")
    response = store_to_us(pacs, study)
    assert response.ok, response.text
    sent = storescu(pacs.scp_port, "DCMTK", other)
    assert sent.returncode == 0, sent.stdout + sent.stderr
    got = received(server)
    uids = {str(pydicom.dcmread(p).SOPInstanceUID): p for p in (photo, other)}
    assert set(got) == set(uids)
    for uid, path in got.items():
        (frame,) = read_input(path, ReadLimits()).frames
        (original,) = read_input(uids[uid], ReadLimits()).frames
        assert (frame.rgb == original.rgb).all()


def orthanc_series(pacs: Orthanc, study_uid: str) -> dict[str, list[dict[str, object]]]:
    """Modality -> the series of the study Orthanc holds (REST)."""
    study = pacs.study_id(study_uid)
    assert study is not None, "the study is not in Orthanc"
    series: dict[str, list[dict[str, object]]] = {}
    for item in pacs.get(f"/studies/{study}/series"):
        series.setdefault(item["MainDicomTags"]["Modality"], []).append(item)
    return series


@pytest.mark.slow
def test_a_study_from_orthanc_comes_back_with_its_seg_sc_and_sr(
    pacs: Orthanc,
    tmp_path: Path,
    make_config: Callable[..., Path],
    daemons: Callable[..., Daemon],
) -> None:
    """Orthanc sends a VL Photographic study to the running daemon, storescu sends
    another; each comes back into its own study in Orthanc with a SEG, an SC and an SR
    series, patient and study attributes intact, seen by REST and QIDO-RS, read back by
    highdicom (the SR referencing the SEG)."""
    config = make_config(
        dicom__listen=f"127.0.0.1:{pacs.scp_port}",
        dicom__ae_title=OUR_AE,
        dicom__allowed_callers=["ORTHANC", "DCMTK"],
        dicom__forward=f"{pacs.aet}@127.0.0.1:{pacs.dicom_port}",
        dicom__forward_retries=2,
        dicom__forward_backoff_seconds=0.5,
        # the DICOMweb poll runs beside the SCP (today's studies only: none here)
        dicomweb__qido_url=pacs.dicomweb,
        dicomweb__poll_seconds=1.0,
    )
    photo = vl_image(tmp_path / "src" / "a.dcm", [draw_photo(160, 120, seed=21)])
    other = vl_image(tmp_path / "src" / "b.dcm", [draw_photo(160, 120, seed=22)])
    study = pacs.upload(photo)["ParentStudy"]
    daemon = daemons(config)
    daemon.wait_event("dicom_scp_started", timeout=240)  # TensorFlow on a busy machine
    assert store_to_us(pacs, study).ok
    sent = storescu(pacs.scp_port, "DCMTK", other)
    assert sent.returncode == 0, sent.stdout + sent.stderr

    def forwarded() -> bool:
        rows = query(config, "SELECT forward_status FROM results")
        return len(rows) == 2 and all(status == "sent" for (status,) in rows)

    wait_for(lambda: counts(config).get("done") == 2, 120, "2 DICOM inputs done", daemon)
    wait_for(forwarded, 60, "the results forwarded", daemon)
    assert daemon.stop() == 0

    # storescu's image was never in Orthanc: its study there holds only our results.
    for source_path, expected in ((photo, ["OT", "SEG", "SR", "XC"]), (other, ["OT", "SEG", "SR"])):
        source = pydicom.dcmread(source_path)
        study_uid = str(source.StudyInstanceUID)
        series = orthanc_series(pacs, study_uid)
        assert sorted(series) == expected, sorted(series)
        assert all(len(items) == 1 for items in series.values())
        # QIDO-RS sees the same series in the study.
        found = pacs.qido(f"/studies/{study_uid}/series")
        assert sorted(item["00080060"]["Value"][0] for item in found) == expected

        (seg_instance,) = series["SEG"][0]["Instances"]
        seg_path = tmp_path / f"{source.SOPInstanceUID}-seg.dcm"
        seg_path.write_bytes(pacs.instance_file(str(seg_instance)))
        seg = hd.seg.segread(seg_path)
        assert seg.SOPClassUID == SEGMENTATION
        for keyword in PATIENT_AND_STUDY:
            assert seg.get(keyword) == source.get(keyword), keyword
        assert len(seg.SegmentSequence) == 2
        pixels = seg.get_pixels_by_source_instance([str(source.SOPInstanceUID)])
        assert pixels.shape == (1, source.Rows, source.Columns, 2)
        assert pixels[..., 0].any()  # the cervix was found

        (sr_instance,) = series["SR"][0]["Instances"]
        sr_path = tmp_path / f"{source.SOPInstanceUID}-sr.dcm"
        sr_path.write_bytes(pacs.instance_file(str(sr_instance)))
        report = hd.sr.srread(sr_path)
        assert report.StudyInstanceUID == source.StudyInstanceUID
        groups = report.content.get_planar_roi_measurement_groups()
        (seg_item,) = groups[0].referenced_segmentation_frame[0].ReferencedSOPSequence
        assert seg_item.ReferencedSOPInstanceUID == seg.SOPInstanceUID

        (sc_instance,) = series["OT"][0]["Instances"]
        sc = pydicom.dcmread(pydicom.filebase.DicomBytesIO(pacs.instance_file(str(sc_instance))))
        assert sc.SOPClassUID == SECONDARY_CAPTURE
        for keyword in PATIENT_AND_STUDY:
            assert sc.get(keyword) == source.get(keyword), keyword
        (reference,) = sc.SourceImageSequence
        assert reference.ReferencedSOPInstanceUID == source.SOPInstanceUID
