"""No orphaned or stale outputs, logs without error text, spreadsheet-safe CSV, and a JPEG
2000 size check that rejects what it cannot read."""

from __future__ import annotations

import csv
import io
import json
import sqlite3
import struct
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pydicom
import pytest
from click.testing import CliRunner
from pydicom.data import get_testdata_file
from pydicom.encaps import encapsulate, generate_frames
from structlog.testing import capture_logs
from support.photos import draw_photo, write_photo

from cervixbatch.cli import main
from cervixbatch.config import load_config
from cervixbatch.errors import InputRejected, RejectReason
from cervixbatch.imaging.frames import ReadLimits
from cervixbatch.imaging.reader import read_input
from cervixbatch.model.pair import load_stages
from cervixbatch.store.db import open_database
from cervixbatch.worker.runner import Runner


def _run(config: Path, *args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, ["--config", str(config), *args], catch_exceptions=False)
    return result.exit_code, result.stdout, result.stderr


def _items(config: Path) -> list[dict[str, Any]]:
    code, out, err = _run(config, "report", "--format", "json")
    assert code == 0, err
    return list(json.loads(out)["items"])


def _files(folder: Path) -> set[Path]:
    return {p for p in folder.rglob("*") if p.is_file()} if folder.exists() else set()


def test_a_reprocessed_input_leaves_no_stale_outputs(
    tmp_path: Path, make_config: Callable[..., Path]
) -> None:
    """An input processed again (requeued, as by a reprocess or a recovery) whose new run
    finds no cervix keeps no crop.jpg of the earlier run: the outbox holds exactly the
    files its result row names."""
    drop = tmp_path / "drop"
    write_photo(drop / "exam.png", draw_photo(seed=11))
    config = make_config()
    assert _run(config, "process", str(drop))[0] == 0
    (item,) = _items(config)
    assert Path(item["results"][0]["outputs"]["crop"]).is_file()

    with sqlite3.connect(tmp_path / "state" / "cervixbatch.db") as connection:
        connection.execute("DELETE FROM results")
        connection.execute("UPDATE inputs SET status = 'queued'")
    config = make_config(models__min_cervix_fraction=1.0)  # no cervix is found any more
    assert _run(config, "process", str(drop))[0] == 0

    (item,) = _items(config)
    (result,) = item["results"]
    assert item["status"] == "done" and not result["cervix_found"]
    assert result["outputs"]["crop"] is None
    named = {Path(p) for p in result["outputs"].values() if p}
    assert _files(tmp_path / "outbox") == named


def test_a_failed_input_keeps_no_outputs_and_its_error_text_stays_out_of_the_logs(
    tmp_path: Path, make_config: Callable[..., Path]
) -> None:
    """An input whose overlay cannot be written ends failed with no mask left in the
    outbox; the log events name it by id and reason code only, while the database detail
    keeps the full error (which names outbox paths)."""
    config = load_config(make_config(batch__max_attempts=1))
    photo = write_photo(tmp_path / "inbox" / "exam.png", draw_photo(seed=12))
    db = open_database(config.database.url)
    try:
        with Runner(config, db, load_stages(config)) as runner:
            registration = runner.registrar.register(photo)
            assert registration is not None
            # A folder where the overlay file must go: the rename onto it fails (EISDIR).
            blocker = runner.outbox.input_dir(registration.input_id) / "overlay.jpg"
            blocker.mkdir(parents=True)
            with capture_logs() as events:
                outcome = runner.process_until_empty()
    finally:
        db.dispose()
    assert outcome.failed == 1
    assert _files(tmp_path / "outbox") == set(), "a failed input's masks were left behind"
    (item,) = _items(config.source or Path())
    assert (item["status"], item["reason"]) == ("failed", "output_error")
    assert "overlay.jpg" in item["detail"] and str(tmp_path) in item["detail"]
    (failed,) = [e for e in events if e["event"] == "input_failed"]
    assert failed["input_id"] == registration.input_id and failed["reason"] == "output_error"
    leaked = [e for e in events if str(tmp_path) in repr(e) or "overlay.jpg" in repr(e)]
    assert not leaked, leaked


@pytest.mark.parametrize(
    "name", ["=HYPERLINK(1).png", "+SUM(1,1).png", "-2+3.png", "@SUM(1).png", "\tcmd.png"]
)
def test_csv_report_neutralises_cells_a_spreadsheet_would_evaluate(
    name: str, tmp_path: Path, make_config: Callable[..., Path]
) -> None:
    """A file name starting with =, +, -, @ or a tab reaches the CSV report prefixed with a
    single quote (shown as text by spreadsheets); numbers stay numbers."""
    config = make_config()
    drop = tmp_path / "inbox"
    write_photo(drop / name, draw_photo(seed=13))
    assert _run(config, "process", str(drop))[0] == 0
    code, out, _ = _run(config, "report", "--format", "csv")
    assert code == 0
    (row,) = list(csv.DictReader(io.StringIO(out)))
    assert row["path"] == "'" + name
    assert float(row["cervix_fraction"]) >= 0.0 and not row["cervix_fraction"].startswith("'")


def _j2k_dicom(tmp_path: Path, frame: bytes) -> Path:
    """pydicom's JPEG 2000 file (1024 x 256, 16-bit grey) with ``frame`` as its codestream."""
    source = get_testdata_file("JPEG2000.dcm", download=False)
    assert isinstance(source, str)
    ds = pydicom.dcmread(source)
    ds.PixelData = encapsulate([frame])
    path = tmp_path / "j2k.dcm"
    ds.save_as(path)
    return path


def _j2k_codestream() -> bytes:
    source = get_testdata_file("JPEG2000.dcm", download=False)
    assert isinstance(source, str)
    return next(generate_frames(pydicom.dcmread(source).PixelData, number_of_frames=1))


def _jp2(codestream: bytes, *, padding: int) -> bytes:
    """``codestream`` in a JP2 file whose header boxes (an XML box of ``padding`` bytes)
    put the SIZ marker beyond the first 4 kB."""

    def box(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", 8 + len(body)) + kind + body

    header = box(b"ihdr", struct.pack(">IIHBBBB", 1024, 256, 1, 15, 7, 0, 0))
    header += box(b"colr", struct.pack(">BBBI", 1, 0, 0, 17))
    return (
        box(b"jP  ", b"\r\n\x87\n")
        + box(b"ftyp", b"jp2 \x00\x00\x00\x00jp2 ")
        + box(b"jp2h", header)
        + box(b"xml ", b"<x/>" + b" " * padding)
        + box(b"jp2c", codestream)
    )


def test_a_j2k_codestream_the_size_check_cannot_read_is_rejected_before_decoding(
    tmp_path: Path,
) -> None:
    """A JPEG 2000 frame whose SIZ marker segment is malformed is rejected by the bomb
    check itself, saying so, instead of being handed to the decoder unchecked."""
    frame = bytearray(_j2k_codestream())
    struct.pack_into(">H", frame, 4, 20)  # Lsiz: 20, where SIZ needs at least 41
    with pytest.raises(InputRejected) as info:
        read_input(_j2k_dicom(tmp_path, bytes(frame)), ReadLimits())
    assert info.value.reason is RejectReason.CORRUPT
    assert "image header that can be read" in info.value.detail


def test_a_jp2_wrapped_codestream_is_size_checked_past_the_first_4_kb(tmp_path: Path) -> None:
    """A codestream wrapped in a JP2 file whose SIZ lies past the first 4 kB is still
    checked: one declaring a larger image than the DICOM header is refused by the check,
    and one that matches decodes."""
    codestream = _j2k_codestream()
    bomb = bytearray(codestream)
    struct.pack_into(">I", bomb, 8, 512)  # Xsiz: twice the 256 columns the header declares
    with pytest.raises(InputRejected) as info:
        read_input(_j2k_dicom(tmp_path, _jp2(bytes(bomb), padding=6000)), ReadLimits())
    assert "declares a larger image" in info.value.detail
    decoded = read_input(_j2k_dicom(tmp_path, _jp2(codestream, padding=6000)), ReadLimits())
    assert decoded.frames[0].rgb.shape == (1024, 256, 3)
