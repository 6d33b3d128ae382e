"""The pipelined runner (issue 17): the same results as the sequential one, commits in
claim order, bounded batches in flight, leases kept alive while batches wait, a failed
commit that loses nothing; and the simulated device it is measured with."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import cv2
import numpy as np
import pytest
from click.testing import CliRunner
from sqlalchemy import text
from sqlalchemy.exc import OperationalError
from structlog.testing import capture_logs
from support.dicom_fixtures import vl_image
from support.paths import REPO
from support.photos import draw_photo, write_photo

from cervixbatch.cli import main
from cervixbatch.config import Config, load_config
from cervixbatch.errors import ConfigError
from cervixbatch.model.pair import load_stages
from cervixbatch.model.simulated import simulated_stages
from cervixbatch.store import leases, queue
from cervixbatch.store.db import Database, open_database
from cervixbatch.worker.overlapped import DEPTH
from cervixbatch.worker.runner import Runner


@pytest.fixture
def open_db() -> Iterator[Callable[[Config], Database]]:
    """Opens databases for a test and disposes of them afterwards."""
    opened: list[Database] = []

    def _open(config: Config) -> Database:
        db = open_database(config.database.url)
        opened.append(db)
        return db

    yield _open
    for db in opened:
        db.dispose()


def _inputs(folder: Path, count: int) -> list[Path]:
    """Photos (two sizes), a file that is not an image, and a 5-frame DICOM."""
    paths = [
        write_photo(folder / f"p{i:02d}.jpg", draw_photo(320 + 8 * i, 240, seed=i))
        for i in range(count)
    ]
    (folder / "notes.jpg").write_bytes(b"not an image at all")
    frames = [draw_photo(160, 120, seed=50 + i) for i in range(5)]
    vl_image(folder / "study.dcm", frames)
    return [*paths, folder / "notes.jpg", folder / "study.dcm"]


def _rows(db: Database) -> list[tuple[object, ...]]:
    from sqlalchemy import text

    with db.read_session() as session:
        return [
            tuple(row)
            for row in session.execute(
                text(
                    "SELECT i.sha256, i.status, i.reason, r.frame, r.cervix_found, "
                    "r.cervix_fraction, r.lesion_fraction, r.box_x0, r.box_y0, r.box_x1, "
                    "r.box_y1, r.cervix_mask_path, r.lesion_mask_path "
                    "FROM inputs i LEFT JOIN results r ON r.input_id = i.id "
                    "ORDER BY i.sha256, r.frame"
                )
            )
        ]


def test_pipelined_and_sequential_runs_give_the_same_results(
    make_config: Callable[..., Path], tmp_path: Path, open_db: Callable[[Config], Database]
) -> None:
    """Photos, a rejected file and a multi-frame DICOM spread over several batches end
    with the same statuses, result rows and mask files under either schedule."""
    inputs = _inputs(tmp_path / "drop", 9)
    outcomes = {}
    for schedule in ("sequential", "pipelined"):
        config = load_config(make_config(batch__size=3, batch__pipeline=schedule == "pipelined"))
        config = _moved(config, tmp_path / schedule)
        db = open_db(config)
        with Runner(config, db, load_stages(config)) as runner:
            for path in inputs:
                runner.registrar.register(path)
            total = runner.process_until_empty()
        outcomes[schedule] = (total.done, total.rejected, total.failed, total.frames, _rows(db))
    sequential, pipelined = outcomes["sequential"], outcomes["pipelined"]
    assert sequential[:4] == pipelined[:4] == (10, 1, 0, 14)
    for old, new in zip(sequential[4], pipelined[4], strict=True):
        assert old[:11] == new[:11]
        for old_path, new_path in zip(old[11:], new[11:], strict=True):
            if old_path is not None:
                old_mask = cv2.imread(str(old_path), cv2.IMREAD_UNCHANGED)
                assert np.array_equal(old_mask, cv2.imread(str(new_path), cv2.IMREAD_UNCHANGED))


def _moved(config: Config, root: Path) -> Config:
    """The same configuration with its outbox and database under ``root``."""
    import dataclasses

    from cervixbatch.config import DatabaseConfig, PathsConfig

    return dataclasses.replace(
        config,
        paths=PathsConfig(inbox=config.paths.inbox, outbox=root / "outbox"),
        database=DatabaseConfig(url=f"sqlite:///{root / 'state.db'}"),
    )


def test_batches_commit_in_claim_order_with_a_bounded_number_in_flight(
    make_config: Callable[..., Path], tmp_path: Path, open_db: Callable[[Config], Database]
) -> None:
    """With far more queued than fits in flight, at most DEPTH batches are claimed at any
    time, several are (the pipeline overlaps them), and inputs are done in claim order."""
    config = load_config(make_config(batch__size=2, models__simulate_device_ms=5.0))
    db = open_db(config)
    paths = [
        write_photo(tmp_path / "drop" / f"p{i:02d}.jpg", draw_photo(320 + i, seed=i))
        for i in range(30)
    ]
    most_in_flight = 0

    def look(_outcome: object) -> None:
        nonlocal most_in_flight
        with db.read_session() as session:
            processing = queue.status_counts(session)["processing"]
        most_in_flight = max(most_in_flight, processing)

    with Runner(config, db, load_stages(config)) as runner, capture_logs() as logs:
        for path in paths:
            runner.registrar.register(path)
        total = runner.process_until_empty(on_batch=look)
    assert total.done == 30
    assert 2 < most_in_flight <= (DEPTH - 1) * 2  # the one handed back has committed
    done = [e["input_id"] for e in logs if e["event"] == "input_done"]
    assert done == sorted(done) and len(done) == 30


def test_a_busy_worker_leaves_the_rest_of_the_queue_to_others(
    make_config: Callable[..., Path], tmp_path: Path, open_db: Callable[[Config], Database]
) -> None:
    """A pipelined worker claims a batch only when its read stage is about to need it: while
    it reads its first batch of slow-to-decode photos it holds READ_AHEAD + 1 batches, and
    a second worker on the same queue can claim from the rest (it used to take DEPTH
    batches at once: here the whole drop)."""
    import threading

    path = make_config(batch__size=2, models__simulate_device_ms=5.0)
    config = load_config(path)
    db = open_db(config)
    for i in range(2 * DEPTH):  # all of it fitted in flight: large PNGs, slow to decode
        write_photo(tmp_path / "drop" / f"p{i:02d}.png", draw_photo(6000, 4500, seed=i))
    other_config = load_config(make_config(batch__size=2, batch__pipeline=False))
    assert other_config.database.url == config.database.url  # one queue, two workers
    with (
        Runner(config, db, load_stages(config)) as busy,
        Runner(other_config, open_db(other_config), load_stages(config)) as other,
    ):
        for photo in sorted((tmp_path / "drop").iterdir()):
            busy.registrar.register(photo)
        worker = threading.Thread(target=busy.process_batch)
        worker.start()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            with db.read_session() as session:
                if queue.status_counts(session)["processing"]:
                    break
            time.sleep(0.005)
        time.sleep(0.15)  # claims take milliseconds; reading one batch, ~0.4 s or more
        taken = other.claim_work(time.perf_counter())
        worker.join()
    assert len(taken) == 2, "the busy worker had claimed the whole queue"


def test_a_commit_that_meets_a_locked_database_mid_pipeline_is_tried_again(
    make_config: Callable[..., Path],
    tmp_path: Path,
    open_db: Callable[[Config], Database],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """When the database answers "locked" at the second batch's commit, the worker waits
    for it and commits again (an outage is ridden out, not raised): every input ends done
    exactly once, with one result row each."""
    config = load_config(make_config(batch__size=2, models__simulate_device_ms=5.0))
    db = open_db(config)
    for i in range(10):
        write_photo(tmp_path / "drop" / f"p{i}.jpg", draw_photo(320 + i, seed=i))
    original = queue.complete
    calls = {"n": 0}

    def fails_in_the_second_batch(*args: object, **kwargs: object) -> bool:
        calls["n"] += 1
        if calls["n"] == 3:
            raise OperationalError("UPDATE inputs", {}, Exception("database is locked"))
        return original(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(queue, "complete", fails_in_the_second_batch)
    stages = load_stages(config)
    with Runner(config, db, stages) as runner:
        for path in sorted((tmp_path / "drop").iterdir()):
            runner.registrar.register(path)
        first = runner.process_batch()
        assert first is not None and first.done == 2
        rest = runner.process_until_empty()
    assert calls["n"] > 10  # the refused commit was made again
    assert rest.done + rest.retried >= 8
    with db.read_session() as session:
        assert queue.status_counts(session)["done"] == 10
        rows = session.execute(text("SELECT input_id, COUNT(*) FROM results GROUP BY input_id"))
        assert sorted(n for _, n in rows) == [1] * 10


@pytest.mark.slow
def test_leases_of_batches_waiting_in_the_pipeline_are_renewed(
    make_config: Callable[..., Path], tmp_path: Path, open_db: Callable[[Config], Database]
) -> None:
    """A batch that waits behind others longer than a lease keeps its lease: no lease
    runs out while it is in flight, and every input is done by this worker."""
    config = load_config(
        make_config(batch__size=1, batch__lease_seconds=5.0, models__simulate_device_ms=1400.0)
    )
    db = open_db(config)
    for i in range(DEPTH + 1):
        write_photo(tmp_path / "drop" / f"p{i}.jpg", draw_photo(320 + i, seed=i))
    expired_seen = 0

    def look(_outcome: object) -> None:
        nonlocal expired_seen
        with db.read_session() as session:
            expired_seen = max(expired_seen, leases.expired_leases(session))

    with Runner(config, db, load_stages(config)) as runner, capture_logs() as logs:
        for path in sorted((tmp_path / "drop").iterdir()):
            runner.registrar.register(path)
        started = time.monotonic()
        total = runner.process_until_empty(on_batch=look)
        elapsed = time.monotonic() - started
    assert elapsed > 6.0  # the last batch waited longer than a lease
    assert total.done == DEPTH + 1
    assert expired_seen == 0
    assert not [e for e in logs if e["event"] in {"lease_lost", "leases_lost"}]


def test_decode_pools_are_sized_by_the_cores_this_process_may_use() -> None:
    """Pinned to one core (taskset, a cpuset), the runner starts one decoder, not one
    per core of the host."""
    code = (
        "import os; os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]}); "
        "from cervixbatch.worker.runner import _worker_count; "
        "print(_worker_count(0), _worker_count(3))"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), str(REPO / "daemon")])}
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env
    )
    assert out.stdout.split() == ["1", "3"]


def test_simulated_device_waits_without_cpu_and_returns_plausible_masks() -> None:
    """A simulated call takes its time per image without using the CPU, one call at a
    time, and returns a cervix ellipse and a lesion blob at the seeds' input sizes."""
    stages = simulated_stages(40.0)
    cpu, wall = time.process_time(), time.perf_counter()
    cervix = stages.cervix.predict_batch(np.zeros((4, 128, 128, 3), np.float32))
    lesion = stages.lesion.predict_batch(np.zeros((4, 512, 512, 1), np.float32))
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    assert wall >= 0.16  # 4 images x 40 ms over the two stages
    assert cpu < 0.05
    assert cervix.shape == (4, 128, 128) and lesion.shape == (4, 512, 512)
    assert stages.cervix.input_channels == 3 and stages.lesion.input_channels == 1
    cervix_area = float((cervix[0] > 0.5).mean())
    lesion_area = float((lesion[0] > 0.5).mean())
    assert 0.2 < cervix_area < 0.45
    assert 0.05 < lesion_area < 0.3


def test_simulated_device_key_is_checked(make_config: Callable[..., Path]) -> None:
    """``models.simulate_device_ms`` is a number, never negative."""
    with pytest.raises(ConfigError, match="simulate_device_ms"):
        load_config(make_config(models__simulate_device_ms=-1.0))
    assert load_config(make_config()).models.simulate_device_ms == 0.0


def test_bench_simulated_device_compares_both_schedules_with_the_bound(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``bench --simulate-device 5,20`` reports, per device time, both schedules'
    images/s, CPU per image, device busy share, the phase and CPU bounds and the ratios."""
    monkeypatch.delenv("CERVIXBATCH_CONFIG", raising=False)
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(
        main,
        [
            *("bench", "--simulate-device", "5,20", "--sizes", "320x240"),
            *("--count", "6", "--batch-size", "2"),
        ],
    )
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["simulated_device_ms"] == [5.0, 20.0]
    for ms in ("5", "20"):
        entry = report["sizes"]["320x240"][ms]
        for schedule in ("sequential", "pipelined"):
            run = entry[schedule]
            assert run["mode"] == schedule and run["images"] == 6
            assert run["processing_images_per_s"] > 0
            assert run["cpu_ms_per_image"]["processing"] > 0
            assert 0 < run["device_busy"] <= 1.05
        bound = entry["bound"]
        assert bound["device_ms"] == float(ms)
        assert bound["images_per_s"] <= 1000 / float(ms) + 1e-6
        assert bound["images_per_s"] <= bound["phases_images_per_s"]
        assert bound["images_per_s"] <= bound["shared_cores_images_per_s"]
        assert set(entry["ratios"]) == {
            "pipelined_vs_sequential",
            "pipelined_vs_bound",
            "pipelined_vs_phase_bound",
        }


def test_bench_rejects_a_bad_device_time(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``--simulate-device`` takes positive milliseconds, and says so otherwise."""
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(main, ["bench", "--simulate-device", "fast"])
    assert result.exit_code == 2
    assert "--simulate-device" in result.output


def test_bench_compare_schedules_runs_the_real_models_under_both(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``bench --compare-schedules`` puts the real models end to end under the configured
    schedule and the other one, on the same photos, with their ratio."""
    monkeypatch.delenv("CERVIXBATCH_CONFIG", raising=False)
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(
        main, ["bench", "--compare-schedules", "--tiny", "--count", "3", "--batch-size", "2"]
    )
    assert result.exit_code == 0, result.output
    size = json.loads(result.stdout)["sizes"]["320x240"]
    assert size["end_to_end"]["mode"] == "pipelined"  # the default schedule
    assert size["end_to_end_sequential"]["mode"] == "sequential"
    for run in (size["end_to_end"], size["end_to_end_sequential"], size["seed_loop"]):
        assert run["images"] == 3 and run["images_per_s"] > 0
    assert size["ratios"]["pipelined_vs_sequential"] > 0
