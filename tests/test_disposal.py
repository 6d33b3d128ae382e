"""What happens to an input file once the database says done or rejected (`watch.after`)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from click.testing import CliRunner
from conftest import draw_photo, write_photo

from cervixbatch.cli import main


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
