"""Disk trouble never loses an input: the watermark pauses work, ENOSPC requeues it."""

from __future__ import annotations

import errno
import json
import os
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import CliRunner
from support.photos import draw_photo, write_photo

from cervixbatch.cli import main
from cervixbatch.outputs import atomic as outputs


def _invoke(config: Path, *args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, ["--config", str(config), *args], catch_exceptions=False)
    return result.exit_code, result.stdout, result.stderr


def _items(config: Path) -> list[dict[str, object]]:
    return json.loads(_invoke(config, "report", "--format", "json")[1])["items"]


def test_watermark_pauses_work_until_space_returns(
    tmp_path: Path, make_config: Callable[..., Path]
) -> None:
    """Below the free-space watermark nothing is claimed: inputs stay queued, `process`
    says why and exits 1; with the threshold met they are processed."""
    drop = tmp_path / "drop"
    write_photo(drop / "a.png", draw_photo(seed=1))
    free_mb = os.statvfs(tmp_path).f_bavail * os.statvfs(tmp_path).f_frsize / 2**20
    starved = make_config(limits__min_free_mb=free_mb * 10)
    code, _, err = _invoke(starved, "process", str(drop))
    assert code == 1
    assert "1 left queued (disk space low" in err
    assert [item["status"] for item in _items(starved)] == ["queued"]
    assert not any((tmp_path / "outbox").rglob("*.png"))
    relaxed = make_config(limits__min_free_mb=1.0)
    code, _, _ = _invoke(relaxed, "process", str(drop))
    assert code == 0
    assert [item["status"] for item in _items(relaxed)] == ["done"]


def test_enospc_while_writing_requeues_without_spending_an_attempt(
    tmp_path: Path, make_config: Callable[..., Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """ENOSPC at the write call leaves the input queued with its attempts intact and no
    half-written or temp file; once the disk has room the input is processed."""
    config = make_config(batch__max_attempts=1)
    drop = tmp_path / "drop"
    write_photo(drop / "a.png", draw_photo(seed=2))
    real_write = os.write

    def full_disk(fd: int, data: bytes) -> int:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(outputs.os, "write", full_disk)
    code, _, err = _invoke(config, "process", str(drop))
    assert code == 1, err
    assert "disk error" in err, err[-3000:]
    (item,) = _items(config)
    assert item["status"] == "queued" and item["attempts"] == 0
    assert item["reason"] == "output_error" and "No space left" in str(item["detail"])
    outbox = tmp_path / "outbox"
    assert not [p for p in outbox.rglob("*") if p.is_file()]
    monkeypatch.setattr(outputs.os, "write", real_write)
    code, _, _ = _invoke(config, "process", str(drop))
    assert code == 0
    (item,) = _items(config)
    assert item["status"] == "done" and item["results"]
