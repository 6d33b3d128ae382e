"""One bad file must not take the fleet down: DICOM files whose headers break the standard
go through two `cervixbatch run` workers on one PostgreSQL database with ordinary photos;
both workers live, everything is done, and their logs name no UID and no path."""

from __future__ import annotations

import signal
from typing import TYPE_CHECKING

import pytest
from sqlalchemy import create_engine, text
from support.daemon import Daemon, pg_counts, photos, wait_for
from support.dicom_fixtures import out_of_standard_header, vl_image
from support.photos import draw_photo

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

pytestmark = [pytest.mark.slow, pytest.mark.postgres]

PHOTOS = 24
POISON = 4
START_TIMEOUT = 300.0  # two TensorFlow starts at once on a busy machine


@pytest.mark.timeout(600)  # two daemons' TensorFlow starts on a busy 2-core machine
def test_out_of_standard_dicom_headers_on_two_workers(
    postgres_url: str,
    make_config: Callable[..., Path],
    daemons: Callable[..., Daemon],
    tmp_path: Path,
) -> None:
    """24 photos and 4 VL Photographic files with a Study UID of 80 characters, a Series
    UID of 70, a SOP Instance UID of 90 and a NUL in Modality, on two workers: both stay
    up and exit 0 on SIGTERM, every input is done, the DICOMs with SEG and SC skipped as
    ``invalid_uid`` and NULL UID columns, and no UID or path reaches the workers' logs."""
    config = make_config(
        database__url=postgres_url,
        batch__size=4,
        batch__lease_seconds=30.0,
        watch__settle_seconds=0.5,
        watch__polling=False,
    )
    workers = [daemons(config, f"worker{i}", cli=True) for i in range(2)]
    for worker in workers:
        worker.wait_event("ready", timeout=START_TIMEOUT)
    staging = tmp_path / "staging"
    given = photos(staging, PHOTOS, seed=300)
    headers = [out_of_standard_header(seed) for seed in range(POISON)]
    for i, header in enumerate(headers):
        frames = [draw_photo(160, 120, seed=400 + i)]
        given.append(vl_image(staging / f"exam-{i}.dcm", frames, header=header))
    inbox = tmp_path / "inbox"
    for path in given:
        path.rename(inbox / path.name)  # "dropped at once": renames, no partials

    def all_done() -> bool:
        for worker in workers:
            if worker.process.poll() is not None:
                pytest.fail(f"a worker exited\n{worker.diagnostics()}")
        return pg_counts(postgres_url) == {"done": PHOTOS + POISON}

    wait_for(all_done, 240, "every input done")
    engine = create_engine(postgres_url)
    try:
        with engine.connect() as connection:
            dicoms = connection.execute(
                text(
                    "SELECT i.study_uid, i.series_uid, i.sop_instance_uid, i.sop_class_uid, "
                    "r.dicom_seg_path, r.dicom_sc_path, r.dicom_skipped, r.dicom_skipped_detail "
                    "FROM inputs i JOIN results r ON r.input_id = i.id WHERE i.kind = 'dicom'"
                )
            ).all()
            photo_results = connection.execute(
                text(
                    "SELECT COUNT(*) FROM inputs i JOIN results r ON r.input_id = i.id "
                    "WHERE i.kind = 'photo'"
                )
            ).scalar_one()
    finally:
        engine.dispose()
    assert photo_results == PHOTOS
    assert len(dicoms) == POISON
    for study, series, instance, sop_class, seg, sc, skipped, detail in dicoms:
        assert (study, series, instance) == (None, None, None)
        assert sop_class == "1.2.840.10008.5.1.4.1.1.77.1.4"
        assert (seg, sc) == (None, None)
        assert skipped == "invalid_uid"
        assert detail.startswith("invalid_uid: SOPInstanceUID, StudyInstanceUID, SeriesInstanceUID")
    for worker in workers:
        worker.process.send_signal(signal.SIGTERM)
    assert [worker.process.wait(timeout=60) for worker in workers] == [0, 0]

    secrets = [uid for header in headers for uid in header.values() if uid != "X\x00C"]
    secrets += [str(inbox / path.name) for path in given] + [path.name for path in given]
    secrets += ["Doe^Jane", "PID-778899"]  # the DICOM fixture's patient
    _assert_not_logged(workers, secrets)


def _assert_not_logged(workers: list[Daemon], secrets: list[str]) -> None:
    """None of ``secrets`` is anywhere in the workers' stdout or stderr."""
    for worker in workers:
        for log in (worker.stdout, worker.stderr):
            logged = log.read_text(encoding="utf-8", errors="replace")
            leaked = [secret for secret in secrets if secret in logged]
            assert not leaked, f"{log.name} names {leaked[:3]}"
