"""Hostile input and faults: a corpus of bad, odd and dangerous files dropped into a running
daemon; a database locked by someone else; a commit that fails mid-batch."""

from __future__ import annotations

import dataclasses
import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from sqlalchemy.exc import OperationalError
from support.hostile_corpus import ESCAPE, MAX_FILE_MB, PATIENT_NAME, CorpusFile, drop, sha256
from support.photos import draw_photo, write_photo

from cervixbatch.cli import main
from cervixbatch.config import load_config
from cervixbatch.model.pair import load_stages
from cervixbatch.owner import this_process
from cervixbatch.store import queue
from cervixbatch.store.db import open_database
from cervixbatch.worker.runner import Runner

START_TIMEOUT = 120.0  # TensorFlow import and model load on a busy 2-core machine
_SYSTEMD_VARIABLES = {"NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID"}
# What may appear in the outbox: folders named by database ids, files named by us.
_OUTBOX_FILE = re.compile(r"\d{8}(/frame_\d{4})?/[a-z_]+\.(png|jpg|dcm)")


def _cli(config: Path, *args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, ["--config", str(config), *args], catch_exceptions=False)
    return result.exit_code, result.stdout


def _query(db: Path, sql: str, *params: Any) -> list[tuple[Any, ...]]:
    if not db.exists():
        return []
    with sqlite3.connect(db, timeout=10) as connection:
        try:
            return connection.execute(sql, params).fetchall()
        except sqlite3.OperationalError:  # not migrated yet
            return []


def _tree(root: Path) -> set[Path]:
    """Every path under ``root``, relative, symlinks not followed."""
    return {
        Path(folder, name).relative_to(root)
        for folder, dirs, files in os.walk(root)
        for name in dirs + files
    }


def _tmp_names() -> set[str]:
    return {p.name for p in Path("/tmp").iterdir()}


class _Daemon:
    """One `python -m cervixbatchd` subprocess, its stdout and stderr in files."""

    def __init__(self, config: Path, logs: Path) -> None:
        environ = {k: v for k, v in os.environ.items() if k not in _SYSTEMD_VARIABLES}
        environ["TF_CPP_MIN_LOG_LEVEL"] = "2"
        logs.mkdir()
        self.logs = (logs / "out.log", logs / "err.log")
        with self.logs[0].open("wb") as out, self.logs[1].open("wb") as err:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "cervixbatchd", "--config", str(config)],
                stdout=out,
                stderr=err,
                env=environ,
                cwd=config.parent,  # a shell run on a file name would leave `pwned` here
            )

    def output(self) -> str:
        return b"".join(p.read_bytes() for p in self.logs).decode("utf-8", "replace")

    def wait(self, predicate: Callable[[], bool], timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while not predicate():
            if self.process.poll() is not None:
                pytest.fail(f"the daemon exited waiting for {what}:\n{self.output()[-4000:]}")
            if time.monotonic() > deadline:
                pytest.fail(f"timed out waiting for {what}:\n{self.output()[-4000:]}")
            time.sleep(0.1)

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=30)


def _terminal(db: Path) -> int:
    rows = dict(_query(db, "SELECT status, COUNT(*) FROM inputs GROUP BY status"))
    return sum(rows.get(s, 0) for s in ("done", "rejected", "failed"))


def _check_each_file(db: Path, inbox: Path, files: list[CorpusFile]) -> dict[str, Any]:
    """Each corpus file is exactly one input in the state it must reach; returns the rows
    by sha256."""
    inputs = _query(db, "SELECT id, sha256, path, status, reason, detail FROM inputs")
    sightings = set(_query(db, "SELECT input_id, path FROM sightings"))
    assert not [r for r in inputs if r[3] not in {"done", "rejected"}]
    by_sha = {r[1]: r for r in inputs}
    for item in files:
        path = inbox / item.relative
        if isinstance(item.name, bytes):  # not UTF-8: accounted for by its (escaped) path
            text = os.fsencode(path).decode("utf-8", "backslashreplace")
            (row,) = [r for r in inputs if r[2] == text]
        elif item.reason == "file_too_large":  # refused before a byte is hashed: by its path
            (row,) = [r for r in inputs if r[2] == str(path)]
            assert (row[0], str(path)) in sightings, item.name
        else:
            row = by_sha[sha256(item.data)]
            assert (row[0], str(path)) in sightings, item.name
        assert (row[3], row[4]) == (item.status, item.reason), (item.name, row)
        if item.status == "rejected":
            assert row[5] and len(row[5]) > 10, row  # a sentence, not just a code
            assert not (inbox.parent / "outbox" / f"{row[0]:08d}").exists(), item.name
        else:
            sql = "SELECT cervix_found, lesion_fraction FROM results WHERE input_id = ?"
            results = _query(db, sql, row[0])
            assert len(results) == item.frames, item.name
            if item.no_cervix:
                assert results == [(0, 0.0)], "a photo without a cervix invented one"
        assert path.read_bytes() == item.data  # watch.after = keep: the input is intact
    return by_sha


def _check_nothing_written_outside(tmp_path: Path, tmp_before: set[str]) -> None:
    """Output names come from ids only; everything written lies in our folders."""
    outbox = tmp_path / "outbox"
    for name in _tree(outbox):
        assert (outbox / name).is_dir() or _OUTBOX_FILE.fullmatch(name.as_posix()), name
    allowed = {"inbox", "outbox", "state", "outside", "logs", "config.toml"}
    assert not {p for p in _tree(tmp_path) if p.parts[0] not in allowed}
    for root in (tmp_path, Path.cwd(), Path("/tmp")):
        assert not list(root.glob("*pwned*")), root
    assert not [p for p in _tree(tmp_path) if "pwned" in p.name and "$(" not in p.name]
    assert not Path("/tmp/escape").exists()
    assert not {n for n in _tmp_names() - tmp_before if "escape" in n or "pwned" in n}


@pytest.mark.slow
def test_a_running_daemon_accounts_for_every_file_of_a_hostile_corpus(
    make_config: Callable[..., Path], tmp_path: Path
) -> None:
    """A hostile corpus dropped into a running daemon: each regular file ends in exactly one
    terminal state with a reason, ignored entries are listed, nothing is written outside
    the outbox and database folder, no patient data is logged, and the daemon lives on."""
    config = make_config(limits__max_file_mb=MAX_FILE_MB, batch__size=8)
    inbox, db = tmp_path / "inbox", tmp_path / "state" / "cervixbatch.db"
    tmp_before = _tmp_names()
    daemon = _Daemon(config, tmp_path / "logs")
    try:
        daemon.wait(lambda: '"event": "ready"' in daemon.output(), START_TIMEOUT, "ready")
        files, ignored = drop(inbox, tmp_path / "outside")
        expected = len({sha256(f.data) for f in files if isinstance(f.name, str)})
        expected += sum(isinstance(f.name, bytes) for f in files)
        daemon.wait(lambda: _terminal(db) >= expected, 90, f"{expected} terminal inputs")
        time.sleep(1.0)  # anything wrongly taken (symlink, deep file) would show up by now
        assert daemon.process.poll() is None, "the daemon died"
        assert len(_query(db, "SELECT id FROM inputs")) == expected
        by_sha = _check_each_file(db, inbox, files)

        # Nothing ignored became an input: not the symlink's target, nor the deep file.
        never = {sha256(p.read_bytes()) for p in (tmp_path / "outside").rglob("*.jpg")}
        never |= {sha256((inbox / n).read_bytes()) for n in (".hidden.jpg", "upload.jpg.part")}
        assert not never & set(by_sha)
        code, text = _cli(config, "report", "--ignored", "--format", "json")
        assert code == 0
        listing = json.loads(text)["ignored"]
        assert {(i.name, i.reason) for i in ignored} <= {(e["path"], e["reason"]) for e in listing}
        assert all(e["detail"] for e in listing)
        code, text = _cli(config, "report", "--format", "json")
        assert code == 0
        summary = json.loads(text)["summary"]
        assert (summary["total"], summary["failed"]) == (expected, 0)
        code, text = _cli(config, "report", "--limit", "100")  # the table a person reads
        assert code == 0
        assert "\x1b" not in text, "a file name drives the terminal"
        assert "\x07" not in text

        _check_nothing_written_outside(tmp_path, tmp_before)
        assert daemon.process.poll() is None
        daemon.process.send_signal(signal.SIGTERM)
        assert daemon.process.wait(timeout=60) == 0
        logged = daemon.output()
        for secret in (PATIENT_NAME, "Jane", ESCAPE, "tmp/escape", "Ωμέγα", "pwned"):
            assert secret not in logged, secret
    finally:
        daemon.kill()


# -- the database under someone else's lock ------------------------------------------------


def test_process_waits_for_a_database_locked_by_another_writer(
    make_config: Callable[..., Path], tmp_path: Path
) -> None:
    """`process` started while another connection holds SQLite's write lock (BEGIN
    EXCLUSIVE) for 3 s waits on the busy timeout and then accounts for every input."""
    config = make_config()
    db = tmp_path / "state" / "cervixbatch.db"
    open_database(f"sqlite:///{db}").dispose()  # migrated, in WAL mode
    drop_folder = tmp_path / "drop"
    for seed in range(3):
        write_photo(drop_folder / f"p{seed}.jpg", draw_photo(seed=seed))
    locker = sqlite3.connect(db, isolation_level=None, check_same_thread=False)
    locker.execute("BEGIN EXCLUSIVE")
    released: list[float] = []

    def release() -> None:
        time.sleep(3.0)
        released.append(time.monotonic())
        locker.execute("ROLLBACK")

    thread = threading.Thread(target=release)
    thread.start()
    try:
        code, _ = _cli(config, "process", str(drop_folder))
        finished = time.monotonic()
    finally:
        thread.join()
        locker.close()
    assert code == 0
    assert finished > released[0]  # it could not have written before the lock went
    assert dict(_query(db, "SELECT status, COUNT(*) FROM inputs GROUP BY status")) == {"done": 3}


def test_a_failed_batch_commit_loses_nothing_and_recover_requeues_it(
    make_config: Callable[..., Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A database error in a batch's final commit (a lock held past the busy timeout) leaves
    the input `processing`; once its worker is gone, recover() requeues it and it is done.
    (Past ``database.outage_seconds`` of refusals the error reaches the caller.)"""
    config = load_config(make_config(database__outage_seconds=1.0))
    photo = write_photo(tmp_path / "inbox" / "p.jpg", draw_photo(seed=3))
    db = open_database(config.database.url)
    stages = load_stages(config)
    gone = dataclasses.replace(this_process(), pid=_dead_pid(), start=1)
    dead_owner = f"{gone.token()}:0000"  # a worker of this machine that is gone
    try:
        with Runner(config, db, stages, owner=dead_owner) as runner:
            registration = runner.registrar.register(photo)
            assert registration is not None
            original = queue.complete

            def locked(*_args: object, **_kwargs: object) -> bool:
                raise OperationalError("UPDATE inputs", {}, sqlite3.OperationalError("locked"))

            monkeypatch.setattr(queue, "complete", locked)
            with pytest.raises(OperationalError):
                runner.process_batch()
            monkeypatch.setattr(queue, "complete", original)
        with db.read_session() as session:
            assert queue.status_counts(session)["processing"] == 1
        with Runner(config, db, stages) as runner:
            assert runner.recover() == (1, 0)
            outcome = runner.process_until_empty()
        assert outcome.done == 1
        with db.read_session() as session:
            counts = queue.status_counts(session)
        assert counts["done"] == 1
        assert sum(counts.values()) == 1
    finally:
        db.dispose()


def _dead_pid() -> int:
    """The pid of a process that has exited."""
    child = subprocess.Popen(["true"])
    child.wait()
    return child.pid
