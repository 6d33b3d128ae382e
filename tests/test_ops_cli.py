"""Running it for months, on a real SQLite database made by `process`: reprocessing with
another model, report across versions, purge, backups, checks, status, and the error a
missing TensorFlow gives."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from support.models import with_lesion_model
from support.paths import REPO
from support.photos import draw_photo, write_photo

from cervixbatch.cli import main


def _run(config: Path, *args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, ["--config", str(config), *args], catch_exceptions=False)
    return result.exit_code, result.stdout, result.stderr


def _json(config: Path, *args: str) -> Any:
    code, out, err = _run(config, *args, "--format", "json")
    assert code == 0, err
    return json.loads(out)


def _photos(inbox: Path, count: int, seed: int = 0) -> list[Path]:
    out = []
    for index in range(count):
        rgb = draw_photo(320, 240, seed=seed + index)
        rgb[0, 0] = (index, seed % 256, 7)  # distinct bytes even where drawn alike
        out.append(write_photo(inbox / f"photo_{seed + index:03d}.png", rgb))
    return out


def _outbox_files(config: Path) -> set[Path]:
    return {p for p in (config.parent / "outbox").rglob("*") if p.is_file()}


@pytest.fixture
def processed(make_config: Callable[..., Path]) -> Path:
    """Three photos processed once by `process` with the first pair of models."""
    config = make_config()
    _photos(config.parent / "inbox", 3)
    code, _, err = _run(config, "process", str(config.parent / "inbox"))
    assert code == 0, err
    return config


def test_reprocess_with_another_model_keeps_the_first_results(
    processed: Path, second_lesion_model: Path
) -> None:
    """`reprocess --other-models` re-queues what the old models made; the next run gives a
    second result per input in a folder of its own, and the first result and its files
    stay; `report` shows the latest unless --all-versions."""
    first = _json(processed, "report")
    first_files = _outbox_files(processed)
    config = with_lesion_model(processed, second_lesion_model)

    dry = _json(config, "reprocess", "--other-models", "--dry-run")
    assert dry["selected"] == 3 and dry["requeued"] == []
    assert [i["verdict"] for i in dry["inputs"]] == ["queue"] * 3
    assert _json(config, "report")["summary"]["done"] == 3  # a dry run changes nothing

    done = _json(config, "reprocess", "--other-models")
    assert sorted(done["requeued"]) == sorted(i["id"] for i in first["items"])
    assert _json(config, "report")["summary"]["queued"] == 3
    code, _, err = _run(config, "process", str(config.parent / "inbox"))
    assert code == 0, err

    latest = _json(config, "report")
    everything = _json(config, "report", "--all-versions")
    assert latest["summary"]["done"] == 3
    for item, old in zip(latest["items"], first["items"], strict=True):
        (result,) = item["results"]
        assert result["run"] == 2
        assert result["models"]["lesion"] != old["results"][0]["models"]["lesion"]
        assert "/run_0002/" in result["outputs"]["lesion_mask"]
    for item in everything["items"]:
        assert [r["run"] for r in item["results"]] == [1, 2]
    assert first_files <= _outbox_files(config)  # the first run's files are all still there
    assert _json(config, "reprocess", "--other-models", "--dry-run")["selected"] == 0


def test_compare_models_gives_lesion_fractions_and_dice_per_input(
    processed: Path, second_lesion_model: Path
) -> None:
    """`report --compare-models A B` lists each input with results under both pairs: the
    lesion fraction under each and the Dice between their masks."""
    old = _json(processed, "report")["items"][0]["results"][0]["models"]
    config = with_lesion_model(processed, second_lesion_model)
    _run(config, "reprocess", "--status", "done")
    _run(config, "process", str(config.parent / "inbox"))
    new = _json(config, "report")["items"][0]["results"][0]["models"]

    comparison = _json(config, "report", "--compare-models", old["lesion"][:10], new["lesion"][:10])
    assert comparison["summary"]["inputs"] == 3 == len(comparison["items"])
    for row in comparison["items"]:
        assert row["run_a"] == 1 and row["run_b"] == 2
        assert row["cervix_dice"] == 1.0  # the same cervix model
        assert 0.0 < row["lesion_dice"] < 1.0  # a lower threshold: a bigger lesion
        assert row["lesion_fraction_b"] > row["lesion_fraction_a"]
    code, _, err = _run(config, "report", "--compare-models", "ffff", new["lesion"][:10])
    assert code == 1 and "no results were made by models 'ffff'" in err


def test_reprocess_says_which_inputs_lost_their_source(processed: Path) -> None:
    """An input whose file is gone or holds other bytes is not re-queued, and says why."""
    inbox = processed.parent / "inbox"
    photos = sorted(inbox.iterdir())
    photos[0].unlink()
    write_photo(photos[1], draw_photo(300, 200, seed=99))  # other bytes, same name
    outcome = _json(processed, "reprocess", "--status", "done")
    verdicts = {i["verdict"] for i in outcome["inputs"]}
    assert verdicts == {"queue", "source_missing", "source_changed"}
    assert len(outcome["requeued"]) == 1
    report = _json(processed, "report")
    assert report["summary"] == {**report["summary"], "done": 2, "queued": 1}


def test_reprocess_reads_an_archived_input_from_the_archive(
    make_config: Callable[..., Path],
) -> None:
    """With watch.after = "archive" the source left the inbox: reprocess finds its bytes in
    the archive, and the next run reads them from there."""
    config = make_config(watch__after="archive")
    (photo,) = _photos(config.parent / "inbox", 1)
    assert _run(config, "process", str(photo.parent))[0] == 0
    assert not photo.exists()
    outcome = _json(config, "reprocess", "--status", "done")
    assert outcome["inputs"][0]["detail"] == "its bytes are in the archive"
    assert _run(config, "process", str(photo.parent))[0] == 0
    (item,) = _json(config, "report", "--all-versions")["items"]
    assert item["status"] == "done" and [r["run"] for r in item["results"]] == [1, 2]


def test_reprocess_needs_a_criterion(processed: Path) -> None:
    """Without any criterion reprocess refuses (it would select every input)."""
    code, _, err = _run(processed, "reprocess")
    assert code == 2 and "say which inputs" in err


def test_purge_removes_exactly_the_files_it_lists_and_records_it(
    processed: Path, second_lesion_model: Path
) -> None:
    """`purge --dry-run` lists files and removes none; `purge` removes exactly those,
    records outputs_purged_at, and keeps the latest results' files unless
    --include-latest."""
    config = with_lesion_model(processed, second_lesion_model)
    _run(config, "reprocess", "--status", "done")
    _run(config, "process", str(config.parent / "inbox"))
    before = _outbox_files(config)

    code, listed, err = _run(config, "purge", "--before", "2999-01-01", "--dry-run")
    assert code == 0 and "would remove" in err
    would = {Path(line) for line in listed.splitlines()}
    assert _outbox_files(config) == before
    assert len(would) == 3 * 4  # run 1 of three inputs: two masks, overlay, crop
    assert all("/run_0002/" not in str(path) for path in would)

    code, removed, err = _run(config, "purge", "--before", "2999-01-01")
    assert code == 0 and "3 results kept as their input's latest" in err
    assert {Path(line) for line in removed.splitlines()} == would
    assert before - _outbox_files(config) == would
    runs = _json(config, "report", "--all-versions")["items"]
    for item in runs:
        purged = [r["outputs_purged_at"] is not None for r in item["results"]]
        assert purged == [True, False]

    assert _json(config, "purge", "--before", "2999-01-01")["files"] == []  # nothing twice
    everything = _json(config, "purge", "--before", "2999-01-01", "--include-latest")
    assert len(everything["files"]) == 3 * 4
    assert _outbox_files(config) == set()


def test_purge_leaves_alone_what_is_not_its_own(processed: Path) -> None:
    """A result path that is a symbolic link, or outside the outbox, is never removed."""
    outside = processed.parent / "elsewhere.png"
    outside.write_bytes(b"keep me")
    database = processed.parent / "state" / "cervixbatch.db"
    with sqlite3.connect(database) as connection:
        first, second = [r[0] for r in connection.execute("SELECT id FROM results LIMIT 2")]
        connection.execute(
            "UPDATE results SET overlay_path = ? WHERE id = ?", (str(outside), first)
        )
        mask = connection.execute(
            "SELECT cervix_mask_path FROM results WHERE id = ?", (second,)
        ).fetchone()[0]
    Path(mask).unlink()
    Path(mask).symlink_to(outside)
    report = _json(processed, "purge", "--before", "2999-01-01", "--include-latest")
    assert report["refused"] == 2
    assert outside.read_bytes() == b"keep me"
    assert Path(mask).is_symlink()


def test_db_check_counts_missing_outputs_by_reason(processed: Path) -> None:
    """`db check` exits 0 on a sound database; a deleted mask and an emptied overlay are
    counted by reason and exit 1; purged outputs are not missing."""
    assert _run(processed, "db", "check")[0] == 0
    (item, second, _third) = _json(processed, "report")["items"]
    outputs = item["results"][0]["outputs"]
    Path(outputs["lesion_mask"]).unlink()
    Path(outputs["overlay"]).write_bytes(b"")
    code, out, _ = _run(processed, "db", "check", "--format", "json")
    check = json.loads(out)
    assert code == 1 and not check["ok"]
    assert check["outputs"]["missing_by_reason"] == {"not_found": 1, "empty": 1}
    assert check["outputs"]["missing_by_kind"] == {"lesion_mask": 1, "overlay": 1}
    assert check["database"]["integrity"] == "ok"
    code, _, _ = _run(processed, "purge", "--before", "2999-01-01", "--include-latest")
    assert code == 0
    check = _json_any(processed, "db", "check")
    assert check["ok"] and check["outputs"]["results_purged"] == 3
    del second


def _json_any(config: Path, *args: str) -> Any:
    _code, out, _ = _run(config, *args, "--format", "json")
    return json.loads(out)


def test_db_check_names_a_database_behind_its_migrations(processed: Path) -> None:
    """A database at an older revision is a problem `db check` names (exit 1)."""
    database = processed.parent / "state" / "cervixbatch.db"
    with sqlite3.connect(database) as connection:
        connection.execute("UPDATE alembic_version SET version_num = '0002'")
    code, out, _ = _run(processed, "db", "check")
    assert code == 1 and "cervixbatch db upgrade" in out


def test_backup_is_a_consistent_copy_that_refuses_to_overwrite(
    processed: Path, tmp_path: Path
) -> None:
    """`db backup FILE` writes an owner-only copy holding every row, passes SQLite's
    integrity check, and refuses to replace FILE without --force."""
    target = tmp_path / "backups" / "copy.db"
    target.parent.mkdir()
    code, _, err = _run(processed, "db", "backup", str(target))
    assert code == 0 and "3 inputs, 3 results" in err
    assert target.stat().st_mode & 0o777 == 0o600
    assert not Path(str(target) + "-wal").exists()
    with sqlite3.connect(target) as copy:
        assert copy.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        assert copy.execute("SELECT COUNT(*) FROM results").fetchone() == (3,)
    assert [p.name for p in target.parent.iterdir()] == ["copy.db"]  # no temp file left
    code, _, err = _run(processed, "db", "backup", str(target))
    assert code == 1 and "exists already" in err
    assert _run(processed, "db", "backup", "--force", str(target))[0] == 0


@pytest.mark.postgres
def test_backup_of_postgresql_prints_the_pg_dump_command(
    make_config: Callable[..., Path], postgres_url: str, tmp_path: Path
) -> None:
    """On PostgreSQL `db backup` names the pg_dump command (no password) and exits 1: no
    file was written."""
    config = make_config(database__url=postgres_url)
    code, out, err = _run(config, "db", "backup", str(tmp_path / "dump"))
    assert code == 1 and "pg_dump" in err
    assert out.startswith("pg_dump --format=custom --file=")
    assert postgres_url.rsplit("/", 1)[1] in out
    assert not (tmp_path / "dump").exists()


def test_status_without_a_live_worker_exits_1(processed: Path) -> None:
    """After `process` ended, its worker row says stopped; no live worker means exit 1."""
    code, out, _ = _run(processed, "status", "--format", "json")
    status = json.loads(out)
    assert code == 1 and status["problems"] == ["no live worker"]
    (worker,) = status["workers"]
    assert worker["kind"] == "process" and worker["state"] == "stopped"
    assert worker["stop_reason"] == "finished" and worker["inputs_finished"] == 3
    assert status["queue"]["by_status"]["done"] == 3
    code, out, _ = _run(processed, "status")
    assert code == 1 and "no live worker" in out and "stopped" in out


def _without_tensorflow(tmp_path: Path, how: str) -> dict[str, str]:
    """An environment whose `import tensorflow` fails: absent, or broken on import."""
    shadow = tmp_path / f"shadow_{how}"
    (shadow / "tensorflow").mkdir(parents=True)
    error = (
        "raise ModuleNotFoundError(\"No module named 'tensorflow'\", name='tensorflow')"
        if how == "missing"
        else "raise AttributeError(\"module 'ml_dtypes' has no attribute 'float8_e4m3b11'\")"
    )
    (shadow / "tensorflow" / "__init__.py").write_text(error + "\n", encoding="utf-8")
    path = os.pathsep.join([str(shadow), str(REPO), str(REPO / "daemon")])
    return {**os.environ, "PYTHONPATH": path, "TF_CPP_MIN_LOG_LEVEL": "2"}


@pytest.mark.parametrize("how", ["missing", "broken"])
def test_a_missing_or_broken_tensorflow_is_one_clear_line(
    make_config: Callable[..., Path], tmp_path: Path, how: str
) -> None:
    """`process` and the daemon without a working TensorFlow: one line that says so and
    how to install it, exit status 1, and no traceback."""
    config = make_config()
    _photos(config.parent / "inbox", 1)
    env = _without_tensorflow(tmp_path, how)
    process = subprocess.run(
        [sys.executable, "-m", "cervixbatch.cli", "--config", str(config), "process", "inbox"],
        cwd=config.parent,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert process.returncode == 1
    assert "Traceback" not in process.stderr + process.stdout
    errors = [line for line in process.stderr.splitlines() if line.startswith("cervixbatch:")]
    assert len(errors) == 1 and "TensorFlow is missing or broken" in errors[0]
    assert "pip install tensorflow" in errors[0]
    daemon = subprocess.run(
        [sys.executable, "-m", "cervixbatchd", "--config", str(config), "--burst"],
        cwd=config.parent,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert daemon.returncode == 1
    assert "Traceback" not in daemon.stderr + daemon.stdout
    events = [json.loads(line) for line in daemon.stdout.splitlines() if line.startswith("{")]
    (fatal,) = [e for e in events if e["event"] == "fatal_error"]
    assert fatal["error"] == "ModelError" and "TensorFlow is missing" in fatal["detail"]


def test_status_calls_a_silent_worker_on_another_host_stale(processed: Path) -> None:
    """A worker elsewhere whose heartbeat is older than --stale-after is stale; one within
    it is alive, and makes status exit 0."""
    database = processed.parent / "state" / "cervixbatch.db"
    with sqlite3.connect(database) as connection:
        for worker, age in (("far:1:a", "-10 minutes"), ("far:2:b", "-5 seconds")):
            connection.execute(
                "INSERT INTO workers (id, kind, host, pid, version, started_at, heartbeat_at, "
                "inputs_finished) VALUES (?, 'daemon', 'far', 1, '0.1.0', "
                "datetime('now', '-1 hour'), datetime('now', ?), 0)",
                (worker, age),
            )
    code, status = _run(processed, "status", "--format", "json", "--stale-after", "60")[:2]
    states = {w["id"]: w["state"] for w in json.loads(status)["workers"]}
    assert code == 0
    assert states["far:1:a"] == "stale" and states["far:2:b"] == "alive"


def test_reprocess_selects_by_reason_and_date(processed: Path) -> None:
    """--reason and --since/--until narrow the selection; the criteria combine."""
    database = processed.parent / "state" / "cervixbatch.db"
    with sqlite3.connect(database) as connection:
        connection.execute(
            "UPDATE inputs SET status = 'failed', reason = 'internal_error' WHERE id = 1"
        )
        connection.execute("UPDATE inputs SET created_at = '2020-01-01 00:00:00' WHERE id = 2")
    by_reason = _json(processed, "reprocess", "--reason", "internal_error", "--dry-run")
    assert [i["id"] for i in by_reason["inputs"]] == [1]
    old = _json(processed, "reprocess", "--until", "2021-01-01", "--dry-run")
    assert [i["id"] for i in old["inputs"]] == [2]
    recent_done = _json(processed, "reprocess", "--since", "2021-01-01", "--status", "done")
    assert recent_done["requeued"] == [3]


def test_rows_retention_forgets_only_inputs_whose_files_left_the_inbox(
    processed: Path,
) -> None:
    """rows_days forgets inputs finished before the cutoff whose files are gone (rows and
    outputs); an input whose file is still in the inbox is kept, or it would be taken again."""
    import datetime as dt

    from cervixbatch.config import load_config
    from cervixbatch.intake.inbox_mark import keep_mark
    from cervixbatch.ops.retention import forget_inputs
    from cervixbatch.store.db import open_database

    report = _json(processed, "report")
    gone = next(i for i in report["items"] if i["id"] == 1)
    (processed.parent / "inbox" / Path(gone["path"]).name).unlink()
    config = load_config(processed)
    database = open_database(config.database.url)
    try:
        future = dt.datetime.now(dt.UTC) + dt.timedelta(days=1)
        mark = keep_mark(config.paths.inbox)
        dry = forget_inputs(config, database, finished_before=future, inbox=mark, dry_run=True)
        assert (dry.inputs_forgotten, dry.inputs_kept) == (1, 2)
        done = forget_inputs(config, database, finished_before=future, inbox=mark)
    finally:
        database.dispose()
    assert (done.inputs_forgotten, done.inputs_kept) == (1, 2)
    assert sorted(done.files) == sorted(Path(p) for p in gone["results"][0]["outputs"].values())
    assert not (processed.parent / "outbox" / "00000001").exists()
    assert sorted(i["id"] for i in _json(processed, "report")["items"]) == [2, 3]


def test_migration_keeps_existing_results_as_their_first_run(tmp_path: Path) -> None:
    """A database made before runs existed upgrades with every result as run 1 and every
    input's queue time its discovery time; the downgrade goes back."""
    from alembic import command
    from alembic.config import Config as AlembicConfig

    from cervixbatch.store.db import migrations_dir

    url = f"sqlite:///{tmp_path}/old.db"
    alembic = AlembicConfig()
    alembic.set_main_option("script_location", str(migrations_dir()))
    alembic.set_main_option("sqlalchemy.url", url)
    command.upgrade(alembic, "0002")
    with sqlite3.connect(tmp_path / "old.db") as connection:
        connection.execute(
            "INSERT INTO inputs (id, sha256, path, size_bytes, status, attempts, created_at) "
            "VALUES (1, 'ab', '/in/a.jpg', 10, 'done', 1, '2024-05-01 10:00:00')"
        )
        connection.execute(
            "INSERT INTO results (input_id, frame, width, height, cervix_found, "
            "cervix_fraction, lesion_fraction, cervix_mask_path, lesion_mask_path, "
            "overlay_path, cervix_model, lesion_model, precision, stage1_ms, stage2_ms, "
            "created_at) VALUES (1, 0, 4, 4, 1, 0.5, 0.1, 'c', 'l', 'o', 'm1', 'm2', "
            "'float32', 1, 1, '2024-05-01 10:00:01')"
        )
    command.upgrade(alembic, "head")
    with sqlite3.connect(tmp_path / "old.db") as connection:
        assert connection.execute("SELECT run, outputs_purged_at FROM results").fetchall() == [
            (1, None)
        ]
        assert connection.execute("SELECT queued_at FROM inputs").fetchone() == (
            "2024-05-01 10:00:00",
        )
    command.downgrade(alembic, "0005")
    with sqlite3.connect(tmp_path / "old.db") as connection:
        assert connection.execute("SELECT COUNT(*) FROM results").fetchone() == (1,)


def test_a_rerun_that_fails_leaves_the_earlier_results_and_files(processed: Path) -> None:
    """A re-queued input whose file changed before a worker read it ends rejected for the
    new run; the first run's row and every one of its files stay."""
    before = _outbox_files(processed)
    first = {i["id"]: i["results"] for i in _json(processed, "report")["items"]}
    assert _json(processed, "reprocess", "--id", "1")["requeued"] == [1]
    photo = processed.parent / "inbox" / "photo_000.png"
    write_photo(photo, draw_photo(300, 200, seed=42))  # other bytes at the same path
    _run(processed, "process", str(processed.parent / "inbox"))
    report = {i["id"]: i for i in _json(processed, "report", "--all-versions")["items"]}
    assert report[1]["status"] == "rejected"
    assert report[1]["results"] == first[1]
    assert before <= _outbox_files(processed)


@pytest.mark.parametrize("which", ["builtin:demo", "file"])
def test_the_configured_version_is_the_one_loading_records(
    analytic_models: dict[str, Path], which: str
) -> None:
    """`reprocess --other-models` hashes the configured models without loading them: the
    same version that loading the model records on every result."""
    from cervixbatch.config import Precision
    from cervixbatch.model.stage import load_stage
    from cervixbatch.model.stage_names import Stage
    from cervixbatch.model.versions import configured_version

    for stage in (Stage.CERVIX, Stage.LESION):
        ref = "builtin:demo" if which == "builtin:demo" else str(analytic_models[stage.value])
        loaded = load_stage(ref, stage, batch_size=1, precision=Precision.FLOAT32)
        assert configured_version(ref, stage) == loaded.version


@pytest.mark.parametrize("pipeline", [True, False])
def test_both_schedules_write_a_rerun_into_its_own_folder(
    make_config: Callable[..., Path], pipeline: bool
) -> None:
    """Pipelined or one batch at a time, a reprocessed input's second run is written to
    run_0002/ and recorded as run 2, and the first run's files stay as they were."""
    config = make_config(batch__pipeline=pipeline)
    _photos(config.parent / "inbox", 2)
    assert _run(config, "process", str(config.parent / "inbox"))[0] == 0
    first = {path: path.read_bytes() for path in _outbox_files(config)}
    assert _json(config, "reprocess", "--status", "done")["requeued"] == [1, 2]
    assert _run(config, "process", str(config.parent / "inbox"))[0] == 0
    assert {path: path.read_bytes() for path in first} == first
    for item in _json(config, "report")["items"]:
        (result,) = item["results"]
        assert result["run"] == 2
        assert all("/run_0002/" in path for path in result["outputs"].values() if path)
