"""`cervixbatch report` as table, JSON and CSV against a real database made by `process`:
summary statistics over every matching input, the filters, one CSV row per frame."""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import statistics
from pathlib import Path

import pytest
from support.report import ODD_NAME, Batch, build_batch, run_cli, write_config


@pytest.fixture(scope="module")
def batch(tmp_path_factory: pytest.TempPathFactory, analytic_models: dict[str, Path]) -> Batch:
    return build_batch(tmp_path_factory.mktemp("report"), analytic_models)


def expected_stats(batch: Batch, threshold: float = 0.05) -> dict[str, object]:
    """The statistics computed in Python from the raw rows, to check the SQL against."""
    frames = batch.rows("SELECT cervix_found, lesion_fraction FROM results")
    found = [lesion for cervix, lesion in frames if cervix]
    times = [
        t
        for (t,) in batch.rows(
            "SELECT processing_ms FROM inputs WHERE status = 'done' AND processing_ms IS NOT NULL"
        )
    ]
    models = batch.rows("SELECT DISTINCT cervix_model, lesion_model FROM results")
    return {
        "frames": len(frames),
        "frames_with_cervix": len(found),
        "lesion_positive": sum(1 for lesion in found if lesion > threshold),
        "median": statistics.median(times),
        "slowest": max(times),
        "models": models,
    }


def test_table_summary_statistics_cover_every_input(batch: Batch) -> None:
    """The table's summary counts reasons, lesion-positive share, throughput, times and
    models over all matching inputs, even when only one item is listed."""
    code, table, _ = run_cli(batch.config, "report", "--limit", "1")
    assert code == 0
    want = expected_stats(batch)
    assert want["frames_with_cervix"] and 0 < want["lesion_positive"] < want["frames_with_cervix"]
    assert "7 inputs" in table and "done 5" in table and "rejected 2" in table
    assert "rejected: corrupt 1, unsupported_format 1" in table
    assert (
        f"{want['lesion_positive']} of {want['frames_with_cervix']} frames with a cervix "
        "have lesion > 5%"
    ) in table
    assert f"median {want['median']:.0f} ms" in table
    assert f"slowest {want['slowest']:.0f} ms" in table
    assert "inputs/hour" in table and "7 finished in 2" in table and " h (2024-03-01 " in table
    ((cervix, lesion),) = want["models"]  # type: ignore[misc]
    assert f"cervix {cervix[:12]}  lesion {lesion[:12]}" in table
    assert "latest 1 of 7" in table
    assert "\x1b[" not in table  # piped: plain text


def test_json_stats_match_the_database_whatever_the_limit(batch: Batch) -> None:
    """JSON keeps the contract's summary and adds `stats`, the same with or without --limit."""
    full = json.loads(run_cli(batch.config, "report", "--format", "json")[1])
    limited = json.loads(run_cli(batch.config, "report", "--format", "json", "--limit", "2")[1])
    assert set(full["summary"]) == {"total", "done", "rejected", "failed", "queued", "processing"}
    assert len(full["items"]) == 7 and len(limited["items"]) == 2
    assert full["stats"] == limited["stats"]
    want = expected_stats(batch)
    stats = full["stats"]
    assert stats["frames"] == want["frames"] == 6  # 4 photos + 2 DICOM frames
    assert stats["lesion_positive"] == want["lesion_positive"]
    assert stats["processing_ms"]["median"] == pytest.approx(want["median"])
    assert stats["processing_ms"]["slowest"] == pytest.approx(want["slowest"])
    assert stats["throughput"]["finished"] == 7
    ((first, last),) = batch.rows("SELECT min(finished_at), max(finished_at) FROM inputs")
    hours = (
        dt.datetime.fromisoformat(str(last)) - dt.datetime.fromisoformat(str(first))
    ).total_seconds() / 3600
    assert hours > 24 and stats["throughput"]["per_hour"] == pytest.approx(7 / hours, rel=1e-3)


def test_reason_filter_narrows_summary_items_and_stats(batch: Batch) -> None:
    """--reason keeps only inputs with that reason code; repeated, any of them."""
    one = json.loads(run_cli(batch.config, "report", "--format", "json", "--reason", "corrupt")[1])
    assert one["summary"]["total"] == 1 == one["summary"]["rejected"]
    assert [Path(i["path"]).name for i in one["items"]] == ["broken.png"]
    assert one["stats"]["reasons"] == [{"status": "rejected", "reason": "corrupt", "count": 1}]
    assert one["stats"]["frames"] == 0
    both = json.loads(
        run_cli(
            batch.config,
            "report",
            "--format",
            "json",
            "--reason",
            "corrupt",
            "--reason",
            "unsupported_format",
        )[1]
    )
    assert both["summary"]["total"] == 2
    code, table, _ = run_cli(batch.config, "report", "--reason", "no_such_reason")
    assert code == 0 and "0 inputs" in table and "no inputs match." in table


def test_until_and_since_split_the_inputs_by_when_they_were_found(batch: Batch) -> None:
    """--until is exclusive and --since inclusive, so the two halves add up to the whole."""
    before = json.loads(
        run_cli(batch.config, "report", "--format", "json", "--until", "2024-03-02")[1]
    )
    after = json.loads(
        run_cli(batch.config, "report", "--format", "json", "--since", "2024-03-02")[1]
    )
    assert sorted(Path(i["path"]).name for i in before["items"]) == ["a.jpg", "notes.jpg"]
    assert before["summary"]["total"] + after["summary"]["total"] == 7
    assert before["summary"]["done"] == 1 and before["stats"]["frames"] == 1
    window = json.loads(
        run_cli(
            batch.config,
            "report",
            "--format",
            "json",
            "--since",
            "2024-03-01T09:00",
            "--until",
            "2024-03-01T09:01",
        )[1]
    )
    assert window["summary"]["total"] == 1
    code, _, err = run_cli(batch.config, "report", "--until", "yesterday")
    assert code == 2 and "--until" in err


def test_csv_has_one_row_per_frame_with_every_measure(batch: Batch) -> None:
    """CSV: a row per frame (the 2-frame DICOM gives two), one per input without results."""
    code, text, _ = run_cli(batch.config, "report", "--format", "csv")
    assert code == 0
    rows = list(csv.DictReader(io.StringIO(text)))
    assert len(rows) == 6 + 2  # six frames, two rejected inputs
    dicom = [r for r in rows if r["path"].endswith("study.dcm")]
    assert [r["frame"] for r in dicom] == ["0", "1"]
    assert dicom[0]["study_uid"] and dicom[0]["study_uid"] == dicom[1]["study_uid"]
    for row in rows:
        if row["status"] == "done":
            for column in ("cervix_mask", "lesion_mask", "overlay"):
                assert Path(row[column]).is_absolute() and Path(row[column]).is_file()
            assert float(row["stage1_ms"]) >= 0 and row["cervix_model"] and row["precision"]
            assert 0.0 <= float(row["lesion_fraction"]) <= 1.0
        else:
            assert row["reason"] and row["frame"] == "" and row["overlay"] == ""
    assert {Path(r["path"]).name for r in rows} >= {ODD_NAME, "notes.jpg"}


def test_table_shows_names_literally_and_writes_to_output(batch: Batch) -> None:
    """A name holding rich markup is printed as it is; --output writes the table to a file."""
    out = batch.root / "reports" / "table.txt"
    code, stdout, _ = run_cli(batch.config, "report", "--output", str(out))
    assert code == 0 and stdout == ""
    assert ODD_NAME in out.read_text(encoding="utf-8")
    csv_out = batch.root / "reports" / "r.csv"
    assert run_cli(batch.config, "report", "--format", "csv", "--output", str(csv_out))[0] == 0
    assert len(csv_out.read_text(encoding="utf-8").splitlines()) == 1 + 8


def test_lesion_positive_threshold_comes_from_the_config(
    batch: Batch, analytic_models: dict[str, Path]
) -> None:
    """[report] lesion_positive_threshold sets what counts as lesion-positive."""
    config = write_config(batch.root, analytic_models, report={"lesion_positive_threshold": 0.999})
    stats = json.loads(run_cli(config, "report", "--format", "json")[1])["stats"]
    assert stats["lesion_threshold"] == 0.999 and stats["lesion_positive"] == 0
    bad = write_config(batch.root, analytic_models, report={"lesion_positive_threshold": 5})
    code, _, err = run_cli(bad, "report")
    assert code == 2 and "report.lesion_positive_threshold" in err
