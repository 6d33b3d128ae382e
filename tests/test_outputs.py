"""The outbox: atomic writes, names from ids only, nothing outside it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from cervixbatch.errors import OutputError
from cervixbatch.outputs.outbox import TEMP_PREFIX, Outbox, write_atomic


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
    """Temp files a crash left in the outbox are removed; real outputs stay."""
    (tmp_path / "00000001").mkdir()
    (tmp_path / "00000001" / f"{TEMP_PREFIX}abc-overlay.jpg").write_bytes(b"half")
    (tmp_path / "00000001" / "overlay.jpg").write_bytes(b"whole")
    assert Outbox(tmp_path).remove_temp_files() == 1
    assert [p.name for p in (tmp_path / "00000001").iterdir()] == ["overlay.jpg"]
