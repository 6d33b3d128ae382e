"""STOW-RS export to a real Orthanc's DICOMweb: stored in the source's study, read back;
credentials from a file; a 4xx is final and recorded with its status code, a server that
is down is retried with backoff; the per-result state shows in the report."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path

import highdicom as hd
import numpy as np
import pydicom
import pytest
from click.testing import CliRunner
from support.dicom_fixtures import vl_image
from support.net import free_port
from support.orthanc_support import Orthanc, orthanc_in
from support.photos import draw_photo

from cervixbatch.cli import main
from cervixbatch.config import DicomWebConfig
from cervixbatch.delivery.http_session import dicomweb_session, read_credentials
from cervixbatch.delivery.stow import stow
from cervixbatch.errors import ConfigError
from cervixbatch.outputs.dicom import write_dicom_results

VERSIONS = {"cervix": "c" * 64, "lesion": "d" * 64}
USERS = {"cervixbatch": "s3cret-pw"}


@pytest.fixture
def pacs(orthanc: Orthanc) -> Iterator[Orthanc]:
    """The session's Orthanc, emptied after the test."""
    yield orthanc
    orthanc.clear()


@pytest.fixture(scope="module")
def locked_pacs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Orthanc]:
    """A second Orthanc that wants HTTP basic authentication."""
    server = orthanc_in(tmp_path_factory.mktemp("orthanc-auth"), USERS)
    server.start()
    try:
        yield server
    finally:
        server.stop()


def outputs_of(source: Path, folder: Path) -> list[Path]:
    """The SEG and SC cervixbatch writes for ``source``."""
    mask = np.zeros((120, 160), np.uint8)
    mask[30:90, 40:120] = 255
    folder.mkdir(parents=True, exist_ok=True)
    written = write_dicom_results(
        pydicom.dcmread(source, stop_before_pixels=True),
        0,
        cervix_mask=mask,
        lesion_mask=np.zeros_like(mask),
        overlay_rgb=np.zeros((120, 160, 3), np.uint8),
        folder=folder,
        model_versions=VERSIONS,
    )
    return [written.seg, written.sc]


def credentials(tmp_path: Path, text: str) -> str:
    path = tmp_path / "dicomweb.secret"
    path.write_text(text, encoding="utf-8")
    path.chmod(0o600)
    return str(path)


def test_stow_stores_seg_and_sc_in_the_source_study(pacs: Orthanc, tmp_path: Path) -> None:
    """STOW-RS puts the SEG and SC into the source's study in Orthanc: QIDO-RS finds both
    series, and the SEG fetched back reads with highdicom, patient attributes intact."""
    source = vl_image(tmp_path / "src.dcm", [draw_photo(160, 120, seed=31)])
    pacs.upload(source)
    files = outputs_of(source, tmp_path / "out")

    result = stow(files, DicomWebConfig(stow_url=pacs.dicomweb, retries=0))
    assert result.ok and result.attempts == 1 and result.reason is None

    original = pydicom.dcmread(source)
    study = str(original.StudyInstanceUID)
    found = pacs.qido(f"/studies/{study}/series")
    assert sorted(item["00080060"]["Value"][0] for item in found) == ["OT", "SEG", "XC"]
    seg_series = next(i for i in found if i["00080060"]["Value"][0] == "SEG")
    series_uid = seg_series["0020000E"]["Value"][0]
    (instance,) = pacs.qido(f"/studies/{study}/series/{series_uid}/instances")
    sop_uid = instance["00080018"]["Value"][0]
    (orthanc_id,) = (
        item["ID"] for item in pacs.post("/tools/lookup", sop_uid.encode()) if item["Type"]
    )
    back = tmp_path / "back.dcm"
    back.write_bytes(pacs.instance_file(orthanc_id))
    seg = hd.seg.segread(back)
    assert seg.PatientID == original.PatientID and seg.PatientName == original.PatientName
    assert seg.StudyInstanceUID == original.StudyInstanceUID
    pixels = seg.get_pixels_by_source_instance([str(original.SOPInstanceUID)])
    assert pixels[0, 30:90, 40:120, 0].all() and not pixels[..., 1].any()


def test_a_4xx_is_final_and_keeps_its_status_code(locked_pacs: Orthanc, tmp_path: Path) -> None:
    """Wrong credentials: Orthanc answers 401, which is recorded and not retried; the right
    user:password from the file stores the files."""
    files = outputs_of(vl_image(tmp_path / "src.dcm", [draw_photo(160, 120, seed=32)]), tmp_path)
    waits: list[float] = []
    wrong = DicomWebConfig(
        stow_url=locked_pacs.dicomweb,
        credentials_file=credentials(tmp_path, "cervixbatch:wrong\n"),
        retries=3,
    )
    refused = stow(files, wrong, sleep=waits.append)
    assert not refused.ok and refused.final
    assert refused.http_status == 401 and refused.attempts == 1 and waits == []
    assert "401" in (refused.reason or "") and "wrong" not in (refused.reason or "")

    right = DicomWebConfig(
        stow_url=locked_pacs.dicomweb,
        credentials_file=credentials(tmp_path, "cervixbatch:s3cret-pw\n"),
    )
    assert stow(files, right).ok


def test_a_server_that_is_down_is_retried_with_backoff(tmp_path: Path) -> None:
    """No server: every attempt fails, with waits of backoff x 2^(n-1); not final."""
    files = outputs_of(vl_image(tmp_path / "src.dcm", [draw_photo(160, 120, seed=33)]), tmp_path)
    waits: list[float] = []
    settings = DicomWebConfig(
        stow_url=f"http://127.0.0.1:{free_port()}/dicom-web", retries=2, backoff_seconds=0.5
    )
    down = stow(files, settings, sleep=waits.append)
    assert not down.ok and not down.final and down.attempts == 3
    assert waits == [0.5, 1.0] and down.http_status is None
    assert "cannot reach" in (down.reason or "")


def test_credentials_come_from_a_file_and_tls_is_verified_by_default(tmp_path: Path) -> None:
    """user:password gives basic auth, a token a Bearer header; TLS verification is on
    unless switched off; a missing or empty file is a clear error naming the key."""
    basic = dicomweb_session(
        DicomWebConfig(credentials_file=credentials(tmp_path, "alice:pa:ss\n"))
    )
    assert basic.auth == ("alice", "pa:ss") and basic.verify is True
    token = dicomweb_session(
        DicomWebConfig(credentials_file=credentials(tmp_path, "eyJhbGciOi.abc-def\n"))
    )
    assert token.headers["Authorization"] == "Bearer eyJhbGciOi.abc-def" and token.auth is None
    assert dicomweb_session(DicomWebConfig(tls_verify=False)).verify is False
    assert dicomweb_session(DicomWebConfig(ca_file="/etc/ca.pem")).verify == "/etc/ca.pem"
    with pytest.raises(ConfigError, match=r"dicomweb\.credentials_file: cannot be read"):
        read_credentials(tmp_path / "missing")
    with pytest.raises(ConfigError, match="one line"):
        read_credentials(Path(credentials(tmp_path, "\n")))


def test_the_report_shows_the_stow_state_of_each_result(
    pacs: Orthanc, locked_pacs: Orthanc, tmp_path: Path, make_config: Callable[..., Path]
) -> None:
    """`process` with [dicomweb] stow_url: the report and `status` say "sent" per result;
    against an endpoint answering 401 they say "failed", with the status code."""
    source = vl_image(tmp_path / "drop" / "exam.dcm", [draw_photo(160, 120, seed=34)])
    runner = CliRunner()
    states = {}
    for name, url in (("open", pacs.dicomweb), ("locked", locked_pacs.dicomweb)):
        config = make_config(
            database__url=f"sqlite:///state-{name}/cervixbatch.db",
            paths__outbox=f"outbox-{name}",
            dicomweb__stow_url=url,
            dicomweb__retries=2,
            dicomweb__backoff_seconds=0.01,
        )
        result = runner.invoke(main, ["--config", str(config), "process", str(source)])
        assert result.exit_code == 0, result.output
        report = runner.invoke(main, ["--config", str(config), "report", "--format", "json"])
        (item,) = json.loads(report.stdout)["items"]
        (frame,) = item["results"]
        states[name] = frame["dicom"]
        status = runner.invoke(main, ["--config", str(config), "status", "--format", "json"])
        shown = json.loads(status.stdout)["deliveries"]
        assert shown == {"stow": {"sent" if name == "open" else "failed": 1}}
        table = runner.invoke(main, ["--config", str(config), "status"]).stdout
        assert "STOW-RS" in table
    assert states["open"]["stow_status"] == "sent"
    assert states["open"]["stow_http_status"] is None
    assert states["locked"]["stow_status"] == "failed"
    assert states["locked"]["stow_http_status"] == 401
    assert "401" in states["locked"]["stow_detail"]
    study = str(pydicom.dcmread(source).StudyInstanceUID)
    found = pacs.qido(f"/studies/{study}/series")  # the source itself was never in Orthanc
    assert sorted(item["00080060"]["Value"][0] for item in found) == ["OT", "SEG", "SR"]
