"""A worker that lost its claim touches nothing: stalled past its lease while another worker
takes its input over and commits, it wakes up and writes, sweeps and disposes of nothing
of the new owner's (DESIGN invariant 13)."""

from __future__ import annotations

import hashlib
import signal
import time
from collections.abc import Callable
from pathlib import Path

import pydicom
import pytest
from sqlalchemy import create_engine, text
from support.daemon import Daemon, wait_for
from support.dicom_fixtures import vl_image
from support.photos import draw_photo

pytestmark = [pytest.mark.slow, pytest.mark.postgres, pytest.mark.timeout(900)]

LEASE_SECONDS = 5.0


def _snapshot(root: Path) -> dict[str, tuple[str, int, int]]:
    """Every published file under ``root`` (not a writer's staging or temp files): its
    content hash, inode and mtime (a rewrite with the same bytes still changes the inode)."""
    found = {}
    for path in sorted(root.rglob("*")):
        if path.is_file() and not any(part.startswith((".stage-", ".tmp-")) for part in path.parts):
            info = path.stat()
            digest = hashlib.sha256(path.read_bytes()).hexdigest()
            found[str(path.relative_to(root))] = (digest, info.st_ino, info.st_mtime_ns)
    return found


def _rows(url: str, sql: str) -> list[tuple[object, ...]]:
    engine = create_engine(url)
    try:
        with engine.connect() as connection:
            return [tuple(row) for row in connection.execute(text(sql))]
    except Exception:  # noqa: BLE001 - not migrated yet
        return []
    finally:
        engine.dispose()


def _writing(outbox: Path) -> list[Path]:
    """Files an attempt has begun to write for an input (staged, temp or final)."""
    return [p for p in outbox.rglob("*") if p.is_file()]


@pytest.mark.parametrize("pair", ["same_models", "other_models"])
def test_a_stalled_worker_that_lost_its_claim_leaves_the_new_owners_work_alone(
    pair: str,
    postgres_url: str,
    make_config: Callable[..., Path],
    daemons: Callable[..., Daemon],
    analytic_models: dict[str, Path],
    other_analytic_models: dict[str, Path],
    tmp_path: Path,
) -> None:
    """Worker A is stopped (SIGSTOP) mid-write for longer than its lease; worker B takes the
    DICOM input over and commits; A, continued, leaves B's row, files, SEG UID and archived
    input exactly as B left them, and no file of its own anywhere."""
    config_a = make_config(
        database__url=postgres_url,
        batch__size=1,
        batch__lease_seconds=LEASE_SECONDS,
        watch__after="archive",
        watch__settle_seconds=0.3,
    )
    models_b = analytic_models if pair == "same_models" else other_analytic_models
    config_b = tmp_path / "config_b.toml"
    config_b.write_text(
        config_a.read_text()
        .replace(str(analytic_models["cervix"]), str(models_b["cervix"]))
        .replace(str(analytic_models["lesion"]), str(models_b["lesion"])),
        encoding="utf-8",
    )
    outbox, archive = tmp_path / "outbox", tmp_path / "archive"
    # A writes on a slow disk (each fsync waits), so it can be caught in the middle.
    worker_a = daemons(config_a, "worker_a", fsync_delay=0.5)
    worker_a.wait_event("ready", timeout=300)
    vl_image(tmp_path / "staging" / "study.dcm", [draw_photo(320, 240, seed=3)])
    (tmp_path / "staging" / "study.dcm").rename(tmp_path / "inbox" / "study.dcm")

    wait_for(lambda: _writing(outbox), 120, "A writing the outputs", worker_a)
    worker_a.process.send_signal(signal.SIGSTOP)
    try:
        worker_b = daemons(config_b, "worker_b")
        worker_b.wait_event("ready", timeout=300)
        wait_for(
            lambda: _rows(postgres_url, "SELECT status FROM inputs") == [("done",)],
            120,
            "B's commit of the input A held",
            worker_b,
        )
        wait_for(lambda: list(archive.rglob("*.dcm")), 30, "B's disposal", worker_b)
        time.sleep(1.0)  # B's after-commit work settles
        before = _snapshot(tmp_path / "outbox")
        archived = _snapshot(archive)
        row = _rows(postgres_url, "SELECT dicom_seg_uid, dicom_seg_path FROM results")
    finally:
        worker_a.process.send_signal(signal.SIGCONT)

    wait_for(
        lambda: any(e["event"] == "lease_lost" for e in worker_a.events()),
        120,
        "A to find its claim gone",
        worker_a,
    )
    time.sleep(2.0)  # whatever A would still do after its commit
    assert worker_a.process.poll() is None, worker_a.diagnostics()
    assert _snapshot(tmp_path / "outbox") == before
    assert _snapshot(archive) == archived
    assert not [p for p in outbox.rglob("*") if p.name.startswith((".stage-", ".tmp-"))]
    assert list((tmp_path / "inbox").rglob("*.dcm")) == []
    [(seg_uid, seg_path)] = row
    assert pydicom.dcmread(str(seg_path)).SOPInstanceUID == seg_uid
    assert len(_rows(postgres_url, "SELECT id FROM results")) == 1
    assert worker_a.stop() == 0
    assert worker_b.stop() == 0
