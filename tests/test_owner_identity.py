"""A worker's identity rests on the machine id, the boot id and the pid namespace, never on
a host name: a clone with the same host name, or an owner named by an older version with
its host name cut to 40 characters, is never judged dead, so its claims, temp files and
held files are left to it."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
import time
from pathlib import Path

from cervixbatch.delivery.disposal import HELD_PREFIX, restore_held_files
from cervixbatch.outputs.atomic import TEMP_PREFIX, sweep_temp_files
from cervixbatch.owner import (
    NONE,
    OwnerState,
    ProcessOwner,
    owner_state,
    parse_owned_name,
    this_process,
)
from cervixbatch.store.leases import make_owner, owner_is_dead

ME = this_process()
OTHER_MACHINE = "0123456789abcdef" if ME.machine != "0123456789abcdef" else "fedcba9876543210"
OTHER_BOOT = "00000000ffffffff" if ME.boot != "00000000ffffffff" else "ffffffff00000000"


def _dead_pid() -> int:
    """The pid of a process of this machine that has exited."""
    done = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    )
    return int(done.stdout)


def _legacy_token(pid: int) -> str:
    """How the version before machine ids named a process of this host and boot: the host
    name cut to 40 characters, the boot id's first 8 digits, pid, start time."""
    return f"{ME.host}-{ME.boot[:8]}-{pid}-{ME.start}"


def test_an_owner_of_another_machine_with_this_host_name_is_never_judged_dead() -> None:
    """Owners with this process's host name but another machine id (a cloned VM) are not
    dead to this process, whatever their boot, pid namespace, pid or start time; the same
    owners with this machine's id are, where that is provable."""
    dead = dataclasses.replace(ME, pid=_dead_pid(), start=1)
    clone = dataclasses.replace(dead, machine=OTHER_MACHINE)
    variants = [
        clone,
        dataclasses.replace(clone, boot=OTHER_BOOT),
        dataclasses.replace(clone, pid=ME.pid),
        dataclasses.replace(clone, pidns=ME.pidns + 1),
        dataclasses.replace(ME, machine=OTHER_MACHINE),
    ]
    assert all(v.host == ME.host for v in variants)
    assert [owner_state(v) for v in variants] == [OwnerState.UNKNOWN] * 5
    if ME.machine != NONE:
        assert owner_state(dead) is OwnerState.DEAD  # this machine: the pid is free
        assert owner_state(dataclasses.replace(dead, boot=OTHER_BOOT)) is OwnerState.DEAD


def test_the_judgement_is_mutual_between_two_real_processes() -> None:
    """A second real process, judging this one as if it ran on a clone (same host name,
    another machine id), does not call it dead either; nor does this one call a finished
    process dead once its machine id is another."""
    finished = dataclasses.replace(ME, pid=_dead_pid(), machine=OTHER_MACHINE)
    code = (
        "import dataclasses, sys\n"
        "from cervixbatch.owner import ProcessOwner, owner_state\n"
        "owner = ProcessOwner.parse(sys.argv[1])\n"
        "print(owner_state(owner).value, owner_state(dataclasses.replace(owner, pid=1)).value)\n"
    )
    clone_of_me = dataclasses.replace(ME, machine=OTHER_MACHINE, pid=_dead_pid())
    seen = subprocess.run(
        [sys.executable, "-c", code, clone_of_me.token()],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
    ).stdout.split()
    assert seen == ["unknown", "unknown"]
    assert owner_state(finished) is OwnerState.UNKNOWN


def test_a_clones_temp_and_held_files_survive_this_machines_recovery(tmp_path: Path) -> None:
    """A temp file and a held file whose owner has this host name and a free pid but
    another machine id stay where they are; the same files of this machine go (the temp
    file) or come back (the held photo)."""
    pid = _dead_pid()
    mine = dataclasses.replace(ME, pid=pid, start=1)
    clone = dataclasses.replace(mine, machine=OTHER_MACHINE)
    for owner, tag in ((clone, "clone"), (mine, "mine")):
        (tmp_path / f"{TEMP_PREFIX}{owner.token()}-0123abcd-overlay.jpg").write_bytes(b"t")
        (tmp_path / f"{HELD_PREFIX}{owner.token()}-4567cdef-{tag}.jpg").write_bytes(b"h")
    sweep = sweep_temp_files(tmp_path.glob(TEMP_PREFIX + "*"))
    restored = restore_held_files(tmp_path)
    left = sorted(p.name for p in tmp_path.iterdir())
    if ME.machine == NONE:  # no machine id here: nothing is provable about the other boot
        assert (sweep.removed, restored) == (0, 0)
        return
    assert (sweep.removed, sweep.kept_unknown, restored) == (1, 1, 1)
    assert left == sorted(
        [
            f"{TEMP_PREFIX}{clone.token()}-0123abcd-overlay.jpg",
            f"{HELD_PREFIX}{clone.token()}-4567cdef-clone.jpg",
            "mine.jpg",
        ]
    )


def test_an_owner_named_with_a_host_name_cut_to_40_characters_is_never_judged_dead(
    tmp_path: Path,
) -> None:
    """Owners named by the older version (host name cut to 40 characters, which another
    host's longer name can share) still parse, but are never dead: their leases, held files
    and fresh temp files are left alone; a temp file of theirs goes only once a day old."""
    pid = _dead_pid()
    legacy = ProcessOwner.parse(_legacy_token(pid))
    assert legacy is not None and legacy.legacy and legacy.pid == pid
    assert legacy.token() == _legacy_token(pid)
    assert owner_state(legacy) is OwnerState.UNKNOWN
    assert not owner_is_dead(f"{_legacy_token(pid)}:abcd1234")
    assert not owner_is_dead(f"{ME.host}:{pid}:abcd1234")  # before start times were named
    fresh = tmp_path / f"{TEMP_PREFIX}{_legacy_token(pid)}-0123abcd-overlay.jpg"
    stale = tmp_path / f"{TEMP_PREFIX}{_legacy_token(pid)}-89abcdef-crop.jpg"
    held = tmp_path / f"{HELD_PREFIX}{_legacy_token(pid)}-4567cdef-photo.jpg"
    for path in (fresh, stale, held):
        path.write_bytes(b"x")
    os.utime(stale, (time.time() - 2 * 86_400,) * 2)
    sweep = sweep_temp_files(tmp_path.glob(TEMP_PREFIX + "*"))
    assert (sweep.removed, sweep.kept_unknown) == (1, 1)
    assert restore_held_files(tmp_path) == 0
    assert fresh.is_file() and held.is_file() and not stale.exists()


def test_an_owner_in_another_pid_namespace_is_not_judged_by_its_pid() -> None:
    """A process of this machine and boot but another pid namespace (another container)
    is never judged by a pid that means another process here."""
    other = dataclasses.replace(ME, pid=_dead_pid(), pidns=ME.pidns + 1)
    assert owner_state(other) is OwnerState.UNKNOWN


def test_owner_names_fit_their_columns_and_file_names() -> None:
    """The longest owner this version can write fits the lease owner column (128) and an
    owned file name stays within 255 bytes."""
    longest = ProcessOwner("h" * 32, "f" * 16, "f" * 16, 2**32 - 1, 4_194_304, 10**12)
    assert ProcessOwner.parse(longest.token()) == longest
    assert len(f"{longest.token()}:{'a' * 8}") <= 128
    assert len(make_owner()) <= 128
    name = f"{HELD_PREFIX}{longest.token()}-0123abcd-{'n' * 100}"
    assert len(name.encode()) <= 255
    assert parse_owned_name(name, HELD_PREFIX) == (longest, "n" * 100)
