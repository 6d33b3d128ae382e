"""The queue's cost does not grow with its history: claims, renewals and the counts read
the active inputs only (their plans on SQLite and PostgreSQL say so), and the counts the
triggers keep are exactly the counts of the rows."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from sqlalchemy import event, func, select, text, update
from support.store import register

from cervixbatch.errors import FailReason, RejectReason
from cervixbatch.store import leases, overview, queue, tallies
from cervixbatch.store.db import Database
from cervixbatch.store.schema import Input, InputTally, Status, utcnow

FINISHED = 20_000  # done inputs, one in four failed instead: the history
QUEUED = 2_000  # waiting behind them: a claim's planner expects to find them anywhere
PARTIAL = (
    "ix_inputs_active",
    "ix_inputs_queued_at",
    "ix_inputs_failed",
)  # hold live or failed inputs only


def _fill_history(db: Database, finished: int, queued: int) -> None:
    """``finished`` done and failed inputs, then ``queued`` ones."""
    if db.dialect == "postgresql":
        rows = f"SELECT n FROM generate_series(1, {finished + queued}) AS n"
        sha = "md5(n::text) || md5(n::text)"
    else:
        rows = f"WITH RECURSIVE s(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM s WHERE n < {finished + queued}) SELECT n FROM s"  # noqa: E501
        sha = "printf('%064d', n)"
    status = f"CASE WHEN n > {finished} THEN 'queued' WHEN n % 4 = 0 THEN 'failed' ELSE 'done' END"
    with db.session() as session:
        session.execute(
            text(
                "INSERT INTO inputs (sha256, path, size_bytes, status, attempts, created_at,"
                " queued_at, finished_at) "
                f"SELECT {sha}, 'p', 1, {status}, 0, :now, :now, :now FROM ({rows}) AS r"
            ),
            {"now": utcnow()},
        )
    with db.engine.connect() as connection:
        connection.execution_options(isolation_level="AUTOCOMMIT").execute(text("ANALYZE"))


def _statements(db: Database, work: Callable[[], Any]) -> list[tuple[str, Any]]:
    """The statements ``work`` sends that read or change ``inputs``, with parameters."""
    seen: list[tuple[str, Any]] = []

    def record(_conn: Any, _cursor: Any, statement: str, parameters: Any, *_: Any) -> None:
        if " inputs" in statement.lower():
            seen.append((statement, parameters))

    event.listen(db.engine, "before_cursor_execute", record)
    try:
        work()
    finally:
        event.remove(db.engine, "before_cursor_execute", record)
    return seen


def _full_scans(db: Database, statement: str, parameters: Any) -> list[str]:
    """The plan's reads of ``inputs`` that walk it whole (a table scan, or an index walked
    without a condition that is not one of the partial indexes of live rows)."""
    with db.engine.connect() as connection:
        if db.dialect == "postgresql":
            plan = connection.exec_driver_sql(
                f"EXPLAIN (FORMAT JSON) {statement}", parameters
            ).scalar_one()
            nodes = list(_nodes(plan[0]["Plan"]))
            walks = [json.dumps(n) for n in nodes if _walks_inputs(n)]
            walks += [json.dumps(n) for n in nodes if n["Node Type"] == "Sort"]
            return walks + _rows_read(connection, statement, parameters)
        rows = connection.exec_driver_sql(f"EXPLAIN QUERY PLAN {statement}", parameters).all()
        details = [str(row[-1]) for row in rows]
        sorts = [d for d in details if "TEMP B-TREE FOR ORDER BY" in d]
        return sorts + [
            d
            for d in details
            if d.startswith("SCAN inputs") and not any(f"INDEX {name}" in d for name in PARTIAL)
        ]


def _rows_read(connection: Any, statement: str, parameters: Any) -> list[str]:
    """On PostgreSQL, the statement run (and rolled back) reads no more rows of
    ``inputs`` than the live ones: named when it does."""
    plan = connection.exec_driver_sql(
        f"EXPLAIN (ANALYZE, FORMAT JSON) {statement}", parameters
    ).scalar_one()
    connection.rollback()  # a claim or renewal run for its plan changes nothing
    read = sum(
        int(n.get("Actual Rows", 0)) + int(n.get("Rows Removed by Filter", 0))
        for n in _nodes(plan[0]["Plan"])
        if n.get("Relation Name") == "inputs" and "Scan" in n["Node Type"]
    )
    return [f"read {read} rows of inputs"] if read > QUEUED + 100 else []


def _walks_inputs(node: dict[str, Any]) -> bool:
    """A PostgreSQL plan node that reads every row of ``inputs`` or of one of its full
    indexes: a table scan, or an index scan without an index condition."""
    if node["Node Type"] == "Seq Scan":
        return bool(node.get("Relation Name") == "inputs")
    index = str(node.get("Index Name", ""))
    on_inputs = index.startswith(("ix_inputs_", "pk_inputs"))
    return on_inputs and "Index Cond" not in node and index not in PARTIAL


def _nodes(plan: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield plan
    for child in plan.get("Plans", []):
        yield from _nodes(child)


def test_claims_renewals_and_counts_never_walk_the_finished_inputs(db: Database) -> None:
    """With 20,000 finished inputs (5,000 of them failed) and 2,030 live ones, no statement
    of a claim (with a takeover), a renewal, the queue counts or `status`'s queue overview
    scans the table or a full index of the inputs, nor (PostgreSQL, run) reads more rows
    than there are live ones; nothing is sorted (the claim and the latest failure walk
    their indexes in order)."""
    _fill_history(db, FINISHED, QUEUED)
    for index in range(30):
        register(db, f"{index:064x}", f"/in/{index}.jpg")
    with db.session() as session:
        held = leases.claim(session, owner="w1", limit=4, lease_seconds=60, max_attempts=3)
        session.execute(
            update(Input)
            .where(Input.id == held[0].id)
            .values(lease_expires=utcnow() - dt.timedelta(seconds=5))
        )

    def work() -> None:
        with db.session() as session:
            leases.claim(session, owner="w2", limit=8, lease_seconds=60, max_attempts=3)
            leases.renew(session, owner="w1", ids=[c.id for c in held], lease_seconds=60)
        with db.read_session() as session:
            queue.status_counts(session)
            leases.expired_leases(session)
            overview.oldest_queued(session)
            overview.last_failure(session)

    statements = _statements(db, work)
    assert len(statements) >= 6
    scans = {s: _full_scans(db, s, p) for s, p in statements}
    assert {s: found for s, found in scans.items() if found} == {}


def _group_by(session: Any) -> dict[tuple[str, str | None], int]:
    return {
        (str(s), r): int(n)
        for s, r, n in session.execute(
            select(Input.status, Input.reason, func.count()).group_by(Input.status, Input.reason)
        )
    }


def test_kept_counts_equal_the_rows_through_every_transition(db: Database) -> None:
    """Registered, claimed, done, rejected, failed, retried, released, taken over,
    recovered and deleted inputs: the counts per status and per reason the triggers keep
    (folded or not) equal a count of the rows after every step."""
    ids = [register(db, f"{i:064x}", f"/in/{i}.jpg").input_id for i in range(12)]

    def check() -> None:
        with db.read_session() as session:
            rows = _group_by(session)
            by_status = {s.value: 0 for s in Status}
            for (status, _), count in rows.items():
                by_status[status] += count
            assert queue.status_counts(session) == by_status
            terminal = {
                (s, r): n for (s, r), n in rows.items() if s in {"rejected", "failed"} and n
            }
            assert {(s, r): n for s, r, n in tallies.reason_counts(session)} == terminal

    check()
    with db.session() as session:
        leases.claim(session, owner="w", limit=10, lease_seconds=60, max_attempts=2)
    check()
    with db.session() as session:
        assert queue.complete(
            session, input_id=ids[0], owner="w", results=[], metadata={}, processing_ms=1.0
        )
        queue.reject(session, input_id=ids[1], owner="w", reason=RejectReason.CORRUPT, detail="x")
        for input_id in ids[2:4]:
            queue.fail(
                session,
                input_id=input_id,
                owner="w",
                reason=FailReason.INTERNAL_ERROR,
                detail="x",
                max_attempts=1,
            )
        queue.fail(
            session,
            input_id=ids[4],
            owner="w",
            reason=FailReason.INTERNAL_ERROR,
            detail="x",
            max_attempts=2,
        )
        queue.release(
            session, input_id=ids[5], owner="w", reason=FailReason.OUTPUT_ERROR, detail="x"
        )
    check()
    with db.session() as session:
        session.execute(
            update(Input)
            .where(Input.status == Status.PROCESSING)
            .values(lease_expires=utcnow() - dt.timedelta(seconds=5))
        )
        leases.claim(session, owner="v", limit=3, lease_seconds=60, max_attempts=1)
    check()
    with db.session() as session:
        session.execute(update(Input).values(lease_expires=utcnow() - dt.timedelta(seconds=5)))
        leases.recover(session, max_attempts=2)
        session.execute(Input.__table__.delete().where(Input.id == ids[0]))
    check()
    with db.session() as session:
        assert tallies.fold(session, rows=7) == 7
        while tallies.fold(session):
            pass
        tally_rows = session.execute(select(func.count()).select_from(InputTally)).scalar_one()
    check()
    assert tally_rows <= 64


def test_claims_keep_the_kept_counts_short(db: Database, monkeypatch: pytest.MonkeyPatch) -> None:
    """300 registrations append 300 deltas; the next claim that looks (one in FOLD_EVERY
    of a process) folds them, so what a count adds up stays a handful of rows however
    long the queue has run."""
    monkeypatch.setattr(leases, "_claims", 0)  # this process's next claim looks
    for index in range(300):
        register(db, f"{index:064x}", f"/in/{index}.jpg")
    with db.session() as session:
        assert session.execute(select(func.count()).select_from(InputTally)).scalar_one() == 300
        leases.claim(session, owner="w", limit=8, lease_seconds=60, max_attempts=3)
    with db.read_session() as session:
        assert session.execute(select(func.count()).select_from(InputTally)).scalar_one() <= 4
        assert queue.status_counts(session)["queued"] == 292
