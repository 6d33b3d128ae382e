"""The outbox: atomic writes, names from ids only, nothing outside it."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from cervixbatch.errors import OutputError
from cervixbatch.outputs.atomic import TEMP_PREFIX, temp_owner, temp_path, write_atomic
from cervixbatch.outputs.outbox import Outbox
from cervixbatch.owner import this_process


def test_folders_are_named_by_id_only(tmp_path: Path) -> None:
    """Single-frame inputs write into <id>/, multi-frame ones into <id>/frame_NNNN/."""
    outbox = Outbox(tmp_path)
    assert outbox.frame_dir(12, 0, 1) == tmp_path.resolve() / "00000012"
    assert outbox.frame_dir(12, 3, 5) == tmp_path.resolve() / "00000012" / "frame_0003"


def test_write_frame_writes_every_output_with_modes(tmp_path: Path) -> None:
    """Masks (PNG), overlay and crop (JPEG) are written with 0640 files in 0750 folders."""
    outbox = Outbox(tmp_path)
    folder = outbox.frame_dir(1, 0, 1)
    mask = np.zeros((30, 40), np.uint8)
    mask[5:10, 5:10] = 255
    rgb = np.zeros((30, 40, 3), np.uint8)
    outputs = outbox.write_frame(
        folder,
        cervix_mask=mask,
        lesion_mask=mask,
        overlay_rgb=rgb,
        crop_rgb=rgb[:10, :10],
        jpeg_quality=90,
    )
    for path in (outputs.cervix_mask, outputs.lesion_mask, outputs.overlay, outputs.crop):
        assert path is not None and path.is_file()
        assert path.stat().st_mode & 0o777 == 0o640
    assert folder.stat().st_mode & 0o777 == 0o750
    assert not list(tmp_path.rglob(TEMP_PREFIX + "*"))


def test_paths_outside_the_outbox_are_refused(tmp_path: Path) -> None:
    """A folder that resolves outside the outbox (.., a symlink) is refused."""
    root = tmp_path / "outbox"
    root.mkdir()
    outbox = Outbox(root)
    with pytest.raises(OutputError, match="outside the outbox"):
        outbox.write_frame(
            root / ".." / "escape",
            cervix_mask=np.zeros((2, 2), np.uint8),
            lesion_mask=np.zeros((2, 2), np.uint8),
            overlay_rgb=np.zeros((2, 2, 3), np.uint8),
            crop_rgb=None,
            jpeg_quality=90,
        )
    (root / "link").symlink_to(tmp_path)
    with pytest.raises(OutputError):
        outbox.frame_dir(1, 0, 1) and outbox._inside(root / "link" / "x")
    assert not (tmp_path / "escape").exists()


def test_atomic_write_replaces_and_cleans_up(tmp_path: Path) -> None:
    """A write replaces the old file whole; a failed write leaves no temp file behind."""
    target = tmp_path / "a.bin"
    write_atomic(target, b"old")
    write_atomic(target, b"new")
    assert target.read_bytes() == b"new"
    with pytest.raises(OutputError):
        write_atomic(tmp_path / "missing-folder" / "b.bin", b"x")
    assert [p.name for p in tmp_path.iterdir()] == ["a.bin"]


def test_recovery_removes_stray_temp_files(tmp_path: Path) -> None:
    """Temp files a crash left in the outbox are removed; real outputs stay. A temp name
    that names no owner (an older version's) goes only once it is a day old."""
    folder = tmp_path / "00000001"
    folder.mkdir()
    old = folder / f"{TEMP_PREFIX}abc-overlay.jpg"
    old.write_bytes(b"half")
    os.utime(old, (time.time() - 2 * 86_400,) * 2)
    recent = folder / f"{TEMP_PREFIX}def-overlay.jpg"
    recent.write_bytes(b"half")
    (folder / "overlay.jpg").write_bytes(b"whole")
    sweep = Outbox(tmp_path).remove_temp_files()
    assert (sweep.removed, sweep.kept_live, sweep.kept_unknown) == (1, 0, 1)
    assert sorted(p.name for p in folder.iterdir()) == [recent.name, "overlay.jpg"]


LIVE_WRITER = """
import sys
from pathlib import Path
from cervixbatch.outputs.atomic import temp_path
temp = temp_path(Path(sys.argv[1]))
temp.write_bytes(b"half of an overlay")
print(temp.name, flush=True)
sys.stdin.read()  # in flight until the test closes our stdin
"""


def test_a_live_workers_temp_file_survives_another_processes_recovery(tmp_path: Path) -> None:
    """Recovery by another process leaves a live writer's temp file alone and removes it
    once that writer is dead; a temp file whose pid now belongs to a process started at
    another time (pid reuse) goes, and another machine's stays."""
    folder = tmp_path / "00000007"
    folder.mkdir()
    writer = subprocess.Popen(
        [sys.executable, "-c", LIVE_WRITER, str(folder / "overlay.jpg")],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
    )
    try:
        assert writer.stdout is not None
        live = folder / writer.stdout.readline().strip()
        owner = temp_owner(live.name)
        assert owner is not None and owner.pid == writer.pid
        reused = folder / live.name.replace(f"-{owner.start}-", f"-{owner.start + 1}-", 1)
        reused.write_bytes(b"left by an earlier process with the same pid")
        other_machine = "0123456789abcdef" if owner.machine != "0123456789abcdef" else "f" * 16
        foreign = folder / live.name.replace(f"-{owner.machine}-", f"-{other_machine}-", 1)
        foreign.write_bytes(b"another machine's, in flight as far as we can know")
        sweep = Outbox(tmp_path).remove_temp_files()
        assert (sweep.removed, sweep.kept_live, sweep.kept_unknown) == (1, 1, 1)
        assert live.is_file() and foreign.is_file() and not reused.exists()
    finally:
        writer.kill()
        writer.wait(timeout=30)
        for pipe in (writer.stdin, writer.stdout):
            if pipe is not None:
                pipe.close()
    sweep = Outbox(tmp_path).remove_temp_files()
    assert (sweep.removed, sweep.kept_live, sweep.kept_unknown) == (1, 0, 1)
    assert not live.exists() and foreign.is_file()


def test_temp_names_carry_their_writer() -> None:
    """write_atomic's temp names are hidden and name this process; other names name none."""
    name = temp_path(Path("/outbox/00000001/cervix_mask.png")).name
    assert name.startswith(TEMP_PREFIX) and name.endswith("-cervix_mask.png")
    assert temp_owner(name) == this_process()
    assert temp_owner(".tmp-0123abcd-overlay.jpg") is None
    assert temp_owner("overlay.jpg") is None


@pytest.fixture
def fsyncs(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, int, str]]:
    """Every os.fsync call, observed: (kind of descriptor, inode, path it had then)."""
    calls: list[tuple[str, int, str]] = []
    real = os.fsync

    def observed(fd: int) -> None:
        info = os.fstat(fd)
        kind = "dir" if stat.S_ISDIR(info.st_mode) else "file"
        calls.append((kind, info.st_ino, str(Path(f"/proc/self/fd/{fd}").readlink())))
        real(fd)

    monkeypatch.setattr(os, "fsync", observed)
    return calls


def test_an_output_and_every_folder_made_for_it_reach_the_disk(
    tmp_path: Path, fsyncs: list[tuple[str, int, str]]
) -> None:
    """The file is fsynced under its temp name (before it becomes visible), then its folder
    after the rename, and the parent of every folder created for it: a crash after the
    commit cannot lose an output the database names."""
    outbox = Outbox(tmp_path)
    folder = outbox.frame_dir(3, 2, 4)  # <outbox>/00000003/frame_0002: both new
    outbox.write_frame(
        folder,
        cervix_mask=np.zeros((8, 8), np.uint8),
        lesion_mask=np.zeros((8, 8), np.uint8),
        overlay_rgb=np.zeros((8, 8, 3), np.uint8),
        crop_rgb=None,
        jpeg_quality=90,
    )
    mask = folder / "cervix_mask.png"
    (file_call,) = [c for c in fsyncs if c[0] == "file" and c[1] == mask.stat().st_ino]
    assert Path(file_call[2]).name.startswith(TEMP_PREFIX)  # synced before the rename
    synced_dirs = {ino for kind, ino, _ in fsyncs if kind == "dir"}
    for needed in (folder, folder.parent, tmp_path):  # the folder, and each new one's parent
        assert needed.stat().st_ino in synced_dirs, needed
    order = [c for c in fsyncs if c == file_call or c[1] == folder.stat().st_ino]
    assert order.index(file_call) < len(order) - 1  # the folder is synced after the file
