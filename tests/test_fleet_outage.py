"""A database outage is ridden out, not turned into a crash loop: the workers stop claiming,
keep what they hold, wait with backoff and go on once the database is back."""

from __future__ import annotations

import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from support.daemon import Daemon, photos, wait_for
from support.pg_cluster import OwnCluster

pytestmark = [pytest.mark.slow, pytest.mark.postgres, pytest.mark.timeout(900)]

OUTAGE_SECONDS = 45.0


@pytest.fixture
def own_postgres() -> Iterator[OwnCluster]:
    """A PostgreSQL server of this test's own, which the test may stop and start (in a
    folder the ``postgres`` user can reach: pytest's are private to root)."""
    folder = Path(tempfile.mkdtemp(prefix="cervixbatch-pg-"))
    try:
        cluster = OwnCluster(folder)
        cluster.start()
        try:
            yield cluster
        finally:
            cluster.stop()
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _counts(url: str) -> dict[str, int]:
    engine = create_engine(url, connect_args={"connect_timeout": 2})
    try:
        with engine.connect() as connection:
            rows = connection.execute(text("SELECT status, COUNT(*) FROM inputs GROUP BY status"))
            return {str(status): int(count) for status, count in rows}
    except Exception:  # noqa: BLE001 - down, or not migrated yet
        return {}
    finally:
        engine.dispose()


def test_two_workers_ride_out_a_45_second_database_outage(
    own_postgres: OwnCluster,
    make_config: Callable[..., Path],
    daemons: Callable[..., Daemon],
    tmp_path: Path,
) -> None:
    """PostgreSQL is stopped for 45 s in the middle of 60 photos with two workers: both are
    alive afterwards, said so in their logs, and every photo is done exactly once."""
    config = make_config(
        database__url=own_postgres.url,
        database__outage_seconds=120.0,
        batch__size=4,
        batch__lease_seconds=10.0,
        watch__settle_seconds=0.3,
    )
    workers = [daemons(config, f"worker{i}") for i in range(2)]
    for worker in workers:
        worker.wait_event("ready", timeout=300)
    photos(tmp_path / "staging", 60, seed=400)
    for path in sorted((tmp_path / "staging").iterdir()):
        path.rename(tmp_path / "inbox" / path.name)
    wait_for(lambda: _counts(own_postgres.url).get("done", 0) >= 8, 180, "8 done", workers[0])

    own_postgres.stop()
    outage_ends = time.monotonic() + OUTAGE_SECONDS
    while time.monotonic() < outage_ends:
        for worker in workers:
            assert worker.process.poll() is None, worker.diagnostics()
        time.sleep(1.0)
    own_postgres.start()

    wait_for(lambda: _counts(own_postgres.url) == {"done": 60}, 240, "60 done", workers[0])
    for worker in workers:
        assert worker.process.poll() is None, worker.diagnostics()
        names = [e["event"] for e in worker.events()]
        assert "database_unavailable" in names and "database_available" in names, names
    engine = create_engine(own_postgres.url)
    with engine.connect() as connection:
        per_input = connection.execute(
            text("SELECT input_id, COUNT(*) FROM results GROUP BY input_id")
        ).all()
    engine.dispose()
    assert len(per_input) == 60 and all(n == 1 for _, n in per_input)
    for worker in workers:
        assert worker.stop() == 0
