"""How fast `cervixbatch report` answers with 100,000 results in the database.

Fills a temporary SQLite database (the current schema, via the migrations) with 100,000
done inputs, each with one result and one sighting, plus a few thousand rejected and
failed inputs, then times `report --format table` and `report --format json --limit 50`
(the default limits) in-process and as a subprocess, and prints the figures as JSON.

    .venv/bin/python benchmarks/report_100k.py [--rows 100000] [--repeat 3]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import random
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from click.testing import CliRunner
from sqlalchemy import insert, text

from cervixbatch.cli import main
from cervixbatch.store.db import open_database
from cervixbatch.store.schema import Input, Result, Sighting

REASONS = {
    "rejected": ["unsupported_format", "corrupt", "too_small", "empty_file"],
    "failed": ["output_error", "model_error"],
}
CHUNK = 20_000


def fill(url: str, rows: int, seed: int = 0) -> dict[str, int]:
    """Bulk-inserts ``rows`` done inputs with a result and a sighting, plus 3% not done."""
    rng = random.Random(seed)  # noqa: S311 - test data, not secrets
    db = open_database(url)
    start = dt.datetime(2025, 1, 1, tzinfo=dt.UTC)
    extra = rows * 3 // 100
    total = rows + extra
    models = [("a" * 64, "b" * 64), ("c" * 64, "d" * 64)]
    try:
        for first in range(1, total + 1, CHUNK):
            ids = range(first, min(first + CHUNK, total + 1))
            inputs: list[dict[str, Any]] = []
            results: list[dict[str, Any]] = []
            sightings: list[dict[str, Any]] = []
            for i in ids:
                created = start + dt.timedelta(seconds=i * 20)
                if i <= rows:
                    status, reason = "done", None
                else:
                    status = "rejected" if rng.random() < 0.7 else "failed"
                    reason = rng.choice(REASONS[status])
                ms = rng.lognormvariate(6.0, 0.5)
                path = f"/srv/inbox/site{i % 7}/patient_{i:06d}.jpg"
                inputs.append(
                    {
                        "id": i,
                        "sha256": f"{i:064x}",
                        "path": path,
                        "size_bytes": 2_000_000,
                        "status": status,
                        "reason": reason,
                        "detail": None if reason is None else f"{reason} in {path}",
                        "attempts": 1,
                        "kind": "photo",
                        "format": "jpeg",
                        "frame_count": 1,
                        "created_at": created,
                        "started_at": created,
                        "finished_at": created + dt.timedelta(milliseconds=ms),
                        "processing_ms": ms,
                        "disposition": "kept",
                    }
                )
                sightings.append(
                    {
                        "input_id": i,
                        "path": path,
                        "size_bytes": 2_000_000,
                        "mtime_ns": i,
                        "seen_at": created,
                    }
                )
                if status != "done":
                    continue
                cervix, lesion = models[0] if i < rows // 2 else models[1]
                folder = f"/srv/outbox/{i:08d}"
                results.append(
                    {
                        "input_id": i,
                        "frame": 0,
                        "width": 4128,
                        "height": 3096,
                        "cervix_found": rng.random() > 0.03,
                        "cervix_fraction": rng.uniform(0.1, 0.5),
                        "lesion_fraction": rng.betavariate(0.6, 6.0),
                        "box_x0": 100,
                        "box_y0": 100,
                        "box_x1": 2000,
                        "box_y1": 1800,
                        "cervix_mask_path": f"{folder}/cervix_mask.png",
                        "lesion_mask_path": f"{folder}/lesion_mask.png",
                        "overlay_path": f"{folder}/overlay.jpg",
                        "crop_path": f"{folder}/crop.jpg",
                        "cervix_model": cervix,
                        "lesion_model": lesion,
                        "precision": "float32",
                        "stage1_ms": ms / 3,
                        "stage2_ms": ms / 3,
                        "created_at": created,
                    }
                )
            with db.session() as session:
                session.execute(insert(Input), inputs)
                session.execute(insert(Sighting), sightings)
                if results:
                    session.execute(insert(Result), results)
        with db.engine.connect() as connection:
            connection.execute(text("ANALYZE"))
            counts = {
                table: int(connection.execute(text(f"SELECT count(*) FROM {table}")).scalar_one())  # noqa: S608
                for table in ("inputs", "results", "sightings")
            }
    finally:
        db.dispose()
    return counts


def timed(function: Callable[[], object], repeat: int) -> dict[str, float]:
    """Runs ``function`` ``repeat`` times; returns the min and median in seconds."""
    seconds = []
    for _ in range(repeat):
        begin = time.perf_counter()
        function()
        seconds.append(time.perf_counter() - begin)
    return {"min_s": round(min(seconds), 3), "median_s": round(statistics.median(seconds), 3)}


def main_benchmark() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="cervixbatch-report-bench-") as tmp:
        folder = Path(tmp)
        url = f"sqlite:///{folder / 'bench.db'}"
        config = folder / "config.toml"
        config.write_text(
            f'[database]\nurl = "{url}"\n[paths]\ninbox = "/srv/inbox"\n'
            '[logging]\nlevel = "warning"\nformat = "json"\n',
            encoding="utf-8",
        )
        begin = time.perf_counter()
        counts = fill(url, args.rows)
        fill_s = time.perf_counter() - begin
        runs = {
            "table": ["report"],
            "json_limit_50": ["report", "--format", "json", "--limit", "50"],
        }
        figures: dict[str, Any] = {"rows": counts, "fill_s": round(fill_s, 1)}
        runner = CliRunner()

        def in_process(cli_args: list[str]) -> Callable[[], object]:
            def call() -> object:
                result = runner.invoke(main, ["--config", str(config), *cli_args])
                assert result.exit_code == 0, result.output
                return result

            return call

        def as_subprocess(cli_args: list[str]) -> Callable[[], object]:
            command = [sys.executable, "-m", "cervixbatch.cli", "--config", str(config), *cli_args]

            def call() -> object:
                done = subprocess.run(command, capture_output=True, text=True, check=False)
                assert done.returncode == 0, done.stderr[-2000:]
                return done

            return call

        for name, cli_args in runs.items():
            figures[name] = {
                "in_process": timed(in_process(cli_args), args.repeat),
                "subprocess": timed(as_subprocess(cli_args), args.repeat),
            }
        print(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main_benchmark()
