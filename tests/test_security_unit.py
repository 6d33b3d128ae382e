"""Security in the small: what the inbox ignores and how it is listed, depth limits, names
that are not text, writes that would leave the outbox, declared-size limits, and the
systemd unit's exposure score."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import CliRunner
from pydicom.data import get_testdata_file
from support.hostile_corpus import dicom_jpeg_sof_bomb, j2k_siz_bomb, png_chunk_bomb
from support.paths import REPO
from support.photos import draw_photo, write_photo
from support.tools import require_executable

from cervixbatch.cli import main
from cervixbatch.config import load_config
from cervixbatch.errors import InputRejected, OutputError, RejectReason
from cervixbatch.imaging.frames import ReadLimits
from cervixbatch.imaging.reader import read_input
from cervixbatch.intake import ignored as ignored_module
from cervixbatch.intake.ignored import display_text, list_ignored
from cervixbatch.intake.rules import MAX_DEPTH, IgnoreReason, InputRule, depth_exceeded
from cervixbatch.model.pair import load_stages
from cervixbatch.outputs.outbox import Outbox
from cervixbatch.store.db import open_database
from cervixbatch.store.schema import Status
from cervixbatch.worker.runner import Runner

UNIT = REPO / "systemd" / "cervixbatch.service"
INSTALLED_BINARY = "/opt/cervixbatch/.venv/bin/cervixbatch"
MAX_EXPOSURE = 2.0


def _nested(root: Path, levels: int) -> Path:
    folder = root.joinpath(*[f"d{i}" for i in range(levels)])
    folder.mkdir(parents=True)
    return folder


@pytest.fixture
def messy_inbox(tmp_path: Path) -> Path:
    """An inbox with inputs and one entry of every ignored kind."""
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    (inbox / "a.jpg").write_bytes(b"a")
    (inbox / "sub").mkdir()
    (inbox / "sub" / "b.png").write_bytes(b"b")
    (inbox / ".hidden.jpg").write_bytes(b"h")
    (inbox / ".git").mkdir()
    (inbox / ".git" / "inside.jpg").write_bytes(b"g")
    (inbox / "copy.jpg.part").write_bytes(b"p")
    (inbox / "sub" / "~$lock.jpg").write_bytes(b"l")
    (tmp_path / "secret.jpg").write_bytes(b"s")
    (inbox / "link.jpg").symlink_to(tmp_path / "secret.jpg")
    (inbox / "etc").symlink_to("/etc", target_is_directory=True)
    os.mkfifo(inbox / "pipe.jpg")
    # MAX_DEPTH folders between the inbox and a file are walked; one more is too deep.
    (_nested(inbox / "deep", MAX_DEPTH - 1) / "ok.jpg").write_bytes(b"ok")
    (_nested(inbox / "deeper", MAX_DEPTH) / "far.jpg").write_bytes(b"far")
    (inbox / "outbox").mkdir()
    (inbox / "outbox" / "00000001").mkdir()
    return inbox


def test_listing_names_every_entry_the_scan_skips_and_why(messy_inbox: Path) -> None:
    """`list_ignored` names hidden, temp, symlink, FIFO, too-deep and own-folder entries
    with a sentence each, and none of the inputs."""
    entries = list_ignored(messy_inbox, excluded=[messy_inbox / "outbox"])
    got = {(e.path.as_posix(), e.reason) for e in entries}
    far = "/".join(["deeper", *[f"d{i}" for i in range(MAX_DEPTH)], "far.jpg"])
    assert got == {
        (".hidden.jpg", IgnoreReason.HIDDEN),
        (".git", IgnoreReason.HIDDEN),
        ("copy.jpg.part", IgnoreReason.TEMP_NAME),
        ("sub/~$lock.jpg", IgnoreReason.TEMP_NAME),
        ("link.jpg", IgnoreReason.SYMLINK),
        ("etc", IgnoreReason.SYMLINK),
        ("pipe.jpg", IgnoreReason.NOT_A_REGULAR_FILE),
        (far, IgnoreReason.TOO_DEEP),
        ("outbox", IgnoreReason.OWN_FOLDER),
    }
    assert all(len(e.detail) > 20 for e in entries)  # a sentence, not just the code
    assert "nothing under it" in next(e for e in entries if e.path.name == ".git").detail


def test_every_entry_is_either_walked_or_listed_as_ignored(messy_inbox: Path) -> None:
    """Each non-folder entry under the inbox is an input of the scan or lies at or under an
    ignored entry, never both and never neither: nothing is skipped silently."""
    walked = {p.relative_to(messy_inbox) for p in InputRule(messy_inbox).files()}
    ignored = {e.path for e in list_ignored(messy_inbox, excluded=[messy_inbox / "outbox"])}
    entries = {
        Path(folder, name).relative_to(messy_inbox)
        for folder, dirs, files in os.walk(messy_inbox)
        for name in files + [d for d in dirs if Path(folder, d).is_symlink()]
    }
    for entry in entries:
        covered = entry in ignored or any(p in ignored for p in entry.parents)
        assert (entry in walked) != covered, entry
    assert Path("deep", *[f"d{i}" for i in range(MAX_DEPTH - 1)], "ok.jpg") in walked


def test_events_and_the_walk_apply_one_rule(messy_inbox: Path) -> None:
    """For every regular file in a messy inbox, the daemon's event check accepts it exactly
    when the walk (scan, rescans, `process`) yields it: one rule, not two that drift."""
    (messy_inbox / "outbox" / "00000001" / "overlay.jpg").write_bytes(b"o")
    rule = InputRule(messy_inbox, excluded=[messy_inbox / "outbox"])
    walked = set(rule.files())
    regular = {
        Path(folder, name)
        for folder, _dirs, files in os.walk(messy_inbox)
        for name in files
        if Path(folder, name).is_file() and not Path(folder, name).is_symlink()
    }
    assert len(regular) >= 7
    for path in regular:
        assert rule.accepts(path) == (path in walked), path
    assert messy_inbox / "outbox" / "00000001" / "overlay.jpg" not in walked


def test_the_watcher_stops_where_the_scan_stops(tmp_path: Path) -> None:
    """The daemon's event filter refuses a file deeper than the scan goes (an inotify event
    for it must not register what a rescan would not)."""
    inbox = tmp_path / "inbox"
    edge = _nested(inbox, MAX_DEPTH) / "edge.jpg"
    far = _nested(inbox / "x", MAX_DEPTH) / "far.jpg"
    edge.write_bytes(b"e")
    far.write_bytes(b"f")
    inbox_filter = InputRule(inbox)
    assert inbox_filter.accepts(edge)
    assert not inbox_filter.accepts(far)
    assert depth_exceeded(far.relative_to(inbox)) and not depth_exceeded(edge.relative_to(inbox))
    assert list(inbox_filter.files()) == [edge]


def test_very_deep_nesting_is_listed_without_recursion(tmp_path: Path) -> None:
    """A tree 400 folders deep (past Python's habits, not past PATH_MAX) is walked to its
    limit and its bottom file listed as too deep, without a RecursionError."""
    inbox = tmp_path / "inbox"
    bottom = _nested(inbox, 400)
    (bottom / "bottom.jpg").write_bytes(b"x")
    assert list(InputRule(inbox).files()) == []
    (entry,) = list_ignored(inbox)
    assert entry.reason is IgnoreReason.TOO_DEEP
    assert entry.path.name == "bottom.jpg"


def test_an_unlistable_folder_is_listed(messy_inbox: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A folder that cannot be listed (permissions) is named, since its files go unseen."""
    real_scandir = os.scandir

    def scandir(path: str | Path) -> object:
        if Path(path).name == "sub":
            raise PermissionError(13, "Permission denied")
        return real_scandir(path)

    monkeypatch.setattr(ignored_module.os, "scandir", scandir)
    entries = list_ignored(messy_inbox, excluded=[messy_inbox / "outbox"])
    assert (Path("sub"), IgnoreReason.UNLISTABLE_FOLDER) in {(e.path, e.reason) for e in entries}


def test_listing_is_bounded_by_a_limit(tmp_path: Path) -> None:
    """A sender can fill the inbox with junk: the listing stops at `limit` entries."""
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    for i in range(50):
        (inbox / f".junk{i}").write_bytes(b"")
    assert len(list_ignored(inbox, limit=10)) == 10


def test_display_text_escapes_what_could_drive_a_terminal() -> None:
    """Control characters and undecodable bytes are shown escaped, printable text as is."""
    name = os.fsdecode(b"a\nb\x1b[31m\x07 \xff \xce\xa9.jpg")
    shown = display_text(Path(name))
    assert shown == "a\\nb\\x1b[31m\\x07 \\xff Ω.jpg"
    assert shown.isprintable()
    assert display_text(Path(name), control=False) == "a\nb\x1b[31m\x07 \\xff Ω.jpg"


def test_report_ignored_prints_a_safe_table_and_json(
    make_config: Callable[..., Path], tmp_path: Path
) -> None:
    """`report --ignored` prints one line per entry (a newline or escape in a name cannot
    forge a line or colour the terminal) or JSON with --format json; csv is refused."""
    config = make_config()
    inbox = tmp_path / "inbox"
    (inbox / ".evil\nlink.jpg\x1b[2J").write_bytes(b"x")
    (inbox / "good.jpg").write_bytes(b"y")
    (inbox / "to-outside.jpg").symlink_to(tmp_path / "config.toml")
    runner = CliRunner()
    result = runner.invoke(main, ["--config", str(config), "report", "--ignored"])
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert len(lines) == 4  # title, header, two entries
    assert "\x1b" not in result.stdout
    assert any("hidden" in line and ".evil\\nlink.jpg\\x1b[2J" in line for line in lines)
    assert any("symlink" in line and "to-outside.jpg" in line for line in lines)
    result = runner.invoke(
        main, ["--config", str(config), "report", "--ignored", "--format", "json"]
    )
    assert result.exit_code == 0
    data = json.loads(result.stdout)
    assert data["count"] == 2
    assert {(e["path"], e["reason"]) for e in data["ignored"]} == {
        (".evil\nlink.jpg\x1b[2J", "hidden"),
        ("to-outside.jpg", "symlink"),
    }
    result = runner.invoke(
        main, ["--config", str(config), "report", "--ignored", "--format", "csv"]
    )
    assert result.exit_code == 2


def test_a_name_that_is_not_utf8_is_rejected_by_path_not_crashing(
    make_config: Callable[..., Path], tmp_path: Path
) -> None:
    """A file whose name is not UTF-8 cannot be stored as text: it is rejected (unreadable,
    keyed by its path, so the same bytes under a proper name are still processed) instead
    of raising at every rescan."""
    config = load_config(make_config())
    inbox = tmp_path / "inbox"
    data = write_photo(tmp_path / "p.jpg", draw_photo(seed=1)).read_bytes()
    bad = Path(os.fsdecode(os.fsencode(inbox) + b"/caf\xe9 \xff.jpg"))
    bad.write_bytes(data)
    db = open_database(config.database.url)
    try:
        with Runner(config, db, load_stages(config)) as runner:
            first = runner.registrar.register(bad)
            assert first is not None
            assert first.status is Status.REJECTED
            again = runner.registrar.register(bad)
            assert again is not None
            assert (again.input_id, again.created) == (first.input_id, False)
            good = inbox / "cafe.jpg"
            good.write_bytes(data)
            renamed = runner.registrar.register(good)
            assert renamed is not None
            assert renamed.created
            assert renamed.status is Status.QUEUED
        with db.read_session() as session:
            from cervixbatch.store.schema import Input

            row = session.get(Input, first.input_id)
            assert row is not None
            assert row.reason == RejectReason.UNREADABLE.value
            assert row.detail is not None
            assert "UTF-8" in row.detail
            assert row.path.endswith("caf\\xe9 \\xff.jpg")
    finally:
        db.dispose()


def test_outbox_never_writes_through_a_symlink_or_dot_dot(tmp_path: Path) -> None:
    """A folder of the outbox replaced by a symlink out of it, or a path with `..`, is
    refused before anything is written."""
    outbox = Outbox(tmp_path / "outbox")
    (tmp_path / "outbox").mkdir()
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (tmp_path / "outbox" / "00000007").symlink_to(elsewhere, target_is_directory=True)
    with pytest.raises(OutputError, match="outside the outbox"):
        outbox.input_dir(7)
    with pytest.raises(OutputError, match="outside the outbox"):
        outbox.frame_dir(7, 0, 2)
    mask = draw_photo(32, 32)[:, :, 0]
    with pytest.raises(OutputError, match="outside the outbox"):
        outbox.write_frame(
            tmp_path / "outbox" / ".." / "escaped",
            cervix_mask=mask,
            lesion_mask=mask,
            overlay_rgb=draw_photo(32, 32),
            crop_rgb=None,
            jpeg_quality=80,
        )
    assert list(elsewhere.iterdir()) == []
    assert not (tmp_path / "escaped").exists()
    assert outbox.input_dir(8) == (tmp_path / "outbox" / "00000008").resolve()


def test_declared_pixels_of_all_frames_together_are_limited(tmp_path: Path) -> None:
    """A multi-frame DICOM within the per-frame and frame-count limits is still rejected
    when all its frames together would exceed the total-pixel limit, before decoding."""
    path = get_testdata_file("SC_rgb_rle_2frame.dcm", download=False)  # 2 x 100x100
    assert isinstance(path, str)
    assert len(read_input(Path(path), ReadLimits(max_total_pixels=20_000)).frames) == 2
    with pytest.raises(InputRejected) as info:
        read_input(Path(path), ReadLimits(max_total_pixels=19_999))
    assert info.value.reason is RejectReason.TOO_LARGE
    assert "2 frames of 100x100" in info.value.detail


@pytest.mark.parametrize(
    ("build", "reason"),
    [
        (png_chunk_bomb, RejectReason.TRUNCATED),
        (j2k_siz_bomb, RejectReason.CORRUPT),
        (dicom_jpeg_sof_bomb, RejectReason.CORRUPT),
    ],
)
def test_tiny_files_whose_inner_headers_claim_gigabytes_are_refused_at_once(
    tmp_path: Path, build: Callable[[], bytes], reason: RejectReason
) -> None:
    """A PNG chunk, a JPEG 2000 codestream or a JPEG frame inside DICOM that claims far more
    than the file or the DICOM header holds is rejected before a decoder allocates it (the
    fuzzer found each costing 3.6-12 GB and up to 60 s)."""
    path = tmp_path / "bomb"
    path.write_bytes(build())
    started = time.perf_counter()
    with pytest.raises(InputRejected) as info:
        read_input(path, ReadLimits(min_side=1))
    assert time.perf_counter() - started < 1.0
    assert info.value.reason is reason


def _exposure(unit_text: str, folder: Path) -> tuple[float, str]:
    copy = folder / "cervixbatch.service"
    copy.write_text(
        unit_text.replace(INSTALLED_BINARY, str(Path(sys.executable).parent / "cervixbatch")),
        encoding="utf-8",
    )
    result = subprocess.run(
        ["systemd-analyze", "security", "--offline=true", "--no-pager", str(copy)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    found = re.search(r"Overall exposure level for \S+: (\d+(?:\.\d+)?)", result.stdout)
    assert found, f"no exposure figure (rc={result.returncode}):\n{result.stdout}{result.stderr}"
    return float(found.group(1)), result.stdout


def test_systemd_unit_exposure_is_at_most_two(tmp_path: Path) -> None:
    """`systemd-analyze security --offline=true` rates the shipped unit's exposure at 2.0
    or less (0 is fully sandboxed, 10 not at all)."""
    require_executable("systemd-analyze", install="apt-get install systemd")
    exposure, report = _exposure(UNIT.read_text(encoding="utf-8"), tmp_path)
    assert exposure <= MAX_EXPOSURE, report
    # The parser reads a real figure: an unhardened unit scores far worse.
    bare = "[Service]\nExecStart=/bin/true\n"
    assert _exposure(bare, tmp_path)[0] > 5.0
