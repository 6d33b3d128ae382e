"""The queue's cost against its history: claim, renewal and counts at 10³ … 10⁷ finished
inputs, on SQLite and PostgreSQL, before and after the partial indexes and kept counts.

Each database is filled with N finished inputs (done; one in a hundred failed) and then
``--queued`` queued ones behind them (higher ids, as in a clinic whose history came
first), by bulk SQL. At each size it times, in the same run and on the same rows:

- before: the claim query and the counts as they were (``status = queued OR expired``
  ordered by id, a GROUP BY over every input, the latest failure by status), with the
  partial indexes and the counting triggers removed;
- after: :func:`cervixbatch.store.leases.claim`, ``renew``, ``status_counts`` (what the
  daemon reads between batches, with ``expired_leases``) and ``status``'s queue overview,
  with the indexes and triggers of migration 0007.

A claim takes 8 and releases them (not timed), so every round finds the same queue.

    nice .venv/bin/python benchmarks/queue_scale.py [--sizes 1000,1000000,10000000]
        [--queued 100000] [--dbs sqlite,postgresql] [--dir /var/tmp] [--pg-admin URL]

PostgreSQL: a scratch database is created through ``--pg-admin`` and dropped at the end.
"""

# ruff: noqa: S608 - the SQL is built from numbers and fixed names, never from input

from __future__ import annotations

import argparse
import contextlib
import platform
import statistics
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

from sqlalchemy import and_, create_engine, func, or_, select, text, update
from sqlalchemy.orm import Session

from cervixbatch.store import leases, overview, queue
from cervixbatch.store.clock import db_now, db_now_plus
from cervixbatch.store.db import Database, open_database
from cervixbatch.store.schema import Input, Sighting, Status

PARTIAL = ("ix_inputs_active", "ix_inputs_failed")
CHUNK = 1_000_000  # rows per bulk insert
ROUND_BUDGET_S = 15.0  # per measurement: as many rounds as fit, at least 3, at most 40


# -- filling ---------------------------------------------------------------------------


def _series(dialect: str, start: int, count: int) -> str:
    if dialect == "postgresql":
        return f"SELECT n FROM generate_series({start}, {start + count - 1}) AS n"
    return (
        f"WITH RECURSIVE s(n) AS (SELECT {start} UNION ALL SELECT n + 1 FROM s"
        f" WHERE n < {start + count - 1}) SELECT n FROM s"
    )


def _append(db: Database, start: int, count: int, *, queued: bool) -> None:
    """``count`` rows numbered from ``start``: finished (done, 1 % failed) or queued."""
    pad = "lpad(n::text, 64, '0')" if db.dialect == "postgresql" else "printf('%064d', n)"
    if queued:
        status, reason, finished = "'queued'", "NULL", "NULL"
    else:
        status = "CASE WHEN n % 100 = 0 THEN 'failed' ELSE 'done' END"
        reason = "CASE WHEN n % 100 = 0 THEN 'internal_error' END"
        finished = "CURRENT_TIMESTAMP"
    for offset in range(0, count, CHUNK):
        rows = _series(db.dialect, start + offset, min(CHUNK, count - offset))
        with db.engine.begin() as connection:
            connection.execute(
                text(
                    "INSERT INTO inputs (sha256, path, size_bytes, status, reason, attempts,"
                    " created_at, queued_at, finished_at)"
                    f" SELECT {pad}, 'p', 1, {status}, {reason}, 1, CURRENT_TIMESTAMP,"
                    f" CURRENT_TIMESTAMP, {finished} FROM ({rows}) AS r"
                )
            )


def _grow(db: Database, have: int, want: int, queued: int) -> None:
    """From ``have`` finished inputs (and the queued ones behind them) to ``want``: the
    queued inputs join the history, new finished ones follow, new queued ones last."""
    with db.engine.begin() as connection:
        top = connection.execute(select(func.coalesce(func.max(Input.id), 0))).scalar_one()
        moved = connection.execute(
            update(Input).where(Input.status == Status.QUEUED).values(status=Status.DONE)
        ).rowcount
    _append(db, top + 1, max(0, want - have - moved), queued=False)
    _append(db, top + 1 + max(0, want - have - moved), queued, queued=True)


# -- the schema of before and after ----------------------------------------------------


class Schema:
    """Removes and restores what migration 0007 added: partial indexes, triggers."""

    def __init__(self, db: Database) -> None:
        self.db = db
        with db.engine.connect() as connection:
            if db.dialect == "postgresql":
                self.indexes = [
                    str(r[0])
                    for r in connection.execute(
                        text("SELECT indexdef FROM pg_indexes WHERE indexname = ANY(:n)"),
                        {"n": list(PARTIAL)},
                    )
                ]
                self.triggers: list[str] = []
            else:
                master = "SELECT sql FROM sqlite_master WHERE "
                self.indexes = [
                    str(r[0])
                    for r in connection.execute(
                        text(master + "name IN ('{}', '{}')".format(*PARTIAL))
                    )
                ]
                self.triggers = [
                    str(r[0]) for r in connection.execute(text(master + "type = 'trigger'"))
                ]

    def before(self) -> None:
        with self.db.engine.begin() as connection:
            for name in PARTIAL:
                connection.execute(text(f"DROP INDEX IF EXISTS {name}"))
            if self.db.dialect == "postgresql":
                connection.execute(text("ALTER TABLE inputs DISABLE TRIGGER USER"))
            else:
                for name in (
                    "input_tallies_insert",
                    "input_tallies_delete",
                    "input_tallies_update",
                ):
                    connection.execute(text(f"DROP TRIGGER IF EXISTS {name}"))

    def after(self) -> None:
        with self.db.engine.begin() as connection:
            for statement in self.indexes + self.triggers:
                connection.execute(text(statement))
            if self.db.dialect == "postgresql":
                connection.execute(text("ALTER TABLE inputs ENABLE TRIGGER USER"))
            # the counts as the migration would have seeded them
            connection.execute(text("DELETE FROM input_tallies"))
            connection.execute(
                text(
                    "INSERT INTO input_tallies (status, reason, delta)"
                    " SELECT status, reason, count(*) FROM inputs GROUP BY status, reason"
                )
            )


def _vacuum(db: Database) -> None:
    if db.dialect == "postgresql":  # autovacuum's work, done now: stats and visibility
        with db.engine.connect() as connection:
            connection.execution_options(isolation_level="AUTOCOMMIT").execute(
                text("VACUUM ANALYZE inputs")
            )


# -- what is timed ---------------------------------------------------------------------


def _old_claim(session: Session, owner: str, limit: int) -> list[int]:
    """The claim before migration 0007 (its queued path): the whole select, then update."""
    expired = and_(Input.status == Status.PROCESSING, Input.lease_expires < db_now())
    ids = [
        int(r[0])
        for r in session.execute(
            select(Input.id, Input.status, Input.lease_owner, Input.lease_expires)
            .where(or_(Input.status == Status.QUEUED, expired))
            .order_by(Input.id)
            .limit(limit)
            .with_for_update(skip_locked=True)
        )
    ]
    session.execute(
        update(Input)
        .where(Input.id.in_(ids), Input.status == Status.QUEUED)
        .values(
            status=Status.PROCESSING,
            lease_owner=owner,
            lease_expires=db_now_plus(60),
            attempts=Input.attempts + 1,
        )
        .execution_options(synchronize_session=False)
    )
    session.execute(select(Sighting.path).where(Sighting.input_id.in_(ids))).all()  # its paths
    return ids


def _old_counts(session: Session) -> None:
    session.execute(select(Input.status, func.count()).group_by(Input.status)).all()
    leases.expired_leases(session)


def _old_status(session: Session) -> None:
    _old_counts(session)
    overview.oldest_queued(session)
    session.execute(
        select(Input.id, Input.reason, Input.finished_at)
        .where(Input.status == Status.FAILED)
        .order_by(Input.finished_at.desc().nulls_last(), Input.id.desc())
        .limit(1)
    ).first()


def _new_counts(session: Session) -> None:
    queue.status_counts(session)
    leases.expired_leases(session)


def _new_status(session: Session) -> None:
    _new_counts(session)
    overview.oldest_queued(session)
    overview.last_failure(session)


def _rounds(step: Callable[[], float]) -> list[float]:
    """Times ``step`` (it returns its own seconds) as often as the budget allows."""
    times: list[float] = []
    spent = time.perf_counter()
    while len(times) < 3 or (len(times) < 40 and time.perf_counter() - spent < ROUND_BUDGET_S):
        times.append(step())
    return times


def measure(db: Database, *, after: bool) -> dict[str, float]:
    """Median milliseconds of a claim of 8, a renewal of 8, the daemon's counts and
    `status`'s queue reads; claims per second back to back."""
    held: list[int] = []

    def claim() -> float:
        with db.session() as session:
            t0 = time.perf_counter()
            if after:
                taken = [
                    c.id
                    for c in leases.claim(
                        session, owner="bench", limit=8, lease_seconds=60, max_attempts=3
                    )
                ]
            else:
                taken = _old_claim(session, "bench", 8)
        elapsed = time.perf_counter() - t0  # the commit included
        held[:] = taken
        renew_s.append(_timed_renew(db, taken))
        with db.session() as session:  # back to the queue, untimed
            session.execute(
                update(Input)
                .where(Input.id.in_(taken))
                .values(status=Status.QUEUED, lease_owner=None, lease_expires=None)
                .execution_options(synchronize_session=False)
            )
        return elapsed

    def reading(work: Callable[[Session], None]) -> Callable[[], float]:
        def step() -> float:
            t0 = time.perf_counter()
            with db.read_session() as session:
                work(session)
            return time.perf_counter() - t0

        return step

    renew_s: list[float] = []
    claims = _rounds(claim)
    counts = _rounds(reading(_new_counts if after else _old_counts))
    status = _rounds(reading(_new_status if after else _old_status))
    assert len(held) == 8, held
    return {
        "claim_ms": statistics.median(claims) * 1000,
        "claims_per_s": len(claims) / sum(claims),
        "renew_ms": statistics.median(renew_s) * 1000,
        "counts_ms": statistics.median(counts) * 1000,
        "status_ms": statistics.median(status) * 1000,
    }


def _timed_renew(db: Database, ids: list[int]) -> float:
    t0 = time.perf_counter()
    with db.session() as session:
        leases.renew(session, owner="bench", ids=ids, lease_seconds=60)
    return time.perf_counter() - t0


# -- the databases ---------------------------------------------------------------------


@contextlib.contextmanager
def database(kind: str, folder: Path, admin_url: str) -> Iterator[Database]:
    """A fresh, migrated database of ``kind``, removed afterwards."""
    if kind == "sqlite":
        path = folder / f"queue-scale-{uuid.uuid4().hex[:8]}.db"
        db = open_database(f"sqlite:///{path}")
        try:
            yield db
        finally:
            db.dispose()
            for suffix in ("", "-wal", "-shm"):
                Path(f"{path}{suffix}").unlink(missing_ok=True)
        return
    name = f"cervixbatch_queue_scale_{uuid.uuid4().hex[:8]}"
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    db = open_database(admin_url.rsplit("/", 1)[0] + f"/{name}")
    try:
        yield db
    finally:
        db.dispose()
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def run(kind: str, sizes: list[int], queued: int, folder: Path, admin_url: str) -> None:
    """Fills one database through ``sizes`` and prints a line per size and variant."""
    with database(kind, folder, admin_url) as db:
        schema = Schema(db)
        have = 0
        for size in sizes:
            schema.before()
            t0 = time.perf_counter()
            _grow(db, have, size, queued)
            have = size
            _vacuum(db)
            fill_s = time.perf_counter() - t0
            rows: dict[str, dict[str, float]] = {"before": measure(db, after=False)}
            schema.after()
            _vacuum(db)
            rows["after"] = measure(db, after=True)
            for variant, figures in rows.items():
                print(
                    f"{kind:<10} {size:>10,} {queued:>8,} {variant:<6}"
                    f" {figures['claim_ms']:>9.2f} {figures['claims_per_s']:>9.0f}"
                    f" {figures['renew_ms']:>8.2f} {figures['counts_ms']:>9.2f}"
                    f" {figures['status_ms']:>9.2f}   (filled in {fill_s:.0f} s)",
                    flush=True,
                )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="1000,1000000,10000000")
    parser.add_argument("--queued", type=int, default=100_000)
    parser.add_argument("--dbs", default="sqlite,postgresql")
    parser.add_argument("--dir", type=Path, default=Path(tempfile.gettempdir()))
    parser.add_argument(
        "--pg-admin", default="postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
    )
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    print(f"# {platform.processor() or platform.machine()}, {_cpu()}; medians in ms")
    print(
        f"{'database':<10} {'finished':>10} {'queued':>8} {'code':<6} {'claim 8':>9}"
        f" {'claims/s':>9} {'renew 8':>8} {'counts':>9} {'status':>9}"
    )
    for kind in args.dbs.split(","):
        run(kind, sizes, args.queued, args.dir, args.pg_admin)


def _cpu() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return "unknown CPU"


if __name__ == "__main__":
    main()
