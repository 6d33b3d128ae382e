"""Running it for months, against the daemon as a real subprocess: status while it works,
pauses and dies; reprocessing it picks up; retention it runs; backups taken while it
writes."""

from __future__ import annotations

import datetime as dt
import json
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from support.daemon import Daemon, counts, photos, query, wait_for
from support.models import with_lesion_model

from cervixbatch.cli import main

pytestmark = pytest.mark.slow


def _cli(config: Path, *args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, ["--config", str(config), *args], catch_exceptions=False)
    return result.exit_code, result.stdout, result.stderr


def _files(config: Path, run: int) -> list[Path]:
    """Every output file the results of one run name."""
    rows = query(
        config,
        "SELECT cervix_mask_path, lesion_mask_path, overlay_path, crop_path FROM results "
        f"WHERE run = {int(run)} ORDER BY id",
    )
    return [Path(p) for row in rows for p in row if p]


def _status(config: Path, *args: str) -> tuple[int, dict[str, Any]]:
    code, out, _ = _cli(config, "status", "--format", "json", *args)
    return code, json.loads(out)


def test_status_shows_a_paused_daemon_alive_and_a_killed_one_stale(
    make_config: Callable[..., Path], daemons: Callable[..., Daemon], tmp_path: Path
) -> None:
    """A running daemon is a live worker with its pid, models and pause reason (here: the
    disk watermark); the queue's age decides the exit status; once SIGKILLed it is stale at
    once (its process is gone), and status exits 1."""
    config = make_config(limits__min_free_mb=1e12)  # always below: no input is ever taken
    daemon = daemons(config)
    daemon.wait_event("ready")
    photos(tmp_path / "inbox", 2)
    wait_for(lambda: counts(config).get("queued") == 2, 30, "2 queued", daemon)

    def paused_reported() -> dict[str, Any] | None:
        code, status = _status(config, "--max-queue-age", "3600")
        return status if code == 0 and status["paused"] else None

    status = wait_for(paused_reported, 30, "a live, paused worker", daemon)
    (worker,) = status["workers"]
    assert worker["state"] == "alive" and worker["kind"] == "daemon"
    assert worker["pid"] == daemon.process.pid and not worker["process_gone"]
    assert worker["models"]["cervix"] and worker["models"]["lesion"]
    assert status["paused"][0]["reason"].startswith("disk space low")
    assert status["disk"]["low"] is True
    assert status["queue"]["by_status"]["queued"] == 2
    time.sleep(1.5)
    code, late = _status(config, "--max-queue-age", "1")
    assert code == 1 and late["problems"][0].startswith("the oldest queued input has waited")

    daemon.process.kill()
    daemon.process.wait(timeout=30)
    code, status = _status(config, "--stale-after", "3600")
    assert code == 1 and status["problems"][0] == "no live worker"
    (worker,) = status["workers"]
    assert worker["state"] == "stale" and worker["process_gone"] is True
    code, table, _ = _cli(config, "status")
    assert code == 1 and "stale (process gone)" in table


def test_the_daemon_takes_reprocessed_inputs_and_keeps_the_first_results(
    make_config: Callable[..., Path],
    daemons: Callable[..., Daemon],
    second_lesion_model: Path,
    tmp_path: Path,
) -> None:
    """Inputs `process` made with one model, re-queued by `reprocess --other-models` while
    the daemon runs with another, get a second result from the daemon; the first results
    keep their rows and files."""
    config = make_config()
    photos(tmp_path / "inbox", 3)
    assert _cli(config, "process", str(tmp_path / "inbox"))[0] == 0
    first = _files(config, 1)
    with_lesion_model(config, second_lesion_model)
    daemon = daemons(config)
    daemon.wait_event("ready")
    code, out, err = _cli(config, "reprocess", "--other-models", "--format", "json")
    assert code == 0 and len(json.loads(out)["requeued"]) == 3, err

    def two_runs_each() -> bool:
        rows = query(config, "SELECT input_id, COUNT(*) FROM results GROUP BY input_id")
        return len(rows) == 3 and all(n == 2 for _, n in rows) and counts(config) == {"done": 3}

    wait_for(two_runs_each, 60, "a second result for each input", daemon)
    assert daemon.stop() == 0
    assert _files(config, 1) == first
    assert all(path.is_file() for path in first)
    second = query(config, "SELECT lesion_mask_path, lesion_model FROM results WHERE run = 2")
    assert all("/run_0002/" in path and Path(path).is_file() for path, _ in second)
    assert len({model for _, model in second}) == 1


def test_the_daemon_removes_expired_outputs_of_earlier_runs(
    make_config: Callable[..., Path],
    daemons: Callable[..., Daemon],
    second_lesion_model: Path,
    tmp_path: Path,
) -> None:
    """With `[retention] outputs_days = 1` the daemon removes the files of results older
    than a day that a later run superseded, records outputs_purged_at, and keeps the
    latest results' files."""
    config = make_config(retention__outputs_days=1)
    photos(tmp_path / "inbox", 2)
    assert _cli(config, "process", str(tmp_path / "inbox"))[0] == 0
    with_lesion_model(config, second_lesion_model)
    assert _cli(config, "reprocess", "--status", "done")[0] == 0
    assert _cli(config, "process", str(tmp_path / "inbox"))[0] == 0
    three_days_ago = (dt.datetime.now(dt.UTC) - dt.timedelta(days=3)).replace(tzinfo=None)
    with sqlite3.connect(tmp_path / "state" / "cervixbatch.db") as connection:
        connection.execute("UPDATE results SET created_at = ?", (three_days_ago.isoformat(" "),))
    old, latest = _files(config, 1), _files(config, 2)
    daemon = daemons(config)
    event = daemon.wait_event("outputs_purged")
    assert event["results"] == 2 and event["files"] == len(old) == 8
    assert not any(p.exists() for p in old)
    assert all(p.is_file() for p in latest)
    assert daemon.stop() == 0
    purged = query(config, "SELECT run, outputs_purged_at IS NOT NULL FROM results ORDER BY run")
    assert purged == [(1, 1), (1, 1), (2, 0), (2, 0)]


def test_a_backup_taken_while_the_daemon_processes_50_photos_holds_every_committed_row(
    make_config: Callable[..., Path], daemons: Callable[..., Daemon], tmp_path: Path
) -> None:
    """Backups taken over and over while the daemon works through 50 photos each open, pass
    SQLite's integrity check, and hold every row committed before they began."""
    # A stand-in accelerator at 300 ms per image keeps the daemon busy for ~15 s whatever the
    # machine, so several backups fall mid-run (real tiny models on an idle machine finished
    # the 50 photos before a second backup began).
    config = make_config(batch__size=4, models__simulate_device_ms=300.0)
    daemon = daemons(config)
    daemon.wait_event("ready")
    photos(tmp_path / "inbox", 50, suffix=".png")  # lossless: 50 distinct inputs
    backups = tmp_path / "backups"
    backups.mkdir()
    mid_run = 0
    index = 0
    while True:
        committed_inputs = dict(query(config, "SELECT id, status FROM inputs"))
        committed_results = {r[0] for r in query(config, "SELECT id FROM results")}
        target = backups / f"copy-{index:03d}.db"
        code, _, err = _cli(config, "db", "backup", str(target))
        assert code == 0, err
        with sqlite3.connect(target) as copy:
            assert copy.execute("PRAGMA integrity_check").fetchone() == ("ok",)
            inputs = dict(copy.execute("SELECT id, status FROM inputs").fetchall())
            results = {r[0] for r in copy.execute("SELECT id FROM results")}
            done_without_result = copy.execute(
                "SELECT COUNT(*) FROM inputs WHERE status = 'done' AND id NOT IN "
                "(SELECT input_id FROM results)"
            ).fetchone()[0]
        assert committed_inputs.keys() <= inputs.keys()
        assert committed_results <= results
        assert done_without_result == 0  # a batch's transaction is in the copy whole or not
        for input_id, status in committed_inputs.items():
            if status == "done":
                assert inputs[input_id] == "done"
        done = sum(status == "done" for status in committed_inputs.values())
        mid_run += 0 < done < 50
        index += 1
        if done == 50:
            break
        daemon_alive = daemon.process.poll() is None
        assert daemon_alive, daemon.diagnostics()
        time.sleep(0.5)
    assert daemon.stop() == 0
    assert mid_run >= 2, f"only {mid_run} backups were taken while the daemon was working"
    with sqlite3.connect(target) as final:
        assert final.execute("SELECT COUNT(*) FROM results").fetchone() == (50,)
