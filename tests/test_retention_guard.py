"""Retention cannot be fooled: an inbox share that is away or replaced, a host clock days
ahead, a `reprocess` racing the forgetting (issue 22, item 5). Real SQLite files, real
PostgreSQL, the host's clock moved with libfaketime."""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text
from support.tools import require_executable

from cervixbatch.config import Config, load_config
from cervixbatch.intake.inbox_mark import MARK_NAME, keep_mark
from cervixbatch.ops.retention import forget_inputs
from cervixbatch.store import reprocess_queries as reprocess
from cervixbatch.store.db import Database, open_database
from cervixbatch.store.schema import Input, Result, Sighting, Status, utcnow

MODEL = "0" * 64
_OTHER_DEVICE = Path("/dev/shm")


def _input(db: Database, config: Config, n: int, *, days_ago: float) -> tuple[int, list[Path]]:
    """A done input finished ``days_ago`` days ago whose file left the inbox, with one result
    and its two output files; returns its id and the files."""
    finished = utcnow() - dt.timedelta(days=days_ago)
    with db.session() as session:
        row = Input(
            sha256=f"{n:064x}",
            path=str(config.paths.inbox / f"gone-{n}.jpg"),
            size_bytes=10,
            status=Status.DONE,
            attempts=1,
            created_at=finished,
            finished_at=finished,
        )
        session.add(row)
        session.flush()
        folder = config.paths.outbox / f"{row.id:08d}"
        folder.mkdir(parents=True)
        files = [folder / "cervix.png", folder / "lesion.png"]
        for file in files:
            file.write_bytes(b"mask")
        session.add(
            Sighting(input_id=row.id, path=row.path, size_bytes=10, mtime_ns=1, seen_at=finished)
        )
        session.add(
            Result(
                input_id=row.id,
                frame=0,
                width=4,
                height=4,
                cervix_found=True,
                cervix_fraction=0.5,
                lesion_fraction=0.1,
                cervix_mask_path=str(files[0]),
                lesion_mask_path=str(files[1]),
                overlay_path=str(files[1]),
                cervix_model=MODEL,
                lesion_model=MODEL,
                precision="fp32",
                stage1_ms=1.0,
                stage2_ms=1.0,
                created_at=finished,
            )
        )
        return row.id, files


def _ids(db: Database) -> list[int]:
    with db.read_session() as session:
        return sorted(int(i) for i in session.scalars(text("SELECT id FROM inputs")))


def test_nothing_is_forgotten_while_the_inbox_is_away_or_replaced(
    make_config: Callable[..., Path], tmp_path: Path
) -> None:
    """An inbox whose mark is gone (an unmounted share shows an empty folder) or that lies
    on another device than at start forgets nothing and says why; the right inbox back,
    the same inputs are forgotten."""
    if _OTHER_DEVICE.stat().st_dev == tmp_path.stat().st_dev:
        pytest.skip("/dev/shm lies on the same device as the test's temp folder")
    config = load_config(make_config())
    db = open_database(config.database.url)
    try:
        ids = [_input(db, config, n, days_ago=30)[0] for n in range(3)]
        mark = keep_mark(config.paths.inbox)
        assert mark is not None and (config.paths.inbox / MARK_NAME).is_file()
        cutoff = dt.timedelta(days=7)

        share = tmp_path / "share-contents"
        config.paths.inbox.rename(share)  # unmounted: the empty mount point shows through
        config.paths.inbox.mkdir()
        away = forget_inputs(config, db, finished_before=cutoff, inbox=mark)
        assert (away.inputs_forgotten, away.forget_skipped) == (0, "inbox_mark_missing")
        assert _ids(db) == ids

        elsewhere = _OTHER_DEVICE / f"inbox-{os.getpid()}"
        elsewhere.mkdir()
        try:
            shutil.copy2(share / MARK_NAME, elsewhere / MARK_NAME)  # even the same mark
            config.paths.inbox.rmdir()
            config.paths.inbox.symlink_to(elsewhere)
            moved = forget_inputs(config, db, finished_before=cutoff, inbox=mark)
            assert (moved.inputs_forgotten, moved.forget_skipped) == (0, "inbox_device_changed")
            assert _ids(db) == ids
        finally:
            shutil.rmtree(elsewhere)
        config.paths.inbox.unlink()
        share.rename(config.paths.inbox)  # mounted again
        back = forget_inputs(config, db, finished_before=cutoff, inbox=mark)
        assert (back.inputs_forgotten, back.forget_skipped) == (3, None)
        assert _ids(db) == []
    finally:
        db.dispose()


_SWEEP = """
import json, sys
from pathlib import Path
from cervixbatch.config import load_config
from cervixbatch.ops.retention import RetentionSweeper
from cervixbatch.store.db import open_database
config = load_config(Path(sys.argv[1]))
db = open_database(config.database.url)
sweeper = RetentionSweeper(config, db)
print(json.dumps({"done": sweeper.step()}))
db.dispose()
"""


def _sweep_with_clock(config: Path, offset: str) -> dict[str, Any]:
    """One retention step in a process whose clock is moved by ``offset`` (libfaketime)."""
    faketime = require_executable("faketime", install="apt-get install faketime")
    done = subprocess.run(
        [faketime, "-f", offset, sys.executable, "-c", _SWEEP, str(config)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def test_cut_offs_are_on_the_database_clock_not_a_host_clock_days_ahead(
    make_config: Callable[..., Path], postgres_url: str
) -> None:
    """A worker whose clock runs 30 days ahead neither purges nor forgets what is a day old
    by the database's clock (rows_days = outputs_days = 7); at the right age it does."""
    path = make_config(
        database__url=postgres_url,
        retention__rows_days=7,
        retention__outputs_days=7,
        retention__include_latest=True,
    )
    config = load_config(path)
    db = open_database(config.database.url)
    try:
        input_id, files = _input(db, config, 1, days_ago=1)
        assert _sweep_with_clock(path, "+30d") == {"done": 0}
        assert _ids(db) == [input_id]
        assert all(file.is_file() for file in files)
        with db.session() as session:
            session.execute(text("UPDATE inputs SET finished_at = now() - interval '8 days'"))
            session.execute(text("UPDATE results SET created_at = now() - interval '8 days'"))
        assert _sweep_with_clock(path, "+0d")["done"] == 2  # the result purged, the input gone
        assert _ids(db) == []
        assert not any(file.exists() for file in files)
    finally:
        db.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def backend(request: pytest.FixtureRequest) -> tuple[str, dict[str, Any]]:
    """Each database kind, as the config overrides that select it."""
    if request.param == "sqlite":
        return "sqlite", {}
    return "postgresql", {"database__url": request.getfixturevalue("postgres_url")}


def test_a_reprocess_racing_the_forgetting_keeps_its_files(
    make_config: Callable[..., Path], backend: tuple[str, dict[str, Any]]
) -> None:
    """An expired input that `reprocess` re-queues while retention forgets keeps its row and
    its earlier results' files: the rows are decided under lock before a file goes."""
    kind, overrides = backend
    config = load_config(make_config(**overrides))
    db = open_database(config.database.url)
    try:
        (racing, files), (other, other_files) = (
            _input(db, config, n, days_ago=30) for n in range(2)
        )
        mark = keep_mark(config.paths.inbox)
        outcome: list[Any] = []
        with db.session() as session:  # reprocess: re-queued, not yet committed
            assert reprocess.requeue(session, [racing]) == [racing]
            worker = threading.Thread(
                target=lambda: outcome.append(
                    forget_inputs(config, db, finished_before=dt.timedelta(days=7), inbox=mark)
                ),
                name="test-forget",
            )
            worker.start()
            _wait_blocked_or_done(db, worker, kind)
        worker.join(timeout=60)
        assert not worker.is_alive()
        assert _ids(db) == [racing]
        with db.read_session() as session:
            status = session.scalar(text(f"SELECT status FROM inputs WHERE id = {racing}"))
        assert status == Status.QUEUED.value
        assert all(file.is_file() for file in files), "the re-queued input's files were removed"
        assert not any(file.exists() for file in other_files)
        assert other not in _ids(db)
    finally:
        db.dispose()


def _wait_blocked_or_done(db: Database, worker: threading.Thread, backend: str) -> None:
    """Waits until the forgetting waits on the reprocess's lock, or has finished. SQLite
    cannot say who waits: there, a second is far longer than removing two files takes."""
    deadline = time.monotonic() + (30 if backend == "postgresql" else 1.0)
    while worker.is_alive() and time.monotonic() < deadline:
        if backend == "postgresql":
            with db.engine.connect() as connection:
                waiting = connection.execute(
                    text(
                        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                        "AND wait_event_type = 'Lock'"
                    )
                ).scalar_one()
            if waiting:
                return
        time.sleep(0.05)
