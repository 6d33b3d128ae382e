"""An input that kills its worker, on a fleet: two `cervixbatch run` workers share one
PostgreSQL database under a supervisor that restarts a worker that died (systemd's
``Restart=``). The input takes down ``max_attempts`` workers, then ends failed
(worker_died) and is never claimed again; its batch mates are done; both workers live."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from support.daemon import Daemon, photos

from cervixbatch.testhooks import CRASH_ON_SHA256

pytestmark = [pytest.mark.slow, pytest.mark.postgres]

RESTART_SEC = 1.0  # the supervisor's pause before it starts a dead worker again
MAX_ATTEMPTS = 3


def _rows(url: str) -> dict[str, tuple[str, str | None, int]]:
    """sha256 -> (status, reason, attempts) of every input."""
    engine = create_engine(url)
    try:
        with engine.connect() as connection:
            rows = connection.execute(text("SELECT sha256, status, reason, attempts FROM inputs"))
            return {str(s): (str(st), r, int(a)) for s, st, r, a in rows}
    except Exception:  # noqa: BLE001 - not migrated yet
        return {}
    finally:
        engine.dispose()


class Supervisor:
    """Keeps two worker slots running: a worker that exits is started again after
    RESTART_SEC, as systemd's ``Restart=always`` would; every exit status is kept."""

    def __init__(self, start: Callable[[str], Daemon]) -> None:
        self.start = start
        self.started = 0
        self.slots = [self._next() for _ in range(2)]
        self.exits: list[int] = []
        self.due: dict[int, float] = {}

    def _next(self) -> Daemon:
        self.started += 1
        return self.start(f"worker-{self.started}")

    def tend(self) -> None:
        """One look at both slots: note the dead, restart those whose pause is over."""
        now = time.monotonic()
        for index, worker in enumerate(self.slots):
            code = worker.process.poll()
            if code is None:
                continue
            if index not in self.due:
                self.exits.append(code)
                self.due[index] = now + RESTART_SEC
            elif now >= self.due[index]:
                del self.due[index]
                self.slots[index] = self._next()

    def all_ready(self) -> bool:
        """Both slots hold a live worker that has said it is ready."""
        return all(
            w.process.poll() is None and any(e["event"] == "ready" for e in w.events())
            for w in self.slots
        )


@pytest.mark.timeout(900)
def test_an_input_that_kills_its_worker_is_failed_after_max_attempts_and_the_fleet_lives(
    postgres_url: str,
    make_config: Callable[..., Path],
    daemons: Callable[..., Daemon],
    tmp_path: Path,
) -> None:
    """12 photos, one of which kills the worker that reads it (SIGKILL, as a decoder
    crash or the OOM killer would), on two supervised workers: exactly max_attempts
    workers die, the photo ends failed (worker_died, max_attempts attempts) and is never
    claimed again, its batch mates and every other photo end done, both workers are
    alive at the end and stop cleanly."""
    config = make_config(
        database__url=postgres_url,
        batch__size=4,
        batch__lease_seconds=3.0,
        batch__max_attempts=MAX_ATTEMPTS,
        watch__settle_seconds=0.5,
        watch__polling=False,
    )
    inbox = tmp_path / "inbox"
    innocent = photos(inbox, 11, seed=300)
    poison = photos(tmp_path / "staging", 1, seed=400)[0]
    poison = poison.rename(inbox / "photo-305a.jpg")  # among the others: it has batch mates
    poison_sha = hashlib.sha256(poison.read_bytes()).hexdigest()
    innocent_sha = {hashlib.sha256(p.read_bytes()).hexdigest() for p in innocent}
    env = {CRASH_ON_SHA256: poison_sha}
    fleet = Supervisor(lambda name: daemons(config, name, env, cli=True))

    def settled() -> bool:
        rows = _rows(postgres_url)
        return rows.get(poison_sha, ("",))[0] == "failed" and all(
            rows.get(sha, ("",))[0] == "done" for sha in innocent_sha
        )

    deadline = time.monotonic() + 720  # worker start-ups are slow on a busy machine
    while not (settled() and fleet.all_ready()):
        assert time.monotonic() < deadline, (
            f"not settled: {_rows(postgres_url)}, exits {fleet.exits}\n"
            + "\n".join(w.diagnostics() for w in fleet.slots)
        )
        fleet.tend()
        time.sleep(0.2)
    time.sleep(2 * 3.0)  # two more lease terms: nobody claims the failed input again
    fleet.tend()
    rows = _rows(postgres_url)
    assert rows[poison_sha] == ("failed", "worker_died", MAX_ATTEMPTS)
    assert {sha: rows[sha][0] for sha in innocent_sha} == dict.fromkeys(innocent_sha, "done")
    mates = [sha for sha in innocent_sha if rows[sha][2] > 1]  # died with it once, then done
    assert mates, "the photo that kills its worker shared no batch: the test proves less"
    assert fleet.exits == [-9] * MAX_ATTEMPTS  # one death per attempt, none more
    assert all(w.process.poll() is None for w in fleet.slots)
    for worker in fleet.slots:
        assert worker.stop() == 0
