"""The one atomic writer's three shapes: bytes, a stream, a temp name for writers that
go by name; and the exclusive placement archives use."""

from __future__ import annotations

from pathlib import Path

import pytest

from cervixbatch.errors import OutputError
from cervixbatch.outputs.atomic import (
    PLAIN_MODE,
    TEMP_PREFIX,
    atomic_file,
    atomic_path,
    temp_owner,
    write_atomic,
)
from cervixbatch.owner import this_process


def test_a_name_written_by_a_library_appears_only_once_the_block_ends(tmp_path: Path) -> None:
    """``atomic_path`` hands out an owned temp name ending in the final one (Keras wants
    its suffix); the final name appears, whole, only when the block ends."""
    target = tmp_path / "model.keras"
    with atomic_path(target) as temp:
        assert temp.parent == tmp_path and temp.name.endswith("-model.keras")
        assert temp.name.startswith(TEMP_PREFIX) and temp_owner(temp.name) == this_process()
        temp.write_bytes(b"weights")
        assert not target.exists()
    assert target.read_bytes() == b"weights"
    assert [p.name for p in tmp_path.iterdir()] == ["model.keras"]


def test_a_failed_block_leaves_the_old_file_and_no_temp(tmp_path: Path) -> None:
    """An error inside the block removes the temp file and leaves the old file as it was."""
    target = tmp_path / "report.csv"
    target.write_bytes(b"old")
    with pytest.raises(RuntimeError, match="stream"):
        _fail_while_writing(target, stream=True)
    with pytest.raises(RuntimeError, match="name"):
        _fail_while_writing(target, stream=False)
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["report.csv"]


def _fail_while_writing(target: Path, *, stream: bool) -> None:
    if stream:
        with atomic_file(target) as handle:
            handle.write(b"half of a new one")
            raise RuntimeError("the writer of the stream failed")
    with atomic_path(target) as temp:
        temp.write_bytes(b"half")
        raise RuntimeError("the writer by name failed")


def test_an_exclusive_write_never_replaces_a_file(tmp_path: Path) -> None:
    """With ``exclusive``, a name already taken is a FileExistsError and keeps its file."""
    target = tmp_path / "00000001-photo.jpg"
    with atomic_file(target, exclusive=True) as stream:
        stream.write(b"first")
    with pytest.raises(FileExistsError), atomic_file(target, exclusive=True) as stream:
        stream.write(b"second")
    assert target.read_bytes() == b"first"
    assert [p.name for p in tmp_path.iterdir()] == [target.name]


def test_modes_are_the_outbox_s_or_the_umask_s(tmp_path: Path) -> None:
    """Results are 0640 by default; tools' files (PLAIN_MODE) get what open() would give."""
    write_atomic(tmp_path / "mask.png", b"x")
    write_atomic(tmp_path / "photo.jpg", b"x", mode=PLAIN_MODE)
    plain = tmp_path / "plain"
    plain.write_bytes(b"x")
    assert (tmp_path / "mask.png").stat().st_mode & 0o777 == 0o640
    assert (tmp_path / "photo.jpg").stat().st_mode & 0o777 == plain.stat().st_mode & 0o777


def test_a_refused_write_names_the_file(tmp_path: Path) -> None:
    """A folder that is not there is an OutputError naming the file, not a bare OSError."""
    with pytest.raises(OutputError, match=r"cannot write x\.bin in .*missing"):
        write_atomic(tmp_path / "missing" / "x.bin", b"x")
