"""Durable before destructive: with ``watch.after`` = ``delete``, an input's ``done`` row is
on stable storage before its inbox file is moved aside and unlinked. Shown in a real
syscall trace (strace) of a real ``cervixbatch process``, not assumed."""

from __future__ import annotations

import dataclasses
import os
import re
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from sqlalchemy import text
from support.daemon import photos
from support.tools import require_executable

from cervixbatch.config import load_config
from cervixbatch.store.db import open_configured

if TYPE_CHECKING:
    from collections.abc import Callable

pytestmark = pytest.mark.slow

_SYSCALLS = "fsync,fdatasync,pwrite64,rename,renameat,renameat2,unlink,unlinkat"
# "1234 name(args" or "1234 <... name resumed>...": the thread, the call, what follows
_LINE = re.compile(
    r"^(?P<tid>\d+)\s+(?:<\.\.\. (?P<resumed>\w+) resumed>|(?P<call>\w+)\()(?P<rest>.*)$"
)


@dataclasses.dataclass(frozen=True, slots=True)
class Call:
    """One system call of the trace: its thread, name, the line it ended on (its order)
    and its text (the arguments, fds named by path thanks to ``-y``)."""

    tid: int
    name: str
    ended: int
    text: str


def _calls(trace: Path) -> list[Call]:
    """The trace's calls, each placed at the line where it returned (or began, for a
    rename: what matters is that the fsync ended before it began)."""
    opened: dict[tuple[int, str], tuple[int, str]] = {}
    calls: list[Call] = []
    for index, line in enumerate(trace.read_text(errors="replace").splitlines()):
        found = _LINE.match(line)
        if found is None:
            continue
        tid = int(found["tid"])
        if found["resumed"]:
            began, text = opened.pop((tid, found["resumed"]), (index, ""))
            place = began if found["resumed"].startswith("rename") else index
            calls.append(Call(tid, found["resumed"], place, text + found["rest"]))
        elif found["rest"].endswith("<unfinished ...>"):
            opened[(tid, found["call"])] = (index, found["rest"])
            if found["call"].startswith("rename"):
                calls.append(Call(tid, found["call"], index, found["rest"]))
        else:
            calls.append(Call(tid, found["call"], index, found["rest"]))
    return sorted(calls, key=lambda c: c.ended)


def _wal_synced_before_each_move(calls: list[Call], inbox: Path) -> dict[str, bool]:
    """For each inbox file moved aside: whether every write of the moving thread to the
    database's WAL before the move was fsynced (by that thread) before the move."""
    verdicts: dict[str, bool] = {}
    for move in calls:
        if not move.name.startswith("rename") or f'"{inbox}/' not in move.text:
            continue
        source = move.text.split('"')[1]
        if "/.cervixbatch-held-" in source or ".cervixbatch-held-" not in move.text:
            continue  # not a move aside (a put back, or another rename)
        before = [c for c in calls if c.tid == move.tid and c.ended < move.ended]
        writes = [c.ended for c in before if c.name == "pwrite64" and "-wal>" in c.text]
        syncs = [c.ended for c in before if c.name in {"fsync", "fdatasync"} and "-wal>" in c.text]
        assert writes, "the thread that disposes of an input commits its row itself"
        verdicts[Path(source).name] = any(s > writes[-1] for s in syncs)
    return verdicts


def _traced_process(config: Path, trace: Path) -> subprocess.CompletedProcess[str]:
    strace = require_executable("strace", install="apt-get install strace")
    return subprocess.run(
        [
            strace,
            "-f",
            "-y",
            "-qq",
            "-e",
            f"trace={_SYSCALLS}",
            "-o",
            str(trace),
            sys.executable,
            "-m",
            "cervixbatch.cli",
            "--config",
            str(config),
            "process",
            "inbox",
        ],
        capture_output=True,
        text=True,
        cwd=config.parent,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"},
        timeout=600,
        check=False,
    )


def test_the_done_row_is_fsynced_before_the_inbox_file_goes(
    make_config: Callable[..., Path], tmp_path: Path
) -> None:
    """In a traced run with watch.after = delete, the disposing thread's WAL writes (its
    commit of the done rows) are fsynced before each inbox file is moved aside and
    unlinked; every photo ends done and gone from the inbox."""
    config = make_config(watch__after="delete", batch__size=2)
    inbox = tmp_path / "inbox"
    photos(inbox, 4)
    trace = tmp_path / "strace.txt"
    done = _traced_process(config, trace)
    assert done.returncode == 0, done.stderr[-3000:]
    assert not list(inbox.iterdir())
    with sqlite3.connect(tmp_path / "state" / "cervixbatch.db") as connection:
        statuses = connection.execute("SELECT status FROM inputs").fetchall()
    assert statuses == [("done",)] * 4
    verdicts = _wal_synced_before_each_move(_calls(trace), inbox)
    assert sorted(verdicts) == [f"photo-{i:03d}.jpg" for i in range(4)]
    assert all(verdicts.values()), verdicts


@pytest.mark.parametrize(("after", "expected"), [("delete", 2), ("archive", 2), ("keep", 1)])
def test_a_worker_that_removes_inputs_commits_batches_with_synchronous_full(
    make_config: Callable[..., Path], after: str, expected: int
) -> None:
    """On the database a worker opens from its configuration, a durable session (a batch's
    commit) runs SQLite with synchronous = FULL (2) when watch.after removes inputs and
    NORMAL (1) when it keeps them; every other transaction runs NORMAL, before and after."""
    db = open_configured(load_config(make_config(watch__after=after)))

    def level(*, durable: bool) -> int:
        with db.session(durable=durable) as session:
            return int(session.execute(text("PRAGMA synchronous")).scalar_one())

    try:
        seen = [level(durable=False), level(durable=True), level(durable=False)]
        assert (seen, db.durable) == ([1, expected, 1], expected == 2)
    finally:
        db.dispose()
