"""`cervixbatch backfill`'s sources and its skip rule, with the reference engine (`--engine
local`, today's runner) and the simulated device: manifests, rejections with reasons, the
skip by sha256 for the same model pair and the next run for another pair."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner
from support.photos import draw_photo, write_photo

from cervixbatch.backfill.sources import ManifestError, SourceRejection, expand_sources
from cervixbatch.cli import main


def _config(folder: Path, device_ms: float) -> Path:
    (folder / "inbox").mkdir(parents=True, exist_ok=True)
    config = folder / "config.toml"
    config.write_text(
        '[paths]\ninbox = "inbox"\noutbox = "outbox"\n'
        '[database]\nurl = "sqlite:///state/cervixbatch.db"\n'
        f"[batch]\nsize = 4\n[models]\nsimulate_device_ms = {device_ms}\n"
        '[logging]\nformat = "json"\n',
        encoding="utf-8",
    )
    return config


def _photos(folder: Path, count: int) -> list[Path]:
    paths = []
    for index in range(count):
        rgb = draw_photo(96, 72, seed=index)
        rgb[0, 0] = (index, 3, 5)  # distinct bytes
        paths.append(write_photo(folder / f"p{index}.png", rgb))
    return paths


def _backfill(config: Path, *args: str) -> tuple[int, dict[str, object], str]:
    result = CliRunner().invoke(
        main,
        ["--config", str(config), "backfill", "--engine", "local", "--json", *args],
        catch_exceptions=False,
    )
    lines = [line for line in result.stdout.splitlines() if line.startswith("{")]
    return result.exit_code, json.loads(lines[-1]) if lines else {}, result.stderr


def test_manifest_lines_that_are_not_files_are_rejections(tmp_path: Path) -> None:
    """A line manifest and a CSV manifest: listed files come out as paths (relative to the
    manifest), a missing path and a folder as rejections with their reasons."""
    photos = _photos(tmp_path / "photos", 2)
    lines = tmp_path / "list.txt"
    lines.write_text("# a comment\nphotos/p0.png\n\nphotos/missing.png\nphotos\n", "utf-8")
    table = tmp_path / "list.csv"
    table.write_text(f"id,path\n1,{photos[1]}\n2,\n", encoding="utf-8")
    found = list(expand_sources([lines, table]))
    assert found[0] == photos[0].resolve()
    assert found[3] == photos[1]
    missing, folder = found[1], found[2]
    assert isinstance(missing, SourceRejection)
    assert (missing.reason.value, missing.where) == ("unreadable", f"{lines}:4")
    assert isinstance(folder, SourceRejection)
    assert folder.reason.value == "not_a_regular_file"
    assert len(found) == 4


def test_a_csv_manifest_without_a_path_column_is_an_error(tmp_path: Path) -> None:
    """A CSV manifest with no `path` column is refused as a whole, naming the column."""
    table = tmp_path / "list.csv"
    table.write_text("id,file\n1,a.png\n", encoding="utf-8")
    with pytest.raises(ManifestError, match="'path' column"):
        list(expand_sources([table]))


def test_backfill_skips_done_inputs_and_reruns_another_pair(tmp_path: Path) -> None:
    """A backfill of a folder and a manifest (one line not a file) ends with every photo
    done and the bad line rejected by reason, exit 0; a copy of the photos is then skipped
    by sha256 (no new input); a run with another model pair runs them again (run 2)."""
    photos = _photos(tmp_path / "photos", 6)
    manifest = tmp_path / "more.txt"
    manifest.write_text(f"{photos[0]}\n{tmp_path / 'gone.png'}\n", encoding="utf-8")
    config = _config(tmp_path, 1.0)
    code, first, err = _backfill(config, str(tmp_path / "photos"), str(manifest))
    assert code == 0, err
    assert (first["inputs"], first["done"], first["new"]) == (6, 6, 6)
    assert first["rejected"] == {"unreadable": 1}
    assert "rejected by reason: unreadable 1" in err

    copy = tmp_path / "copy"
    copy.mkdir()
    for photo in photos:
        (copy / photo.name).write_bytes(photo.read_bytes())
    code, again, err = _backfill(config, str(copy))
    assert code == 0, err
    assert (again["new"], again["already_done"], again["committed"]) == (0, 6, 0)

    other = _config(tmp_path, 2.0)  # another simulated device: another model pair
    code, rerun, err = _backfill(other, str(copy))
    assert code == 0, err
    assert (rerun["already_done"], rerun["requeued_other_pair"], rerun["committed"]) == (0, 6, 6)
    assert len(list((tmp_path / "outbox").glob("*/run_0002/overlay.jpg"))) == 6
