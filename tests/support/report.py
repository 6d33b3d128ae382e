"""A batch processed once by `cervixbatch process` for the report tests: photos with and
without a lesion, an odd name, a 2-frame DICOM and two bad files, over two days."""

from __future__ import annotations

import dataclasses
import json
import sqlite3
from pathlib import Path

import pydicom
from click.testing import CliRunner

from cervixbatch.cli import main
from support.imaging_fixtures import bundled
from support.photos import draw_photo, write_photo

ODD_NAME = 'odd <b>&" [red]name.jpg'


PATIENT = "Lestrade^G"  # in pydicom's SC_rgb_rle_2frame.dcm


@dataclasses.dataclass(frozen=True)
class Batch:
    root: Path
    config: Path
    db: Path

    def rows(self, sql: str, *args: object) -> list[tuple[object, ...]]:
        with sqlite3.connect(self.db) as connection:
            return connection.execute(sql, args).fetchall()


def run_cli(config: Path, *args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, ["--config", str(config), *args], catch_exceptions=False)
    return result.exit_code, result.stdout, result.stderr


def write_config(root: Path, models: dict[str, Path], **extra: dict[str, object]) -> Path:
    """The settings of conftest's `make_config`, for fixtures that outlive one test."""
    sections: dict[str, dict[str, object]] = {
        "paths": {"inbox": "inbox", "outbox": "outbox"},
        "database": {"url": "sqlite:///state/cervixbatch.db"},
        "batch": {"size": 4, "max_wait_ms": 100},
        "models": {"cervix": str(models["cervix"]), "lesion": str(models["lesion"])},
        "logging": {"format": "json"},
        **extra,
    }
    text = "".join(
        f"[{name}]\n" + "".join(f"{key} = {json.dumps(value)}\n" for key, value in values.items())
        for name, values in sections.items()
    )
    path = root / f"config-{len(list(root.glob('config*.toml')))}.toml"
    path.write_text(text, encoding="utf-8")
    return path


def drop_batch(folder: Path) -> None:
    """Photos with and without a lesion, an odd name, a 2-frame DICOM, two bad files."""
    write_photo(folder / "a.jpg", draw_photo(seed=1))
    write_photo(folder / "b.jpg", draw_photo(seed=2))
    write_photo(folder / "c.png", draw_photo(seed=3, lesion=False))
    write_photo(folder / ODD_NAME, draw_photo(360, 260, seed=4))
    dicom = pydicom.dcmread(bundled("SC_rgb_rle_2frame.dcm"))
    assert str(dicom.PatientName) == PATIENT
    dicom.save_as(folder / "study.dcm")
    (folder / "notes.jpg").write_text("not a photo")
    (folder / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\nshort")


def build_batch(root: Path, models: dict[str, Path]) -> Batch:
    """Processes `drop_batch`, then spreads the inputs over two days with known timings."""
    config = write_config(root, models)
    drop_batch(root / "inbox")  # in the inbox: the reports show inbox-relative paths
    code, _, err = run_cli(config, "process", str(root / "inbox"))
    assert code == 0, err
    batch = Batch(root, config, root / "state" / "cervixbatch.db")
    with sqlite3.connect(batch.db) as connection:
        rows = connection.execute("SELECT id, path FROM inputs ORDER BY id").fetchall()
        for index, (input_id, path) in enumerate(rows):
            day = 1 if Path(path).name in {"a.jpg", "notes.jpg"} else 2
            connection.execute(
                "UPDATE inputs SET created_at = ?, finished_at = ?, processing_ms = CASE "
                "WHEN status = 'done' THEN ? ELSE processing_ms END WHERE id = ?",
                (
                    f"2024-03-0{day} 09:{index:02d}:00.000000",
                    f"2024-03-0{day} 10:{index:02d}:00.000000",
                    100.0 * (index + 1),
                    input_id,
                ),
            )
    return batch
