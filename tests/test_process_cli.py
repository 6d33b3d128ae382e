"""`cervixbatch process` and `report` end to end, as a new user runs them."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

import cv2
import pytest
from click.testing import CliRunner
from support.photos import draw_photo, write_photo

from cervixbatch.cli import main


def _run(config: Path, *args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, ["--config", str(config), *args], catch_exceptions=False)
    return result.exit_code, result.stdout, result.stderr


@pytest.fixture(scope="module")
def synth_set(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("synth")
    result = CliRunner().invoke(
        main, ["synth", "--count", "20", "--out", str(out), "--seed", "7", "--size", "400x300"]
    )
    assert result.exit_code == 0, result.output
    return out


def test_synth_then_process_then_report(synth_set: Path, make_config: Callable[..., Path]) -> None:
    """20 synthetic photos go through `process`; the JSON report lists 20 done items whose
    masks have exactly the size of their photos, with absolute output paths."""
    config = make_config()
    code, _, err = _run(config, "process", str(synth_set / "images"))
    assert code == 0, err
    code, out, _ = _run(config, "report", "--format", "json")
    assert code == 0
    report = json.loads(out)
    assert report["summary"]["total"] == 20 == report["summary"]["done"]
    assert len(report["items"]) == 20
    for item in report["items"]:
        assert item["status"] == "done" and item["reason"] is None
        photo = cv2.imread(str(synth_set / "images" / Path(item["path"]).name))
        (result,) = item["results"]
        for name in ("cervix_mask", "lesion_mask"):
            path = Path(result["outputs"][name])
            assert path.is_absolute()
            mask = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
            assert mask.shape == photo.shape[:2]
            assert set(mask.ravel().tolist()) <= {0, 255}
        assert Path(result["outputs"]["overlay"]).is_file()
        assert 0.0 <= result["cervix_fraction"] <= 1.0
    ids = [item["id"] for item in report["items"]]
    assert ids == sorted(ids, reverse=True)  # newest first


def test_process_never_takes_its_own_outputs(
    tmp_path: Path, make_config: Callable[..., Path]
) -> None:
    """`process` on a folder that holds the outbox (run twice) takes the photos in it and
    none of the masks and overlays it wrote there itself."""
    drop = tmp_path / "drop"
    write_photo(drop / "a.jpg", draw_photo(seed=1))
    config = make_config(paths__outbox=str(drop / "outbox"))
    for _ in range(2):
        code, _, err = _run(config, "process", str(drop))
        assert code == 0, err
    assert list((drop / "outbox").rglob("*.png"))  # the outputs are there, inside the drop
    _, out, _ = _run(config, "report", "--format", "json")
    assert json.loads(out)["summary"]["total"] == 1


def test_duplicate_bytes_are_one_item_with_two_sightings(
    tmp_path: Path, make_config: Callable[..., Path]
) -> None:
    """The same bytes dropped under two names are one item, seen twice."""
    config = make_config()
    folder = tmp_path / "drop"
    write_photo(folder / "a.jpg", draw_photo(seed=3))
    shutil.copy(folder / "a.jpg", folder / "same bytes, other name.jpg")
    code, _, _ = _run(config, "process", str(folder))
    assert code == 0
    report = json.loads(_run(config, "report", "--format", "json")[1])
    assert report["summary"]["total"] == 1
    (item,) = report["items"]
    assert len(item["sightings"]) == 2
    # processing the folder again reads nothing new and adds no item
    code, _, err = _run(config, "process", str(folder))
    assert code == 0 and "2 already known" in err
    assert json.loads(_run(config, "report", "--format", "json")[1])["summary"]["total"] == 1


def test_rejected_inputs_are_accounted_for_with_exit_0(
    tmp_path: Path, make_config: Callable[..., Path]
) -> None:
    """A bad file is rejected with a reason and a sentence; process still exits 0."""
    config = make_config()
    folder = tmp_path / "drop"
    write_photo(folder / "good.png", draw_photo(seed=4))
    (folder / "notes.jpg").write_text("this is not a photo")
    (folder / "empty.dcm").write_bytes(b"")
    code, _, _ = _run(config, "process", str(folder))
    assert code == 0
    report = json.loads(_run(config, "report", "--format", "json")[1])
    by_name = {Path(i["path"]).name: i for i in report["items"]}
    assert by_name["good.png"]["status"] == "done"
    assert by_name["notes.jpg"]["status"] == "rejected"
    assert by_name["notes.jpg"]["reason"] == "unsupported_format"
    assert by_name["empty.dcm"]["reason"] == "empty_file"
    assert all(i["detail"] for i in report["items"] if i["status"] == "rejected")
    assert report["summary"] == {
        "total": 3,
        "queued": 0,
        "processing": 0,
        "done": 1,
        "rejected": 2,
        "failed": 0,
    }


def test_outputs_exit_1_when_an_input_fails(
    tmp_path: Path, make_config: Callable[..., Path]
) -> None:
    """When outputs cannot be written, the input fails after its retries and exit is 1."""
    config = make_config(batch__max_attempts=2)
    folder = tmp_path / "drop"
    write_photo(folder / "x.jpg", draw_photo(seed=5))
    outbox = tmp_path / "outbox"
    outbox.mkdir()
    (outbox / "00000001").write_text("a file where input 1's folder must go")  # works as root
    code, _, _ = _run(config, "process", str(folder))
    assert code == 1
    report = json.loads(_run(config, "report", "--format", "json")[1])
    (item,) = report["items"]
    assert item["status"] == "failed" and item["reason"] == "output_error"
    assert item["attempts"] == 2
    assert not list(outbox.rglob(".tmp-*"))


def test_report_table_csv_and_filters(
    synth_set: Path, make_config: Callable[..., Path], tmp_path: Path
) -> None:
    """The table shows the summary, CSV has a row per frame, and filters narrow the items."""
    config = make_config()
    (tmp_path / "bad.png").write_bytes(b"\x89PNG\r\n\x1a\nshort")
    _run(config, "process", str(synth_set / "images"), str(tmp_path / "bad.png"))
    code, table, _ = _run(config, "report")
    assert code == 0
    assert "21 inputs" in table and "done 20" in table and "rejected 1" in table
    assert "truncated" in table or "corrupt" in table
    code, text, _ = _run(config, "report", "--format", "csv")
    rows = text.strip().splitlines()
    assert rows[0].startswith("id,path,sha256,status")
    assert len(rows) == 1 + 21
    rejected = json.loads(_run(config, "report", "--format", "json", "--status", "rejected")[1])
    assert rejected["summary"]["total"] == 1 and len(rejected["items"]) == 1
    limited = json.loads(_run(config, "report", "--format", "json", "--limit", "5")[1])
    assert limited["summary"]["total"] == 21 and len(limited["items"]) == 5
    future = json.loads(_run(config, "report", "--format", "json", "--since", "2999-01-01")[1])
    assert future["summary"]["total"] == 0 and future["items"] == []
    out_file = tmp_path / "r" / "report.json"
    code, _, _ = _run(config, "report", "--format", "json", "--output", str(out_file))
    assert code == 0 and json.loads(out_file.read_text())["summary"]["total"] == 21
