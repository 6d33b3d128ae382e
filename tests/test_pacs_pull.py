"""Pulling from a DICOMweb PACS: 20 instances found by QIDO-RS in a real Orthanc, fetched
by WADO-RS into the inbox and processed once each; the backfill survives Orthanc being
stopped and started in the middle, a second backfill fetches nothing new, and a PACS that
is down or answers something that is not JSON is logged once and retried."""

from __future__ import annotations

import datetime as dt
import json
import os
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pydicom
import pytest
import structlog
from click.testing import CliRunner
from support.daemon import Daemon, counts, query, wait_for
from support.dicom_fixtures import VL_ENDOSCOPIC, vl_image
from support.net import free_port
from support.orthanc_support import Orthanc, orthanc_in
from support.photos import draw_photo

from cervixbatch.cli import main
from cervixbatch.config import load_config
from cervixbatch.pacs.source import INBOX_SUBFOLDER, DicomWebSource, PacsUnavailable
from cervixbatch.pacs.walk import PacsPoller, backfill
from cervixbatch.store.db import open_database
from cervixbatch.store.pacs import get_cursor

DAYS = [dt.date(2026, 3, d) for d in (1, 2, 3, 4)]


@pytest.fixture
def archive(tmp_path: Path) -> Iterator[tuple[Orthanc, dict[str, str]]]:
    """An Orthanc of its own holding 20 colposcopy instances over 4 study dates (and one
    ultrasound-like picture that is not to be pulled); SOP Instance UID -> study date."""
    server = orthanc_in(tmp_path / "orthanc")
    server.start()
    dates = {}
    try:
        for n in range(20):
            day = DAYS[n % 4]
            path = vl_image(
                tmp_path / "archive" / f"{n}.dcm",
                [draw_photo(96, 80, seed=100 + n)],
                VL_ENDOSCOPIC if n % 5 == 0 else pydicom.uid.UID("1.2.840.10008.5.1.4.1.1.77.1.4"),
            )
            ds = pydicom.dcmread(path)
            ds.StudyDate = f"{day:%Y%m%d}"
            ds.save_as(path)
            server.upload(path)
            dates[str(ds.SOPInstanceUID)] = ds.StudyDate
        other = vl_image(tmp_path / "archive" / "us.dcm", [draw_photo(96, 80, seed=99)])
        ds = pydicom.dcmread(other)
        ds.Modality, ds.StudyDate = "US", "20260302"
        ds.save_as(other)
        server.upload(other)
        yield server, dates
    finally:
        server.stop()


def fetched_uids(inbox: Path) -> list[str]:
    folder = inbox / INBOX_SUBFOLDER
    return sorted(
        str(pydicom.dcmread(p, stop_before_pixels=True).SOPInstanceUID)
        for p in folder.glob("*.dcm")
    )


@pytest.mark.slow
def test_backfill_pulls_each_instance_once_across_an_outage(
    archive: tuple[Orthanc, dict[str, str]], tmp_path: Path, make_config: Callable[..., Path]
) -> None:
    """Orthanc is stopped after 2 of 4 date slices: the backfill stops with a clear error,
    resumes at slice 3 once Orthanc is back; the 20 instances (not the US one) are
    fetched and processed once each; another backfill and a dry run fetch nothing."""
    server, dates = archive
    config = make_config(dicomweb__qido_url=server.dicomweb)
    settings = load_config(config)
    database = open_database(settings.database.url)
    source = DicomWebSource(settings, database)
    slices: list[dt.date] = []

    def stop_after_two(first: dt.date, _last: dt.date, _pulled: object) -> None:
        slices.append(first)
        if len(slices) == 2:
            server.stop()

    dry_first = CliRunner().invoke(main, ["--config", str(config), "pacs", "backfill",
                                          "--since", "2026-03-01", "--until", "2026-03-04",
                                          "--modality", "XC,ES", "--dry-run"])  # fmt: skip
    assert "20 instance(s) found, would fetch 20" in dry_first.stdout, dry_first.output
    assert fetched_uids(settings.paths.inbox) == []
    try:
        with pytest.raises(PacsUnavailable, match="cannot reach the PACS"):
            backfill(
                source, database, since=DAYS[0], until=DAYS[-1],
                modalities=["XC", "ES"], on_slice=stop_after_two,
            )  # fmt: skip
    finally:
        source.close()
        database.dispose()
    inbox = settings.paths.inbox
    assert sorted(dates[u] for u in fetched_uids(inbox)) == ["20260301"] * 5 + ["20260302"] * 5

    server.start()
    runner = CliRunner()
    args = ["--config", str(config), "pacs", "backfill", "--since", "2026-03-01"]
    args += ["--until", "2026-03-04", "--modality", "XC,ES"]
    resumed = runner.invoke(main, args)
    assert resumed.exit_code == 0, resumed.output
    assert "2 slice(s) from 2026-03-03" in resumed.stdout and "fetched 10" in resumed.stdout
    assert fetched_uids(inbox) == sorted(dates)  # all 20, none twice, not the US picture

    done = runner.invoke(main, ["--config", str(config), "process", str(inbox)])
    assert done.exit_code == 0, done.output
    report = json.loads(
        runner.invoke(main, ["--config", str(config), "report", "--format", "json"]).stdout
    )
    assert len(report["items"]) == 20
    assert all(item["status"] == "done" for item in report["items"])

    again = runner.invoke(main, args)
    assert again.exit_code == 0, again.output
    assert "20 instance(s) found, fetched 0" in again.stdout
    dry = runner.invoke(main, [*args, "--dry-run"])
    assert "would fetch 0" in dry.stdout
    assert fetched_uids(inbox) == sorted(dates)


class NotJson(BaseHTTPRequestHandler):
    """A server that answers every GET with an HTML page, as a misconfigured proxy does."""

    def do_GET(self) -> None:
        body = b"<html><body>Login</body></html>"
        self.send_response(200)
        self.send_header("Content-Type", "application/dicom+json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *_args: object) -> None:
        return


def test_a_pacs_that_is_down_or_not_json_is_logged_once_and_retried(
    tmp_path: Path, make_config: Callable[..., Path]
) -> None:
    """Polls against a closed port, then a server answering HTML: each trouble is logged
    once however often it is met, nothing is raised, and the cursor does not move."""
    port = free_port()
    config = load_config(make_config(dicomweb__qido_url=f"http://127.0.0.1:{port}/dicom-web"))
    database = open_database(config.database.url)
    poller = PacsPoller(DicomWebSource(config, database), database, ["XC"], 60)
    try:
        with structlog.testing.capture_logs() as logs:
            poller.poll()
            poller.poll()
            server = ThreadingHTTPServer(("127.0.0.1", port), NotJson)
            thread = threading.Thread(target=server.serve_forever, daemon=True)
            thread.start()
            try:
                poller.poll()
                poller.poll()
            finally:
                server.shutdown()
                server.server_close()
    finally:
        poller.stop()
        database.dispose()
    troubles = [(e["event"], e.get("kind")) for e in logs if e["event"].startswith("pacs_")]
    assert troubles == [("pacs_unavailable", "unreachable"), ("pacs_unavailable", "not_json")]


def test_the_poll_fetches_instances_of_today_once(
    orthanc: Orthanc, tmp_path: Path, make_config: Callable[..., Path]
) -> None:
    """The daemon's poll takes the instances of studies dated today (not last year's),
    once however often it polls, and keeps its cursor in the database; a temp file a
    crash left in <inbox>/dicomweb goes when the source starts."""
    today = dt.datetime.now(dt.UTC).date()
    config = load_config(make_config(dicomweb__qido_url=orthanc.dicomweb))
    stale = config.paths.inbox / INBOX_SUBFOLDER / ".tmp-dead-beef.dcm"  # a crash's leftover
    stale.parent.mkdir(parents=True)
    stale.write_bytes(b"half an instance")
    os.utime(stale, (time.time() - 2 * 86_400,) * 2)  # names no owner: goes once a day old
    uids = {}
    for n, day in enumerate((today, today, today.replace(year=today.year - 1))):
        path = vl_image(tmp_path / "src" / f"{n}.dcm", [draw_photo(96, 80, seed=200 + n)])
        ds = pydicom.dcmread(path)
        ds.StudyDate = f"{day:%Y%m%d}"
        ds.save_as(path)
        orthanc.upload(path)
        uids[str(ds.SOPInstanceUID)] = day
    database = open_database(config.database.url)
    poller = PacsPoller(DicomWebSource(config, database), database, ["XC"], 60)
    try:
        poller.poll()
        poller.poll()
        with database.read_session() as session:
            cursor = get_cursor(session, "poll")
    finally:
        poller.stop()
        database.dispose()
        orthanc.clear()
    assert fetched_uids(config.paths.inbox) == sorted(u for u, d in uids.items() if d == today)
    assert cursor == f"{today:%Y%m%d}"
    assert not stale.exists()


@pytest.mark.slow
def test_the_daemon_pulls_a_study_of_today_and_never_its_own_results(
    orthanc: Orthanc,
    tmp_path: Path,
    make_config: Callable[..., Path],
    daemons: Callable[..., Daemon],
) -> None:
    """The running daemon's poll fetches today's VL photo from Orthanc, processes it and
    C-STOREs the SEG, SC and SR back into its study; later polls do not pull the SC back
    (modality OT, a Secondary Capture: of a wanted class, but ours)."""
    photo = vl_image(tmp_path / "src" / "today.dcm", [draw_photo(160, 120, seed=51)])
    ds = pydicom.dcmread(photo)
    ds.StudyDate = f"{dt.datetime.now(dt.UTC).date():%Y%m%d}"
    ds.save_as(photo)
    orthanc.upload(photo)
    config = make_config(
        dicomweb__qido_url=orthanc.dicomweb,
        dicomweb__poll_seconds=1.0,
        dicom__forward=f"{orthanc.aet}@127.0.0.1:{orthanc.dicom_port}",
    )
    try:
        daemon = daemons(config)
        wait_for(lambda: counts(config).get("done") == 1, 240, "the pulled photo done", daemon)
        wait_for(
            lambda: query(config, "SELECT forward_status FROM results") == [("sent",)],
            60,
            "its results sent back",
            daemon,
        )
        fetched = query(config, "SELECT COUNT(*) FROM pacs_instances")
        polls_before = len([e for e in daemon.events() if e["event"] == "pacs_polled"])
        time.sleep(4)  # several polls after the SEG, SC and SR are in Orthanc
        assert daemon.stop() == 0
        assert counts(config) == {"done": 1}  # no second input: the SC was not pulled
        assert query(config, "SELECT COUNT(*) FROM pacs_instances") == fetched == [(1,)]
        assert polls_before >= 1
        study = orthanc.qido(f"/studies/{ds.StudyInstanceUID}/series")
        assert sorted(s["00080060"]["Value"][0] for s in study) == ["OT", "SEG", "SR", "XC"]
    finally:
        orthanc.clear()
