"""The durable queue on a real SQLite file: register, claim, complete, fail, recover,
and the migrations that own the schema."""

from __future__ import annotations

import dataclasses
import datetime as dt
import subprocess
import sys
import time
from pathlib import Path

import pytest
from sqlalchemy import select, text, update
from support.store import register

from cervixbatch.owner import this_process
from cervixbatch.store import leases, queue
from cervixbatch.store.db import Database, migrations_dir, open_database
from cervixbatch.store.schema import Base, Input, Result, Status, utcnow


def test_sqlite_is_in_wal_mode_with_a_busy_timeout(tmp_path: Path) -> None:
    """Readers never block the writer (WAL) and a writer waits instead of failing."""
    db = open_database(f"sqlite:///{tmp_path}/queue.db")
    try:
        with db.session() as session:
            assert session.execute(text("PRAGMA journal_mode")).scalar() == "wal"
            assert session.execute(text("PRAGMA busy_timeout")).scalar() == 30000
    finally:
        db.dispose()
    assert (tmp_path / "queue.db").stat().st_mode & 0o777 == 0o600


def test_same_bytes_under_two_names_are_one_input_with_two_sightings(db: Database) -> None:
    """Registering the same sha256 twice creates one input and two sightings."""
    first = register(db, "a", "/in/a.jpg")
    second = register(db, "a", "/in/copy of a.jpg")
    assert first.created and not second.created
    assert first.input_id == second.input_id
    with db.read_session() as session:
        item = session.get(Input, first.input_id)
        assert item is not None
        assert [s.path for s in item.sightings] == ["/in/a.jpg", "/in/copy of a.jpg"]


def test_known_sighting_skips_rehashing(db: Database) -> None:
    """A (path, size, mtime) seen before is recognised; a new mtime is not."""
    reg = register(db, "b", "/in/b.jpg", mtime=5)
    with db.read_session() as session:
        known = queue.known_sighting(session, "/in/b.jpg", 10, 5)
        assert known is not None and known.input_id == reg.input_id
        assert queue.known_sighting(session, "/in/b.jpg", 10, 6) is None


def test_claim_takes_oldest_first_and_never_twice(db: Database) -> None:
    """Claims take queued inputs in order, up to the limit, each only once."""
    for letter in "cdef":
        register(db, letter, f"/in/{letter}.jpg")
    with db.session() as session:
        first = leases.claim(session, owner="w1", limit=3, lease_seconds=60, max_attempts=3)
    with db.session() as session:
        second = leases.claim(session, owner="w2", limit=3, lease_seconds=60, max_attempts=3)
    assert [c.id for c in first] == [1, 2, 3]
    assert [c.id for c in second] == [4]
    assert all(c.attempts == 1 for c in first + second)


def test_complete_writes_results_only_with_the_lease(db: Database) -> None:
    """Completing needs the lease: a worker that lost it writes nothing."""
    reg = register(db, "g")
    with db.session() as session:
        leases.claim(session, owner="w1", limit=1, lease_seconds=60, max_attempts=3)
    row = Result(
        frame=0,
        width=4,
        height=3,
        cervix_found=True,
        cervix_fraction=0.5,
        lesion_fraction=0.1,
        cervix_mask_path="c",
        lesion_mask_path="l",
        overlay_path="o",
        crop_path=None,
        cervix_model="x" * 64,
        lesion_model="y" * 64,
        precision="float32",
        stage1_ms=1.0,
        stage2_ms=2.0,
    )
    with db.session() as session:
        assert not queue.complete(
            session,
            input_id=reg.input_id,
            owner="thief",
            results=[row],
            metadata={},
            processing_ms=1.0,
        )
    with db.session() as session:
        assert queue.complete(
            session,
            input_id=reg.input_id,
            owner="w1",
            results=[row],
            metadata={"kind": "photo"},
            processing_ms=12.5,
        )
    with db.read_session() as session:
        item = session.get(Input, reg.input_id)
        assert item is not None and item.status is Status.DONE and item.kind == "photo"
        assert item.finished_at is not None and item.lease_owner is None
        assert len(item.results) == 1


def test_failures_retry_then_fail(db: Database) -> None:
    """A failure of ours requeues the input until max_attempts, then it is failed."""
    reg = register(db, "h")
    statuses = []
    for _ in range(3):
        with db.session() as session:
            (claimed,) = leases.claim(session, owner="w", limit=1, lease_seconds=60, max_attempts=3)
        with db.session() as session:
            statuses.append(
                queue.fail(
                    session,
                    input_id=claimed.id,
                    owner="w",
                    reason="output_error",
                    detail="disk full",
                    max_attempts=3,
                )
            )
    assert statuses == [Status.QUEUED, Status.QUEUED, Status.FAILED]
    with db.read_session() as session:
        item = session.get(Input, reg.input_id)
        assert item is not None and item.reason == "output_error" and item.attempts == 3


def test_reject_is_terminal_with_reason(db: Database) -> None:
    """A rejected input keeps its reason code and sentence and is never claimed again."""
    reg = register(db, "i")
    with db.session() as session:
        leases.claim(session, owner="w", limit=1, lease_seconds=60, max_attempts=3)
        queue.reject(
            session,
            input_id=reg.input_id,
            owner="w",
            reason="truncated",
            detail="the JPEG ends early",
        )
    with db.session() as session:
        assert leases.claim(session, owner="w", limit=5, lease_seconds=60, max_attempts=3) == []
        counts = queue.status_counts(session)
    assert counts["rejected"] == 1 and counts["queued"] == 0


def test_recover_requeues_dead_owners_and_expired_leases(db: Database) -> None:
    """Inputs held by a dead process of this host, or with an expired lease, go back to
    the queue; a live worker's unexpired claim is left alone; a repeat offender fails."""
    for letter in "jklm":
        register(db, letter)
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    gone = dataclasses.replace(this_process(), pid=int(dead), start=1)
    host_dead_owner = f"{gone.token()}:abcd"
    with db.session() as session:
        for owner in (host_dead_owner, "otherhost:1:x", "otherhost:2:x", host_dead_owner):
            # 1: dead, 2: alive, 3: expired, 4: too often
            leases.claim(session, owner=owner, limit=1, lease_seconds=600, max_attempts=3)
        past = utcnow() - dt.timedelta(seconds=1)
        session.execute(update(Input).where(Input.id == 3).values(lease_expires=past))
        session.execute(update(Input).where(Input.id == 4).values(attempts=3))
    with db.session() as session:
        requeued, failed = leases.recover(session, max_attempts=3)
    assert (requeued, failed) == (2, 1)
    with db.read_session() as session:
        statuses = dict(session.execute(select(Input.id, Input.status)).all())
    assert statuses == {1: Status.QUEUED, 2: Status.PROCESSING, 3: Status.QUEUED, 4: Status.FAILED}


def test_expired_lease_can_be_claimed_by_another_worker(db: Database) -> None:
    """A claim whose lease ran out is taken over by the next claim."""
    register(db, "n")
    with db.session() as session:
        leases.claim(session, owner="w1", limit=1, lease_seconds=60, max_attempts=3)
        session.execute(update(Input).values(lease_expires=utcnow() - dt.timedelta(seconds=1)))
    with db.session() as session:
        (taken,) = leases.claim(session, owner="w2", limit=1, lease_seconds=60, max_attempts=3)
    assert taken.attempts == 2


def test_migrations_match_the_models(db: Database) -> None:
    """Autogenerate finds no difference between the models and the migrated database."""
    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext

    with db.engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        assert compare_metadata(context, Base.metadata) == []


def test_migrations_form_one_line_of_history() -> None:
    """Every revision has one parent and there is one head: branches merged from parallel
    work are chained, never left as two heads that `upgrade head` refuses."""
    from alembic.config import Config as AlembicConfig
    from alembic.script import ScriptDirectory

    config = AlembicConfig()
    config.set_main_option("script_location", str(migrations_dir()))
    script = ScriptDirectory.from_config(config)
    assert len(script.get_heads()) == 1
    revisions = list(script.walk_revisions())
    assert len({r.revision for r in revisions}) == len(revisions)
    assert all(not isinstance(r.down_revision, tuple) for r in revisions)


def test_upgrade_is_idempotent(tmp_path: Path) -> None:
    """Running the migrations again on a migrated database changes nothing."""
    url = f"sqlite:///{tmp_path}/twice.db"
    first = open_database(url)
    revision = first.upgrade()
    first.dispose()
    second = open_database(url)
    assert second.upgrade() == revision
    second.dispose()


def test_concurrent_claims_never_take_an_input_twice(db: Database) -> None:
    """Four workers claiming at once share 40 inputs without any input taken twice."""
    import threading

    for index in range(40):
        register(db, f"{index:064x}", f"/in/{index}.jpg")
    taken: list[int] = []
    lock = threading.Lock()

    def worker(name: str) -> None:
        while True:
            with db.session() as session:
                claimed = leases.claim(
                    session, owner=name, limit=3, lease_seconds=60, max_attempts=3
                )
            if not claimed:
                return
            with lock:
                taken.extend(c.id for c in claimed)

    threads = [
        threading.Thread(target=worker, args=(f"w{i}",), name=f"cervixbatch-test-{i}")
        for i in range(4)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert sorted(taken) == list(range(1, 41))


MIGRATE_AT_THE_SIGNAL = """
import sys, time
from pathlib import Path
from cervixbatch.store.db import open_database
ready, go, url = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3]
ready.touch()
while not go.exists():
    time.sleep(0.001)
database = open_database(url)
print(database.upgrade())
database.dispose()
"""


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_workers_starting_at_once_on_an_empty_database_all_migrate_it(
    backend: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    """Four worker processes opening a database that is not migrated yet, at the same
    moment, all end at head without an error: one migrates, the others wait for it
    (PostgreSQL: an advisory lock; SQLite: its write lock)."""
    url = (
        f"sqlite:///{tmp_path}/fresh.db"
        if backend == "sqlite"
        else request.getfixturevalue("postgres_url")
    )
    go = tmp_path / "go"
    ready = [tmp_path / f"ready-{i}" for i in range(4)]
    workers = [
        subprocess.Popen(
            [sys.executable, "-c", MIGRATE_AT_THE_SIGNAL, str(flag), str(go), url],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for flag in ready
    ]
    deadline = time.monotonic() + 120
    while not all(flag.exists() for flag in ready) and time.monotonic() < deadline:
        time.sleep(0.01)
    go.touch()  # all four imported and waiting: they open the database together
    results = [worker.communicate(timeout=120) for worker in workers]
    for worker, (_out, err) in zip(workers, results, strict=True):
        assert worker.returncode == 0, err[-3000:]
    revisions = {out.strip().splitlines()[-1] for out, _ in results}  # after the logs
    assert len(revisions) == 1 and revisions != {"None"}
