"""A batch whose commit fails is retried input by input: the input the database refuses
even alone ends failed (``unrecordable``), the rest of its batch is recorded, and the
worker goes on with the next batch. The refusal is real: a trigger in the database."""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING

import pytest
from sqlalchemy import text
from structlog.testing import capture_logs
from support.photos import draw_photo, write_photo

from cervixbatch.config import load_config
from cervixbatch.model.pair import load_stages
from cervixbatch.store.db import Database, open_database
from cervixbatch.worker.runner import Runner

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

_SQLITE_TRIGGER = """
CREATE TRIGGER refuse_one BEFORE UPDATE OF status ON inputs
WHEN NEW.status = 'done' AND NEW.sha256 = '{sha}'
BEGIN SELECT RAISE(ABORT, 'this row is refused'); END
"""
_PG_FUNCTION = """
CREATE FUNCTION refuse_one() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN RAISE EXCEPTION 'this row is refused'; END $$
"""
_PG_TRIGGER = """
CREATE TRIGGER refuse_one BEFORE UPDATE ON inputs FOR EACH ROW
WHEN (NEW.status = 'done' AND NEW.sha256 = '{sha}') EXECUTE FUNCTION refuse_one()
"""


def _refuse_done(db: Database, sha: str) -> None:
    """Installs a trigger that refuses to record the input ``sha`` as done."""
    with db.session() as session:
        if db.dialect == "postgresql":
            session.execute(text(_PG_FUNCTION))
            session.execute(text(_PG_TRIGGER.format(sha=sha)))
        else:
            session.execute(text(_SQLITE_TRIGGER.format(sha=sha)))


@pytest.mark.parametrize("pipelined", [False, True], ids=["sequential", "pipelined"])
@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_an_input_the_database_refuses_fails_alone_and_the_worker_goes_on(
    backend: str,
    *,
    pipelined: bool,
    make_config: Callable[..., Path],
    tmp_path: Path,
    request: pytest.FixtureRequest,
) -> None:
    """Eight photos in batches of four, one of them refused by a trigger: it ends failed
    (``unrecordable``, no result rows), the other seven are done, both batches commit."""
    overrides = {"batch__size": 4, "batch__pipeline": pipelined}
    if backend == "postgres":
        overrides["database__url"] = request.getfixturevalue("postgres_url")
    config = load_config(make_config(**overrides))
    paths = [write_photo(tmp_path / "drop" / f"p{i}.jpg", draw_photo(seed=i)) for i in range(8)]
    refused = hashlib.sha256(paths[1].read_bytes()).hexdigest()
    db = open_database(config.database.url)
    try:
        _refuse_done(db, refused)
        with Runner(config, db, load_stages(config)) as runner, capture_logs() as logs:
            for path in paths:
                runner.registrar.register(path)
            total = runner.process_until_empty()
        with db.read_session() as session:
            rows = session.execute(
                text(
                    "SELECT i.sha256, i.status, i.reason, COUNT(r.id) FROM inputs i "
                    "LEFT JOIN results r ON r.input_id = i.id "
                    "GROUP BY i.sha256, i.status, i.reason"
                )
            ).all()
    finally:
        db.dispose()
    by_sha = {sha: (status, reason, results) for sha, status, reason, results in rows}
    assert by_sha.pop(refused) == ("failed", "unrecordable", 0)
    assert sorted(by_sha.values()) == [("done", None, 1)] * 7
    assert (total.done, total.failed, total.retried) == (7, 1, 0)
    events = [e["event"] for e in logs]
    assert events.count("batch_commit_failed") == 1
    assert events.count("batch_done") == 2
