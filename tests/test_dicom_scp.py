"""The Storage SCP feeding the inbox, and forwarding results to a PACS, over loopback."""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.uid import ExplicitVRLittleEndian, RLELossless
from pynetdicom import AE
from pynetdicom.sop_class import (
    CTImageStorage,
    RTStructureSetStorage,
    SecondaryCaptureImageStorage,
    SegmentationStorage,
    Verification,
    VideoEndoscopicImageStorage,
    VLPhotographicImageStorage,
)
from support.dicom_scp import Receiver, received, wait_idle
from support.dicom_sources import VIDEO_ENDOSCOPIC, VL_PHOTOGRAPHIC, make_source
from support.net import free_port

from cervixbatch.config import Config, DicomConfig
from cervixbatch.config.addresses import DicomPeer, parse_socket_address
from cervixbatch.delivery.dicom_forward import forward
from cervixbatch.errors import ConfigError, OutputError
from cervixbatch.imaging.frames import ReadLimits
from cervixbatch.imaging.reader import read_input
from cervixbatch.outputs.dicom import write_dicom_results
from cervixbatchd import scp as scp_module
from cervixbatchd.scp import INBOX_SUBFOLDER, StorageSCP

MPEG2 = "1.2.840.10008.1.2.4.100"
VERSIONS = {"cervix": "a" * 64, "lesion": "b" * 64}


@pytest.fixture
def start_scp(tmp_path: Path) -> Iterator[Callable[..., StorageSCP]]:
    """Starts a StorageSCP on a free loopback port with the given [dicom] settings."""
    started: list[StorageSCP] = []

    def _start(**dicom: object) -> StorageSCP:
        dicom.setdefault("allowed_callers", ("*",))
        settings = DicomConfig(listen=f"127.0.0.1:{free_port()}", **dicom)  # type: ignore[arg-type]
        server = StorageSCP(Config(dicom=settings), tmp_path / "inbox")
        server.start()
        started.append(server)
        return server

    yield _start
    for server in started:
        server.stop()


@pytest.fixture
def sources(tmp_path: Path) -> dict[str, Path]:
    folder = tmp_path / "sources"
    folder.mkdir()
    return {
        "photo": make_source(
            folder, "SC_rgb_rle.dcm", VL_PHOTOGRAPHIC, decompress=True, stem="vlp"
        ),
        "video": make_source(
            folder, "SC_rgb_rle_2frame.dcm", VIDEO_ENDOSCOPIC, decompress=False, stem="ves"
        ),
    }


def scu(title: str = "COLPOSCOPE") -> AE:
    ae = AE(ae_title=title)
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = 10
    return ae


def associate(ae: AE, server: StorageSCP):
    host, port = server.address
    return ae.associate(host, port, ae_title="CERVIXBATCH")


def test_stores_photo_and_multiframe_video_durably_and_answers_echo(
    start_scp: Callable[..., StorageSCP],
    sources: dict[str, Path],
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A VL Photographic and an RLE multi-frame Video Endoscopic image land in the inbox."""
    server = start_scp()
    ae = scu()
    ae.add_requested_context(VLPhotographicImageStorage, [ExplicitVRLittleEndian])
    ae.add_requested_context(VideoEndoscopicImageStorage, [RLELossless])
    ae.add_requested_context(Verification)
    assoc = associate(ae, server)
    assert assoc.is_established
    try:
        assert assoc.send_c_echo().Status == 0x0000
        sent = {}
        for name, path in sources.items():
            ds = pydicom.dcmread(path)
            sent[str(ds.SOPInstanceUID)] = (name, ds)
            assert assoc.send_c_store(ds).Status == 0x0000
    finally:
        assoc.release()

    files = received(server)
    assert len(files) == 2
    assert not [p for p in files if p.name.startswith(".")]  # no temp file left
    got = {}
    for path in files:
        assert path.suffix == ".dcm" and len(path.stem) == 32 and int(path.stem, 16) >= 0
        ds = pydicom.dcmread(path)
        got[str(ds.SOPInstanceUID)] = ds
    assert set(got) == set(sent)
    for uid, (name, original) in sent.items():
        copy = got[uid]
        assert copy.file_meta.TransferSyntaxUID == original.file_meta.TransferSyntaxUID
        np.testing.assert_array_equal(copy.pixel_array, original.pixel_array)
        assert "Doe" not in name and "PID" not in str(files)  # names never from the dataset
    frames = sorted(len(read_input(p, ReadLimits()).frames) for p in files)
    assert frames == [1, 2]  # the readers take what the SCP wrote
    logged = capsys.readouterr()
    text = logged.out + logged.err  # stdout or stderr: whichever an earlier test configured
    assert "dicom_scp_stored" in text
    for secret in ("Doe", "PID-778899", "19800101"):
        assert secret not in text


def test_unsupported_sop_classes_and_syntaxes_are_not_negotiated(
    start_scp: Callable[..., StorageSCP], sources: dict[str, Path], tmp_path: Path
) -> None:
    """CT and RT Structure Set storage, and MPEG-2 photos, are refused at negotiation."""
    server = start_scp()
    ae = scu()
    ae.add_requested_context(CTImageStorage)
    ae.add_requested_context(RTStructureSetStorage)
    ae.add_requested_context(VLPhotographicImageStorage, [MPEG2])
    ae.add_requested_context(Verification)
    assoc = associate(ae, server)
    assert assoc.is_established
    try:
        refused = {str(cx.abstract_syntax): cx.result for cx in assoc.rejected_contexts}
        assert refused[CTImageStorage] == 0x03  # abstract syntax not supported
        assert refused[RTStructureSetStorage] == 0x03
        assert refused[VLPhotographicImageStorage] == 0x04  # transfer syntax not supported
        ct = pydicom.dcmread(sources["photo"])
        ct.SOPClassUID = CTImageStorage
        with pytest.raises(ValueError, match="presentation context"):
            assoc.send_c_store(ct)
        assert assoc.send_c_echo().Status == 0x0000
    finally:
        assoc.release()
    assert received(server) == []


def test_calling_ae_titles_and_association_count_are_enforced(
    start_scp: Callable[..., StorageSCP],
) -> None:
    """A caller not in allowed_callers is rejected; so is one association too many."""
    server = start_scp(allowed_callers=("COLPOSCOPE",), max_associations=1)
    intruder = scu("INTRUDER")
    intruder.add_requested_context(Verification)
    assoc = associate(intruder, server)
    assert assoc.is_rejected and not assoc.is_established
    wait_idle(server)  # a rejected association counts until its thread has ended

    first_ae, second_ae = scu(), scu()
    for ae in (first_ae, second_ae):
        ae.add_requested_context(Verification)
    first = associate(first_ae, server)
    try:
        assert first.is_established
        second = associate(second_ae, server)
        assert second.is_rejected  # local limit exceeded
    finally:
        first.release()


def test_by_default_nobody_may_send_and_star_admits_any_caller(
    start_scp: Callable[..., StorageSCP], sources: dict[str, Path], tmp_path: Path
) -> None:
    """With allowed_callers = [] (the default) every association is rejected, "calling AE
    title not recognised", and nothing is stored; ["*"] admits any calling AE title."""
    closed = StorageSCP(
        Config(dicom=DicomConfig(listen=f"127.0.0.1:{free_port()}")), tmp_path / "closed"
    )
    with closed:
        ae = scu("ANYONE")
        ae.add_requested_context(VLPhotographicImageStorage, [ExplicitVRLittleEndian])
        assoc = associate(ae, closed)
        assert assoc.is_rejected and not assoc.is_established
        assert assoc.acceptor.primitive.diagnostic == 0x03  # calling AE title not recognised
        wait_idle(closed)
        assert received(closed) == []
    server = start_scp(allowed_callers=("*",))
    ae = scu("WHOEVER")
    ae.add_requested_context(VLPhotographicImageStorage, [ExplicitVRLittleEndian])
    assoc = associate(ae, server)
    try:
        assert assoc.is_established
        assert assoc.send_c_store(pydicom.dcmread(sources["photo"])).Status == 0x0000
    finally:
        assoc.release()


def test_peers_outside_allowed_peers_are_rejected(start_scp: Callable[..., StorageSCP]) -> None:
    """With allowed_peers set, an association from another address is rejected even for
    an allowed caller; from an allowed network it is accepted."""
    for peers, admitted in ((["10.0.0.0/8", "192.0.2.7"], False), (["127.0.0.0/8"], True)):
        server = start_scp(allowed_callers=("COLPOSCOPE",), allowed_peers=tuple(peers))
        ae = scu()
        ae.add_requested_context(Verification)
        assoc = associate(ae, server)
        try:
            assert assoc.is_established is admitted
            assert assoc.is_rejected is not admitted
        finally:
            if assoc.is_established:
                assoc.release()
        wait_idle(server)


def test_one_association_may_store_at_most_max_association_mb(
    start_scp: Callable[..., StorageSCP], sources: dict[str, Path]
) -> None:
    """Once an association has stored max_association_mb, further instances are answered
    0xA700 (the sender keeps them and retries); a new association starts afresh."""
    photo = pydicom.dcmread(sources["photo"])
    size = sources["photo"].stat().st_size  # about what one instance stores
    server = start_scp(max_association_mb=1.5 * size / (1024 * 1024))
    statuses = []
    for _ in range(2):
        ae = scu()
        ae.add_requested_context(VLPhotographicImageStorage, [ExplicitVRLittleEndian])
        assoc = associate(ae, server)
        try:
            for _ in range(2):
                photo.SOPInstanceUID = pydicom.uid.generate_uid()
                statuses.append(assoc.send_c_store(photo).Status)
        finally:
            assoc.release()
        wait_idle(server)
    assert statuses == [0x0000, 0xA700, 0x0000, 0xA700]
    assert len(received(server)) == 2


def test_a_failed_write_answers_out_of_resources(
    start_scp: Callable[..., StorageSCP],
    sources: dict[str, Path],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """When the file cannot be written durably the peer hears 0xA700, not success."""

    def disk_full(path: Path, source: Path) -> None:
        raise OutputError("cannot write: No space left on device")

    monkeypatch.setattr(scp_module, "store_file", disk_full)
    server = start_scp()
    ae = scu()
    ae.add_requested_context(VLPhotographicImageStorage, [ExplicitVRLittleEndian])
    assoc = associate(ae, server)
    try:
        assert assoc.send_c_store(pydicom.dcmread(sources["photo"])).Status == 0xA700
    finally:
        assoc.release()
    assert received(server) == []


def test_stop_frees_the_port_and_start_clears_stale_temp_files(tmp_path: Path) -> None:
    """stop() closes the listening socket; start() removes temp files a crash left."""
    listen = f"127.0.0.1:{free_port()}"
    stale = tmp_path / "inbox" / INBOX_SUBFOLDER / ".tmp-dead-beef.dcm"
    stale.parent.mkdir(parents=True)
    stale.write_bytes(b"half")
    os.utime(stale, (time.time() - 2 * 86_400,) * 2)  # names no owner: goes once a day old
    config = Config(dicom=DicomConfig(listen=listen))
    with StorageSCP(config, tmp_path / "inbox") as server:
        assert server.running and not stale.exists()
    assert not server.running
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(parse_socket_address(listen))
    assert parse_socket_address("[::1]:104") == ("::1", 104)
    for bad in ("nohost", "host:", "host:70000", ":104"):
        with pytest.raises(ValueError, match=r"host:port|out of range"):
            parse_socket_address(bad)
    with pytest.raises(ConfigError, match=r"dicom\.listen"):
        StorageSCP(Config(dicom=DicomConfig(listen="nohost")), tmp_path)
    with pytest.raises(ConfigError, match="ae_title"):
        StorageSCP(Config(dicom=DicomConfig(listen=listen, ae_title="X" * 17)), tmp_path).start()


@pytest.fixture
def outputs(sources: dict[str, Path], tmp_path: Path) -> list[Path]:
    folder = tmp_path / "outbox"
    folder.mkdir()
    mask = np.zeros((100, 100), np.uint8)
    mask[20:80, 20:80] = 255
    result = write_dicom_results(
        pydicom.dcmread(sources["photo"], stop_before_pixels=True),
        0,
        cervix_mask=mask,
        lesion_mask=np.zeros_like(mask),
        overlay_rgb=np.zeros((100, 100, 3), np.uint8),
        folder=folder,
        model_versions=VERSIONS,
    )
    return [result.seg, result.sc]


def test_forward_sends_seg_and_sc_to_a_storage_scp(outputs: list[Path]) -> None:
    """forward() C-STOREs the SEG and the SC; the receiver gets both instances intact."""
    receiver = Receiver([SegmentationStorage, SecondaryCaptureImageStorage])
    try:
        result = forward(
            outputs, DicomPeer("PACS", "127.0.0.1", receiver.port), "CERVIXBATCH", retries=0
        )
    finally:
        receiver.close()
    assert result.ok and result.reason is None and result.attempts == 1
    assert result.sent == tuple(outputs) and result.failed == ()
    sent = {str(pydicom.dcmread(p).SOPInstanceUID) for p in outputs}
    assert {str(ds.SOPInstanceUID) for ds in receiver.datasets} == sent
    assert set(receiver.callers) == {"CERVIXBATCH"}
    seg = next(ds for ds in receiver.datasets if ds.SOPClassUID == SegmentationStorage)
    assert seg.PatientID == "PID-778899" and len(seg.SegmentSequence) == 2


# pynetdicom's transport leaves the socket of a refused connection to the garbage collector
# (transport.py, "Don't be tempted to replace this with a self.close() call").
@pytest.mark.filterwarnings("ignore:unclosed <socket.socket:ResourceWarning")
def test_forward_reports_failures_and_retries_without_raising(outputs: list[Path]) -> None:
    """An unreachable peer or a refused SOP class give a result, not raise (a malformed
    destination is a configuration error at load: test_config)."""
    waits: list[float] = []
    down = forward(
        outputs,
        DicomPeer("PACS", "127.0.0.1", free_port()),
        "CERVIXBATCH",
        2,
        0.5,
        sleep=waits.append,
    )
    assert not down.ok and down.attempts == 3 and down.failed == tuple(outputs)
    assert waits == [0.5, 1.0]
    assert down.reason and "127.0.0.1" in down.reason

    receiver = Receiver([SegmentationStorage])  # this peer does not take the SC
    try:
        partial = forward(
            outputs,
            DicomPeer("PACS", "127.0.0.1", receiver.port),
            "CERVIXBATCH",
            1,
            0,
            sleep=waits.append,
        )
    finally:
        receiver.close()
    assert not partial.ok and partial.sent == (outputs[0],) and partial.failed == (outputs[1],)
    assert "presentation context" in (partial.reason or "")
    assert len(receiver.datasets) == 1  # the SEG was sent once, not again on the retry
