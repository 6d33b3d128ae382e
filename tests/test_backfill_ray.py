"""`cervixbatch backfill --engine ray` on a real Ray cluster of several nodes on this
machine (``ray.cluster_utils.Cluster``): the driver a real subprocess, a worker node
killed while it works, and the database and outbox checked for exactly-once results."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from support.photos import draw_photo, write_photo
from support.tools import tool_missing

pytestmark = pytest.mark.slow  # a Ray cluster of its own per test

PHOTOS = 200
_MB = 1024 * 1024


@pytest.fixture
def ray_cluster() -> Iterator[Any]:
    """A head (no CPUs: the work goes to the workers) and two worker nodes of 2 CPUs."""
    try:
        from ray.cluster_utils import Cluster
    except ImportError:
        tool_missing("ray is not installed (pip install 'cervixbatch[ray]')")
    cluster = Cluster(
        initialize_head=True,
        connect=False,
        head_node_args={"num_cpus": 0, "object_store_memory": 100 * _MB},
    )
    for _ in range(2):
        cluster.add_node(num_cpus=2, object_store_memory=100 * _MB)
    cluster.wait_for_nodes()
    try:
        yield cluster
    finally:
        cluster.shutdown()


def _photos(folder: Path, count: int) -> Path:
    """``count`` photos of distinct bytes (a PNG keeps the pixels that tell them apart)."""
    for index in range(count):
        rgb = draw_photo(160, 120, seed=index)
        rgb[0, 0] = (index % 256, index // 256, 7)
        write_photo(folder / f"p{index:04d}.png", rgb)
    return folder


class _Driver:
    """``cervixbatch backfill`` as a subprocess, its output in files (a pipe nobody reads
    while it runs would fill up and block it)."""

    def __init__(self, config: Path, *args: str) -> None:
        folder = config.parent
        self._out = (folder / "backfill.out").open("w+", encoding="utf-8")
        self._err = (folder / "backfill.err").open("w+", encoding="utf-8")
        command = [sys.executable, "-m", "cervixbatch.cli", "--config", str(config)]
        self.process = subprocess.Popen(
            [*command, "backfill", *args],
            stdout=self._out,
            stderr=self._err,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )

    def summary(self, timeout: float) -> tuple[int, dict[str, Any], str]:
        """Waits for the exit; (status, the JSON summary, standard error)."""
        texts = []
        try:
            code = self.process.wait(timeout=timeout)
        finally:
            if self.process.poll() is None:
                self.process.kill()
                self.process.wait()
            for handle in (self._out, self._err):
                handle.seek(0)
                texts.append(handle.read())
                handle.close()
        lines = [line for line in texts[0].splitlines() if line.startswith("{")]
        return code, json.loads(lines[-1]) if lines else {}, texts[1]


def _simulated_config(folder: Path) -> Path:
    """A configuration whose models are the simulated device (no TensorFlow to start in
    every actor: the cluster's behaviour is what is tested here)."""
    (folder / "inbox").mkdir(parents=True, exist_ok=True)
    config = folder / "config.toml"
    config.write_text(
        '[paths]\ninbox = "inbox"\noutbox = "outbox"\n'
        '[database]\nurl = "sqlite:///state/cervixbatch.db"\n'
        "[batch]\nsize = 8\n[models]\nsimulate_device_ms = 1.0\n"
        '[logging]\nformat = "json"\n',
        encoding="utf-8",
    )
    return config


def _backfill(config: Path, *args: str) -> _Driver:
    return _Driver(config, *args)


def _count(db: Path, sql: str) -> int:
    try:
        with sqlite3.connect(db, timeout=10) as connection:
            return int(connection.execute(sql).fetchone()[0])
    except sqlite3.OperationalError:  # not migrated yet
        return 0


def _summary(driver: _Driver, timeout: float) -> tuple[int, dict[str, Any], str]:
    return driver.summary(timeout)


def _outbox_files(outbox: Path) -> set[str]:
    return {str(p) for p in outbox.rglob("*") if p.is_file() or p.name.startswith(".")}


def _result_files(db: Path) -> set[str]:
    with sqlite3.connect(db, timeout=10) as connection:
        rows = connection.execute(
            "SELECT cervix_mask_path, lesion_mask_path, overlay_path, crop_path FROM results"
        ).fetchall()
    return {path for row in rows for path in row if path}


@pytest.mark.timeout(900)
def test_backfill_survives_a_lost_node_exactly_once(tmp_path: Path, ray_cluster: Any) -> None:
    """200 photos backfilled on a head and two worker nodes, one node killed midway: every
    input ends done exactly once (one result row each, one run), the outbox holds exactly
    the files the rows name (no staging folder, no temp file), and a second run of the
    same sources makes no model call."""
    photos = _photos(tmp_path / "backlog", PHOTOS)
    config = _simulated_config(tmp_path)
    db = tmp_path / "state" / "cervixbatch.db"
    args = (str(photos), "--address", ray_cluster.address, "--json")
    tuning = ("--commit-batch", "10", "--actors", "2", "--cpu-tasks", "2")
    driver = _backfill(config, *args, *tuning)
    deadline = time.monotonic() + 400
    victim = ray_cluster.list_all_nodes()[-1]
    killed = False
    while driver.process.poll() is None and time.monotonic() < deadline:
        done = _count(db, "SELECT count(*) FROM inputs WHERE status = 'done'")
        if not killed and done >= 30:
            ray_cluster.remove_node(victim, allow_graceful=False)
            killed = True
        time.sleep(0.2)
    code, summary, err = _summary(driver, timeout=max(1.0, deadline - time.monotonic()))
    assert killed, f"the run ended before a node could be killed: {err[-2000:]}"
    assert code != 0 or summary["committed"] == PHOTOS
    if code != 0:  # inputs the lost node took past their attempts: the rerun finishes them
        code, _, err = _summary(_backfill(config, *args), timeout=300)
    assert code == 0, err[-3000:]
    assert _count(db, "SELECT count(*) FROM inputs") == PHOTOS
    assert _count(db, "SELECT count(*) FROM inputs WHERE status = 'done'") == PHOTOS
    assert _count(db, "SELECT count(*) FROM results") == PHOTOS
    assert _count(db, "SELECT count(DISTINCT input_id) FROM results WHERE run = 1") == PHOTOS
    outbox = tmp_path / "outbox"
    assert _outbox_files(outbox) == _result_files(db)
    assert not list(outbox.rglob(".*")), "a staging folder or temp file was left"

    code, again, err = _summary(_backfill(config, *args), timeout=300)
    assert code == 0, err[-3000:]
    assert again["model_calls"] == 0
    assert again["committed"] == 0
    assert again["already_done"] == PHOTOS
    assert _count(db, "SELECT count(*) FROM results") == PHOTOS


def test_unreachable_address_is_one_line(tmp_path: Path) -> None:
    """A Ray address nothing answers at: one line naming it, exit 1, no traceback."""
    pytest.importorskip("ray", reason="ray is not installed (pip install 'cervixbatch[ray]')")
    config = _simulated_config(tmp_path)
    photos = _photos(config.parent / "few", 1)
    code, _, err = _summary(_backfill(config, str(photos), "--address", "127.0.0.1:9"), 60)
    assert code == 1
    lines = [line for line in err.splitlines() if line.strip()]
    assert lines == [
        "cervixbatch: error: cannot reach the Ray cluster at 127.0.0.1:9: Connection refused"
    ], err


def _rows(db: Path) -> dict[str, tuple[Any, ...]]:
    with sqlite3.connect(db, timeout=10) as connection:
        rows = connection.execute(
            "SELECT i.sha256, r.cervix_fraction, r.lesion_fraction, r.box_x0, r.box_y0, "
            "r.box_x1, r.box_y1, r.width, r.height, r.cervix_mask_path, r.lesion_mask_path "
            "FROM results r JOIN inputs i ON i.id = r.input_id"
        ).fetchall()
    return {row[0]: row[1:] for row in rows}


@pytest.mark.timeout(900)
def test_ray_and_local_engines_agree_with_keras_models(
    tmp_path: Path, make_config: Callable[..., Path]
) -> None:
    """The same photos through `--engine local` (today's runner) and `--engine ray` (a
    local Ray, the real Keras models loaded in the actor) give the same measures, boxes and
    byte-identical masks."""
    pytest.importorskip("ray", reason="ray is not installed (pip install 'cervixbatch[ray]')")
    photos = _photos(tmp_path / "photos", 12)
    results = {}
    for engine in ("local", "ray"):
        folder = tmp_path / engine
        folder.mkdir()
        config = make_config(
            paths__outbox=str(folder / "outbox"),
            database__url=f"sqlite:///{folder / 'state.db'}",
        )
        moved = folder / "config.toml"
        config.rename(moved)
        driver = _backfill(moved, str(photos), "--engine", engine, "--json", "--actors", "1")
        code, summary, err = _summary(driver, timeout=600)
        assert code == 0, err[-3000:]
        assert summary["done"] == 12
        results[engine] = _rows(folder / "state.db")
    local, ray = results["local"], results["ray"]
    assert local.keys() == ray.keys()
    for sha, row in local.items():
        other = ray[sha]
        assert row[:8] == other[:8], sha
        for mine, theirs in zip(row[8:], other[8:], strict=True):
            assert Path(mine).read_bytes() == Path(theirs).read_bytes()


@pytest.mark.timeout(900)
def test_a_killed_driver_is_finished_by_the_next_run(tmp_path: Path) -> None:
    """The driver SIGKILLed midway (a local Ray): the next run of the same command
    recovers its claims and finishes, every input done once, one result row each, the
    outbox holding exactly the rows' files (no staging folder left by the dead driver)."""
    pytest.importorskip("ray", reason="ray is not installed (pip install 'cervixbatch[ray]')")
    count = 60
    photos = _photos(tmp_path / "backlog", count)
    config = _simulated_config(tmp_path)
    db = tmp_path / "state" / "cervixbatch.db"
    args = (str(photos), "--json", "--commit-batch", "5", "--actors", "1")
    driver = _backfill(config, *args)
    deadline = time.monotonic() + 400
    while driver.process.poll() is None and time.monotonic() < deadline:
        if _count(db, "SELECT count(*) FROM inputs WHERE status = 'done'") >= 10:
            driver.process.kill()
            break
        time.sleep(0.2)
    code, _, err = _summary(driver, timeout=60)
    assert code == -9, f"the driver ended before it could be killed: {err[-2000:]}"
    left = _count(db, "SELECT count(*) FROM inputs WHERE status = 'processing'")
    assert left > 0  # claims the dead driver held

    code, summary, err = _summary(_backfill(config, *args), timeout=600)
    assert code == 0, err[-3000:]
    assert summary["done"] == count
    assert _count(db, "SELECT count(*) FROM inputs WHERE status = 'done'") == count
    assert _count(db, "SELECT count(*) FROM results") == count
    outbox = tmp_path / "outbox"
    assert _outbox_files(outbox) == _result_files(db)
    assert not list(outbox.rglob(".*")), "a staging folder or temp file was left"
