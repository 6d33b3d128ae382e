"""Leases live as long as their worker: the database's clock, compare-and-set takeovers
and resets, and the heartbeat that renews a batch's claims while it works."""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import event, select, update
from support.store import register

from cervixbatch.store import leases, queue, schema
from cervixbatch.store.db import Database, open_database
from cervixbatch.store.schema import Input, Status, utcnow
from cervixbatch.worker.lease_keeper import LeaseKeeper


def _skew_worker_clock(monkeypatch: pytest.MonkeyPatch, offset: dt.timedelta) -> None:
    """This process's idea of "now" runs ``offset`` away from the database server's."""

    def skewed() -> dt.datetime:
        return dt.datetime.now(dt.UTC) + offset

    for module in (queue, leases, schema):
        monkeypatch.setattr(module, "utcnow", skewed, raising=False)


def _holder(db: Database, input_id: int) -> tuple[Status, str | None]:
    with db.read_session() as session:
        status, owner = session.execute(
            select(Input.status, Input.lease_owner).where(Input.id == input_id)
        ).one()
    return Status(status), owner


def test_lease_expiry_is_judged_by_the_database_clock(
    db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A worker whose clock runs an hour fast neither takes over, recovers nor counts as
    expired a claim with 60 s left; one whose clock runs an hour slow still makes a claim
    that lasts its 60 s for everyone else."""
    first = register(db, "a").input_id
    second = register(db, "b").input_id
    with db.session() as session:
        leases.claim(session, owner="w1", limit=1, lease_seconds=60, max_attempts=3)
    _skew_worker_clock(monkeypatch, dt.timedelta(hours=1))
    with db.session() as session:
        assert [
            c.id
            for c in leases.claim(session, owner="w2", limit=1, lease_seconds=60, max_attempts=3)
        ] == [second]
    with db.session() as session:
        assert leases.claim(session, owner="w3", limit=5, lease_seconds=60, max_attempts=3) == []
        assert leases.recover(session, max_attempts=3) == (0, 0)
        assert leases.expired_leases(session) == 0
    assert _holder(db, first) == (Status.PROCESSING, "w1")
    _skew_worker_clock(monkeypatch, dt.timedelta(hours=-1))
    with db.session() as session:  # w2's claim, made while its clock was fast, holds too
        assert leases.claim(session, owner="w4", limit=5, lease_seconds=60, max_attempts=3) == []
    assert _holder(db, second) == (Status.PROCESSING, "w2")


@pytest.fixture
def pg(postgres_url: str) -> Iterator[Database]:
    """A migrated PostgreSQL database: the race below needs row-level concurrency."""
    database = open_database(postgres_url)
    yield database
    database.dispose()


def test_recover_never_undoes_a_takeover_made_after_it_looked(pg: Database) -> None:
    """recover resets a lapsed claim only if it is still the claim it read: when another
    worker takes the input over between recover's read and its write, the takeover
    stands (PostgreSQL, where the two run truly at once)."""
    input_id = register(pg, "c").input_id
    with pg.session() as session:
        leases.claim(session, owner="gone", limit=1, lease_seconds=60, max_attempts=3)
        session.execute(update(Input).values(lease_expires=utcnow() - dt.timedelta(seconds=5)))
    other = open_database(pg.engine.url.render_as_string(hide_password=False), migrate=False)
    taken: list[int] = []

    def take_over_first(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        if not taken and statement.lstrip().upper().startswith("UPDATE INPUTS"):
            with other.session() as session:
                taken.extend(
                    c.id
                    for c in leases.claim(
                        session, owner="w2", limit=1, lease_seconds=60, max_attempts=3
                    )
                )

    event.listen(pg.engine, "before_cursor_execute", take_over_first)
    try:
        with pg.session() as session:
            assert leases.recover(session, max_attempts=3) == (0, 0)
    finally:
        event.remove(pg.engine, "before_cursor_execute", take_over_first)
        other.dispose()
    assert taken == [input_id]
    assert _holder(pg, input_id) == (Status.PROCESSING, "w2")


def test_the_heartbeat_keeps_a_short_lease_alive_while_work_progresses(db: Database) -> None:
    """With a 1 s lease, claims held by the heartbeat survive 3 s of work (and the watchdog
    hears a ping each beat); once released they lapse and another worker takes them."""
    input_id = register(db, "d").input_id
    with db.session() as session:
        leases.claim(session, owner="w1", limit=1, lease_seconds=1.0, max_attempts=3)
    pings: list[float] = []
    with LeaseKeeper(db, "w1", lease_seconds=1.0, stall_seconds=60) as keeper:
        keeper.set_beat(lambda: pings.append(time.monotonic()), 0.5)
        keeper.hold([input_id])
        deadline = time.monotonic() + 3.0
        while time.monotonic() < deadline:
            keeper.progress()
            with db.session() as session:
                assert (
                    leases.claim(session, owner="w2", limit=1, lease_seconds=1.0, max_attempts=3)
                    == []
                )
            time.sleep(0.2)
        keeper.release([input_id])
        assert len(pings) >= 5
        time.sleep(1.5)
        with db.session() as session:
            (taken,) = leases.claim(session, owner="w2", limit=1, lease_seconds=1.0, max_attempts=3)
    assert taken.id == input_id and taken.attempts == 2


def test_a_stalled_batch_stops_renewing_and_pinging(db: Database) -> None:
    """A batch with no progress for stall_seconds counts as hung: its leases lapse for the
    others to take over and the watchdog hears nothing more, so systemd restarts it."""
    input_id = register(db, "e").input_id
    with db.session() as session:
        leases.claim(session, owner="w1", limit=1, lease_seconds=1.0, max_attempts=3)
    pings: list[float] = []
    with LeaseKeeper(db, "w1", lease_seconds=1.0, stall_seconds=0.5) as keeper:
        keeper.set_beat(lambda: pings.append(time.monotonic()), 0.2)
        keeper.hold([input_id])
        time.sleep(2.5)  # no progress reported at all
        with db.session() as session:
            (taken,) = leases.claim(session, owner="w2", limit=1, lease_seconds=60, max_attempts=3)
        last_ping = max(pings, default=0.0)
    assert taken.id == input_id
    assert time.monotonic() - last_ping > 1.5


def test_a_takeover_past_max_attempts_fails_the_input_instead(db: Database) -> None:
    """An input whose claim lapsed max_attempts times (it took down that many workers) is
    never taken over again: the claim that finds it ends it failed (worker_died) and
    takes the next queued input in its place."""
    poison = register(db, "f").input_id
    innocent = register(db, "0" * 63 + "1", "/in/b.jpg").input_id
    for attempt, owner in enumerate(("w1", "w2", "w3"), start=1):
        with db.session() as session:
            (taken,) = leases.claim(session, owner=owner, limit=1, lease_seconds=60, max_attempts=3)
            session.execute(update(Input).values(lease_expires=utcnow() - dt.timedelta(seconds=1)))
        assert (taken.id, taken.attempts) == (poison, attempt)
    with db.session() as session:
        claimed = leases.claim(session, owner="w4", limit=1, lease_seconds=60, max_attempts=3)
    assert [c.id for c in claimed] == [innocent]
    with db.read_session() as session:
        row = session.get(Input, poison)
        assert row is not None
        assert (row.status, row.reason, row.attempts, row.lease_owner) == (
            Status.FAILED,
            "worker_died",
            3,
            None,
        )
        assert row.detail == "the worker stopped while processing this input 3 times"
        assert row.finished_at is not None
    with db.session() as session:
        session.execute(update(Input).values(lease_expires=utcnow() - dt.timedelta(seconds=1)))
        again = leases.claim(session, owner="w5", limit=5, lease_seconds=60, max_attempts=3)
    assert [c.id for c in again] == [innocent]  # the poison is never claimed again


def test_the_batch_of_a_dead_worker_is_taken_over_one_input_at_a_time(db: Database) -> None:
    """The inputs a dead worker held are suspects: each is taken over (or, once recover
    put them back, claimed) alone, never with its batch mates nor with fresh inputs, so
    the one that kills its worker takes no innocent input down with it again."""
    ids = [register(db, f"{i:064x}", f"/in/{i}.jpg").input_id for i in range(4)]
    with db.session() as session:
        leases.claim(session, owner="dead", limit=3, lease_seconds=60, max_attempts=3)
        session.execute(update(Input).values(lease_expires=utcnow() - dt.timedelta(seconds=1)))
    taken = []
    for owner in ("w1", "w2"):
        with db.session() as session:
            claimed = leases.claim(session, owner=owner, limit=8, lease_seconds=60, max_attempts=3)
        taken.append([(c.id, c.attempts) for c in claimed])
    assert taken == [[(ids[0], 2)], [(ids[1], 2)]]
    with db.session() as session:
        session.execute(update(Input).values(lease_expires=utcnow() - dt.timedelta(seconds=1)))
        assert leases.recover(session, max_attempts=3) == (3, 0)
    with db.read_session() as session:
        reasons = session.execute(select(Input.reason).order_by(Input.id)).scalars().all()
    assert reasons == ["worker_died"] * 3 + [None]
    claims = []
    for owner in ("w3", "w4", "w5", "w6"):
        with db.session() as session:
            claimed = leases.claim(session, owner=owner, limit=8, lease_seconds=60, max_attempts=3)
        claims.append([c.id for c in claimed])
    assert claims == [[ids[0]], [ids[1]], [ids[2]], [ids[3]]]


def test_a_worker_holding_a_suspect_claims_nothing_more(db: Database) -> None:
    """A worker that took over a dead worker's input holds it alone: its next claims
    (a pipelined worker claims ahead) get nothing until it is done with it, and a worker
    that already holds work leaves a suspect to one that holds none."""
    suspect, second, third = (register(db, f"{i:064x}", f"/in/{i}.jpg").input_id for i in range(3))
    with db.session() as session:
        leases.claim(session, owner="dead", limit=1, lease_seconds=60, max_attempts=3)
        session.execute(update(Input).values(lease_expires=utcnow() - dt.timedelta(seconds=1)))
    with db.session() as session:
        busy = leases.claim(session, owner="busy", limit=1, lease_seconds=60, max_attempts=3)
        assert [c.id for c in busy] == [suspect]  # holding nothing: it may take the suspect
        assert leases.claim(session, owner="busy", limit=8, lease_seconds=60, max_attempts=3) == []
    with db.session() as session:
        other = leases.claim(session, owner="other", limit=1, lease_seconds=60, max_attempts=3)
        assert [c.id for c in other] == [second]
        session.execute(
            update(Input)
            .where(Input.id == suspect)
            .values(lease_expires=utcnow() - dt.timedelta(seconds=1))
        )
        # "other" holds work: the suspect, lapsed again, waits for a worker holding none
        assert leases.claim(session, owner="other", limit=8, lease_seconds=60, max_attempts=3) == []
    with db.session() as session:
        idle = leases.claim(session, owner="idle", limit=8, lease_seconds=60, max_attempts=3)
    assert [(c.id, c.attempts) for c in idle] == [(suspect, 3)]
    assert _holder(db, third) == (Status.QUEUED, None)
