"""The Storage SCP holds its bounds while it receives, and per caller over time (issue 22,
item 6): an idle connection dropped before association, an oversized instance or a full
disk aborting the transfer as it arrives, a caller's budget spanning its associations.
Real pynetdicom peers on loopback."""

from __future__ import annotations

import socket
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset
from pydicom.uid import ExplicitVRLittleEndian
from pynetdicom import AE
from pynetdicom.sop_class import VLPhotographicImageStorage
from support.dicom_fixtures import vl_image
from support.dicom_scp import received, wait_idle
from support.net import free_port

from cervixbatch.config import Config, DicomConfig, LimitsConfig
from cervixbatchd.scp import StorageSCP


@pytest.fixture
def private_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """pynetdicom's temporary files go to a folder of this test's own."""
    folder = tmp_path / "tmp"
    folder.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(folder))
    return folder


@pytest.fixture
def start(tmp_path: Path, private_tmp: Path) -> Iterator[Callable[..., StorageSCP]]:
    """Starts a StorageSCP on a free loopback port with the given settings."""
    started: list[StorageSCP] = []

    def _start(limits: LimitsConfig | None = None, **dicom: object) -> StorageSCP:
        dicom.setdefault("allowed_callers", ("*",))
        settings = DicomConfig(listen=f"127.0.0.1:{free_port()}", **dicom)  # type: ignore[arg-type]
        config = Config(dicom=settings, limits=limits or LimitsConfig(min_free_mb=0.0))
        server = StorageSCP(config, tmp_path / "inbox")
        server.start()
        started.append(server)
        return server

    yield _start
    for server in started:
        server.stop()


def _photo(tmp_path: Path, side: int, seed: int = 0) -> Dataset:
    """A VL photograph of ``side`` x ``side`` RGB pixels, uncompressed (3 x side² bytes)."""
    pixels = np.random.default_rng(seed).integers(0, 255, (side, side, 3), dtype=np.uint8)
    return pydicom.dcmread(vl_image(tmp_path / f"photo-{side}-{seed}.dcm", [pixels]))


def _send(server: StorageSCP, datasets: list[Dataset], title: str = "COLPOSCOPE") -> list[int]:
    """One association sending ``datasets``: each status (-1: no answer, the association
    was aborted; -2: the association was not accepted)."""
    ae = AE(ae_title=title)
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = 10
    ae.add_requested_context(VLPhotographicImageStorage, [ExplicitVRLittleEndian])
    host, port = server.address
    assoc = ae.associate(host, port, ae_title="CERVIXBATCH")
    if not assoc.is_established:
        return [-2]
    statuses = []
    try:
        for ds in datasets:
            ds.SOPInstanceUID = pydicom.uid.generate_uid()
            answer = assoc.send_c_store(ds)
            statuses.append(int(answer.Status) if "Status" in answer else -1)
            if assoc.is_aborted:
                break
    finally:
        if assoc.is_established:
            assoc.release()
    return statuses


def test_an_idle_connection_is_dropped_before_association(
    start: Callable[..., StorageSCP], tmp_path: Path
) -> None:
    """A TCP connection that never sends A-ASSOCIATE-RQ is closed after
    idle_timeout_seconds, so it does not hold one of max_associations for long."""
    server = start(max_associations=1, idle_timeout_seconds=1.0)
    with socket.create_connection(server.address, timeout=10) as idle:
        idle.settimeout(5.0)
        opened = time.monotonic()
        assert idle.recv(1) == b""  # closed by the SCP
        assert time.monotonic() - opened < 4.0
    wait_idle(server)
    assert _send(server, [_photo(tmp_path, 64)]) == [0x0000]


def test_an_instance_over_max_file_mb_is_aborted_as_it_arrives(
    start: Callable[..., StorageSCP], tmp_path: Path, private_tmp: Path
) -> None:
    """A 3 MB instance under a 1 MB limit ends the association during the transfer (no
    answer, nothing stored, no temporary file left); a small one afterwards is stored."""
    server = start(limits=LimitsConfig(max_file_mb=1.0, min_free_mb=0.0))
    assert _send(server, [_photo(tmp_path, 1000)]) == [-1]
    wait_idle(server)
    assert received(server) == []
    assert list(private_tmp.iterdir()) == []
    assert _send(server, [_photo(tmp_path, 64)]) == [0x0000]


def test_a_full_disk_stops_a_transfer_as_it_arrives(
    start: Callable[..., StorageSCP], tmp_path: Path
) -> None:
    """Below the free-space watermark a 6 MB instance is aborted while it arrives, and a
    small one is answered 0xA700: nothing is stored."""
    server = start(limits=LimitsConfig(min_free_mb=1e12))
    assert _send(server, [_photo(tmp_path, 1500)]) == [-1]
    wait_idle(server)
    assert _send(server, [_photo(tmp_path, 64)]) == [0xA700]
    assert received(server) == []


def test_a_callers_budget_spans_its_associations(
    start: Callable[..., StorageSCP], tmp_path: Path
) -> None:
    """With caller_instances_per_hour = 2, a caller opening a new association per instance
    stores two, is answered 0xA700 for the third and is refused its next association."""
    server = start(caller_instances_per_hour=2, caller_mb_per_hour=0.0)
    statuses = []
    for seed in range(4):
        statuses += _send(server, [_photo(tmp_path, 64, seed)])
        wait_idle(server)
    assert statuses == [0x0000, 0x0000, 0xA700, -2]
    assert len(received(server)) == 2


def test_a_callers_byte_budget_aborts_the_transfer_that_passes_it(
    start: Callable[..., StorageSCP], tmp_path: Path
) -> None:
    """With caller_mb_per_hour = 4, two 3 MB instances in two associations: the first is
    stored, the second aborted as it passes the budget."""
    server = start(caller_mb_per_hour=4.0)
    first = _send(server, [_photo(tmp_path, 1000, 1)])
    wait_idle(server)
    second = _send(server, [_photo(tmp_path, 1000, 2)])
    assert (first, second) == ([0x0000], [-1])
    wait_idle(server)
    assert len(received(server)) == 1
