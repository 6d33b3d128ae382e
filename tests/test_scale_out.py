"""Several workers on one PostgreSQL database: each file done exactly once, even when a
worker is killed; the same migrations as SQLite."""

from __future__ import annotations

import signal
from collections.abc import Callable
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from support.daemon import Daemon, pg_counts, photos, wait_for

pytestmark = [pytest.mark.slow, pytest.mark.postgres]


def test_three_workers_one_killed_every_file_done_exactly_once(
    postgres_url: str,
    make_config: Callable[..., Path],
    daemons: Callable[..., Daemon],
    tmp_path: Path,
) -> None:
    """Three workers share 200 files on PostgreSQL; one is SIGKILLed midway; every file
    ends done exactly once, no input is completed by two workers, and nothing stays
    processing once the dead worker's lease has expired."""
    config = make_config(
        database__url=postgres_url,
        batch__size=4,
        batch__lease_seconds=6.0,
        watch__settle_seconds=0.5,
        watch__polling=False,
    )
    workers = [daemons(config, f"worker{i}") for i in range(3)]
    for worker in workers:
        worker.wait_event("ready")
    photos(tmp_path / "staging", 200, seed=100)
    for path in sorted((tmp_path / "staging").iterdir()):
        path.rename(tmp_path / "inbox" / path.name)  # "dropped at once": renames, no partials
    victim = workers[1]
    wait_for(lambda: pg_counts(postgres_url).get("done", 0) >= 40, 120, "40 done", victim)
    victim.process.send_signal(signal.SIGKILL)
    victim.process.wait(timeout=30)
    survivors = [workers[0], workers[2]]
    wait_for(lambda: pg_counts(postgres_url).get("done", 0) == 200, 240, "200 done", survivors[0])
    counts = pg_counts(postgres_url)
    assert counts == {"done": 200}
    engine = create_engine(postgres_url)
    with engine.connect() as connection:
        per_input = connection.execute(
            text("SELECT input_id, COUNT(*) FROM results GROUP BY input_id")
        ).all()
        sightings = connection.execute(text("SELECT COUNT(*) FROM sightings")).scalar_one()
    engine.dispose()
    assert len(per_input) == 200 and all(n == 1 for _, n in per_input)
    assert sightings == 200  # three workers saw each file; each sighting recorded once
    done_by = [{e["input_id"] for e in w.events() if e["event"] == "input_done"} for w in workers]
    for i in range(3):
        for j in range(i + 1, 3):
            assert not done_by[i] & done_by[j], f"workers {i} and {j} both completed inputs"
    # ids are not 1..200: PostgreSQL spends a sequence value on every conflicting insert.
    # Events are logged after the commit, so the killed worker may have committed its last
    # batch (at most batch.size inputs) without living to log it.
    missing = {input_id for input_id, _ in per_input} - set().union(*done_by)
    assert len(missing) <= 4, missing
    for worker in survivors:
        assert worker.stop() == 0
