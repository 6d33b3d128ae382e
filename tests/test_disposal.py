"""What happens to an input file once the database says done or rejected (`watch.after`)."""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner
from support.photos import draw_photo, write_photo

from cervixbatch.cli import main
from cervixbatch.config import AfterAction
from cervixbatch.delivery.disposal import HELD_PREFIX, dispose_of, restore_held_files
from cervixbatch.intake.discovery import hash_file, identify
from cervixbatch.outputs.atomic import TEMP_PREFIX, temp_owner
from cervixbatch.owner import this_process
from cervixbatch.store import queue
from cervixbatch.store.db import Database, open_database


def _process(config: Path, *paths: Path) -> dict[str, object]:
    runner = CliRunner()
    result = runner.invoke(main, ["--config", str(config), "process", *map(str, paths)])
    assert result.exit_code == 0, result.output
    return json.loads(
        runner.invoke(main, ["--config", str(config), "report", "--format", "json"]).stdout
    )


def test_archive_moves_inbox_files_and_never_overwrites(
    tmp_path: Path, make_config: Callable[..., Path]
) -> None:
    """With after = "archive", done and rejected inputs in the inbox move to the archive
    under id-prefixed names (two files of the same name both survive); files elsewhere stay."""
    config = make_config(watch__after="archive")
    inbox = tmp_path / "inbox"
    write_photo(inbox / "a" / "same.png", draw_photo(seed=1))
    write_photo(inbox / "b" / "same.png", draw_photo(seed=2))
    (inbox / "junk.jpg").write_bytes(b"not an image")
    outside = write_photo(tmp_path / "elsewhere" / "c.png", draw_photo(seed=3))
    report = _process(config, inbox, outside)
    archived = sorted(p.name for p in (tmp_path / "archive").iterdir())
    assert len(archived) == 3
    assert sum(name.endswith("-same.png") for name in archived) == 2
    assert not list(inbox.rglob("*.png")) and not (inbox / "junk.jpg").exists()
    assert outside.is_file()  # never touched outside the inbox
    statuses = sorted(item["status"] for item in report["items"])  # type: ignore[union-attr]
    assert statuses == ["done", "done", "done", "rejected"]


def test_delete_removes_finished_inbox_files(
    tmp_path: Path, make_config: Callable[..., Path]
) -> None:
    """With after = "delete", a finished input's file is deleted from the inbox."""
    config = make_config(watch__after="delete")
    photo = write_photo(tmp_path / "inbox" / "x.png", draw_photo(seed=4))
    report = _process(config, tmp_path / "inbox")
    assert not photo.exists()
    assert [item["status"] for item in report["items"]] == ["done"]  # type: ignore[union-attr]


def test_keep_leaves_files_and_does_not_read_them_again(
    tmp_path: Path, make_config: Callable[..., Path]
) -> None:
    """With after = "keep", files stay, and a second pass recognises them without a new item."""
    config = make_config()
    photo = write_photo(tmp_path / "inbox" / "y.png", draw_photo(seed=5))
    _process(config, tmp_path / "inbox")
    report = _process(config, tmp_path / "inbox")
    assert photo.is_file()
    assert report["summary"]["total"] == 1  # type: ignore[index]


# -- "is this file mine to delete?" ----------------------------------------------------


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Database]:
    database = open_database(f"sqlite:///{tmp_path}/state/disposal.db")
    yield database
    database.dispose()


def _registered(db: Database, path: Path) -> int:
    """Registers ``path`` as the queue does, with the identity it has now."""
    identity = identify(path)
    assert identity is not None
    with db.session() as session:
        return queue.register(
            session,
            sha256=hash_file(path),
            path=str(path),
            size=identity.size,
            mtime_ns=identity.mtime_ns,
            inode=identity.inode,
        ).input_id


def _dispose(db: Database, tmp_path: Path, input_id: int, reason: str | None = None) -> int:
    return dispose_of(
        input_id,
        reason=reason,
        inbox=tmp_path / "inbox",
        archive=tmp_path / "archive",
        after=AfterAction.DELETE,
        db=db,
    )


@pytest.mark.parametrize("reason", ["truncated", "empty_file", "unreadable", "changed"])
def test_a_file_that_may_still_be_written_is_never_disposed_of(
    store: Database, tmp_path: Path, reason: str
) -> None:
    """Rejections that may mean "the copy is not finished" keep the file in the inbox."""
    photo = write_photo(tmp_path / "inbox" / "half.png", draw_photo(seed=6))
    input_id = _registered(store, photo)
    assert _dispose(store, tmp_path, input_id, reason) == 0
    assert photo.is_file()


def test_a_file_replaced_since_registration_is_not_the_one_disposed_of(
    store: Database, tmp_path: Path
) -> None:
    """A new file at the registered path (another inode, even with the same size and
    mtime, as `cp -p` of a re-export leaves it) stays; so does a file that changed."""
    photo = write_photo(tmp_path / "inbox" / "x.png", draw_photo(seed=7))
    input_id = _registered(store, photo)
    seen = photo.stat()
    replacement = photo.with_name("x.png.part")
    replacement.write_bytes(photo.read_bytes()[:-1] + b"\0")  # same size, other bytes
    os.utime(replacement, ns=(seen.st_atime_ns, seen.st_mtime_ns))
    replacement.rename(photo)
    assert _dispose(store, tmp_path, input_id) == 0
    assert photo.read_bytes().endswith(b"\0")
    other = write_photo(tmp_path / "inbox" / "y.png", draw_photo(seed=8))
    other_id = _registered(store, other)
    with other.open("ab") as handle:
        handle.write(b"more")
    assert _dispose(store, tmp_path, other_id) == 0
    assert other.is_file()
    assert [p.name for p in (tmp_path / "inbox").iterdir() if p.name.startswith(".")] == []


def test_a_disposal_cut_short_by_a_crash_is_put_back_at_the_next_start(
    store: Database, tmp_path: Path
) -> None:
    """A file moved aside by a process that died before deleting it is restored under its
    own name; one moved aside by a live process is left to it."""
    inbox = tmp_path / "inbox"
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    gone = dataclasses.replace(this_process(), pid=int(dead)).token()
    inbox.mkdir()
    (inbox / f"{HELD_PREFIX}{gone}-0123abcd-photo.jpg").write_bytes(b"a photo")
    live = inbox / f"{HELD_PREFIX}{this_process().token()}-4567cdef-other.jpg"
    live.write_bytes(b"being disposed of right now")
    assert restore_held_files(inbox) == 1
    assert (inbox / "photo.jpg").read_bytes() == b"a photo"
    assert live.is_file()


def test_an_archived_file_is_durable_before_the_inbox_copy_goes(
    store: Database, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The archive folder is fsynced after the link and before the inbox file is
    unlinked, and the inbox folder after it: a crash never leaves the photo in neither."""
    photo = write_photo(tmp_path / "inbox" / "z.png", draw_photo(seed=9))
    input_id = _registered(store, photo)
    steps: list[tuple[str, str]] = []
    real_fsync, real_unlink = os.fsync, Path.unlink

    def fsync(fd: int) -> None:
        steps.append(("fsync", str(Path(f"/proc/self/fd/{fd}").readlink())))
        real_fsync(fd)

    def unlink(self: Path, missing_ok: bool = False) -> None:
        steps.append(("unlink", str(self.parent)))
        real_unlink(self, missing_ok=missing_ok)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(Path, "unlink", unlink)
    assert (
        dispose_of(
            input_id,
            reason=None,
            inbox=tmp_path / "inbox",
            archive=tmp_path / "archive",
            after=AfterAction.ARCHIVE,
            db=store,
        )
        == 1
    )
    archive, inbox = str((tmp_path / "archive").resolve()), str((tmp_path / "inbox").resolve())
    assert ("fsync", archive) in steps and ("unlink", inbox) in steps
    assert steps.index(("fsync", archive)) < steps.index(("unlink", inbox))
    assert steps[-1] == ("fsync", inbox)
    assert not photo.exists() and len(list((tmp_path / "archive").iterdir())) == 1


@pytest.fixture
def other_filesystem(tmp_path: Path) -> Iterator[Path]:
    """A folder on another filesystem than ``tmp_path`` (tmpfs), where one exists."""
    shm = Path("/dev/shm")
    if not shm.is_dir() or shm.stat().st_dev == tmp_path.stat().st_dev:
        pytest.skip("no second filesystem to archive onto")
    folder = Path(tempfile.mkdtemp(prefix="cervixbatch-test-", dir=shm))
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


def test_an_archive_on_another_filesystem_never_holds_part_of_a_photo(
    store: Database, tmp_path: Path, other_filesystem: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Across filesystems the photo is copied under a temp name that names this process
    (the owner sweep can tell a crash's leftover), fsynced, and only then given its
    archive name; the inbox file goes after that."""
    photo = write_photo(tmp_path / "inbox" / "w.png", draw_photo(seed=10))
    original = photo.read_bytes()
    input_id = _registered(store, photo)
    archive = other_filesystem / "archive"
    synced: list[tuple[Path, list[str]]] = []
    real_fsync = os.fsync

    def fsync(fd: int) -> None:
        path = Path(f"/proc/self/fd/{fd}").readlink()
        synced.append((path, sorted(p.name for p in archive.iterdir())))
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    assert (
        dispose_of(
            input_id,
            reason=None,
            inbox=tmp_path / "inbox",
            archive=archive,
            after=AfterAction.ARCHIVE,
            db=store,
        )
        == 1
    )
    (archived,) = archive.iterdir()
    assert archived.read_bytes() == original and not photo.exists()
    (copy_synced,) = [(p, seen) for p, seen in synced if p.parent == archive.resolve()]
    temp, archive_then = copy_synced
    assert temp.name.startswith(TEMP_PREFIX) and temp.name.endswith(archived.name)
    assert temp_owner(temp.name) == this_process()
    assert archive_then == [temp.name]  # nothing under the archive name while it was written
