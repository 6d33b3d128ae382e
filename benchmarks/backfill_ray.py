"""The Ray backfill against the pipelined runner, and the driver's commit rate.

1. Throughput: the same synthetic photos (12 MP by default) through ``backfill --engine
   local`` (the pipelined runner) and ``--engine ray`` (a Ray started on this machine),
   each on a fresh SQLite database and outbox, with the simulated device (``models.
   simulate_device_ms``: the device's time without its CPU) and with the real models.
   Reported: photos/s of the processing (claim to commit; registration apart), the
   steady rate (first commit to last: what a backlog of many waves sees) and Ray's over
   the runner's, and the start each Ray wave pays (its actors' processes, the framework's
   import, the models' load).
2. The driver's commit rate: inputs that went through read, the model stage and the write
   stage in this process (the backfill's own stage callables), then committed by the
   driver as in a run (``Driver.commit``: the transaction, the staged files published
   under the claim's fence, what follows the commit), ``--commit-batch`` inputs per
   transaction, into PostgreSQL (and SQLite beside it). Results per second of commit
   time: how many photos per second one driver can take from the cluster.

    .venv/bin/python benchmarks/backfill_ray.py [--photos 160] [--size 4128x3096]
        [--device-ms 20,0] [--commit-photos 512] [--commit-batch 64] [--pg-admin URL]

PostgreSQL: a scratch database is created through ``--pg-admin`` and dropped at the end.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import create_engine, text

from cervixbatch.backfill.driver import Driver, WaveSettings, backfill_ray
from cervixbatch.backfill.engine import EngineSettings
from cervixbatch.backfill.local import backfill_local
from cervixbatch.backfill.register import hash_here, register_sources
from cervixbatch.backfill.sources import expand_sources
from cervixbatch.backfill.stages import (
    PAYLOAD,
    InFlight,
    ModelStage,
    StageContext,
    pack,
    read_batch,
    shape_only,
    unpack,
    write_batch,
)
from cervixbatch.backfill.totals import BackfillTotals
from cervixbatch.cli.common import setup_logging
from cervixbatch.config import Config, load_config
from cervixbatch.model.pair import load_stages
from cervixbatch.store.db import open_database
from cervixbatch.tools.bench.setup import bench_photos
from cervixbatch.worker.runner import Runner


def _cpu() -> str:
    for line in Path("/proc/cpuinfo").read_text(encoding="ascii", errors="replace").splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return "unknown"


# On two cores: the read and write tasks wait on the disk and the object store part of
# their time, so two of each per core (a quarter CPU each) keep both cores busy; the
# model actor's quarter CPU is bookkeeping (its framework's threads are its own). The
# commit batch is small so that the steady rate has commits to be measured between.
_ENGINE_SETTINGS = EngineSettings(actor_cpus=0.25, task_cpus=0.25, cpu_tasks=4, commit_batch=16)


def _config(root: Path, url: str, device_ms: float, *, pipeline: bool = True) -> Config:
    (root / "inbox").mkdir(parents=True, exist_ok=True)
    path = root / "config.toml"
    path.write_text(
        f'[paths]\ninbox = "inbox"\noutbox = "outbox"\n[database]\nurl = "{url}"\n'
        f"[batch]\nsize = 8\npipeline = {'true' if pipeline else 'false'}\n"
        f'[models]\nsimulate_device_ms = {device_ms}\n[logging]\nlevel = "warning"\n',
        encoding="utf-8",
    )
    return load_config(path)


def throughput(root: Path, photos: Path, device_ms: float) -> dict[str, Any]:
    """Both engines on the same photos; their photos/s and the ratios."""
    runs: dict[str, Any] = {}
    for engine in ("pipelined", "ray"):
        folder = root / f"{engine}-{device_ms:g}"
        config = _config(folder, f"sqlite:///{folder / 'state' / 'b.db'}", device_ms)
        setup_logging(config)
        clock = time.perf_counter()
        if engine == "ray":
            totals = backfill_ray(
                config,
                expand_sources([photos]),
                address=None,
                settings=_ENGINE_SETTINGS,
                wave=WaveSettings(),
            )
        else:
            totals = backfill_local(config, expand_sources([photos]))
        runs[engine] = {
            "photos": totals.committed,
            "done": totals.done,
            "processing_s": round(totals.seconds, 2),
            "photos_per_s": round(totals.photos_per_s, 3),
            "steady_photos_per_s": round(totals.steady_photos_per_s, 3),
            "wall_s_with_registration_and_start": round(time.perf_counter() - clock, 2),
            "peak_rss_mb": {k: round(v) for k, v in totals.peak_rss_mb.items()},
            "driver_peak_rss_mb": round(totals.driver_peak_rss_mb),
        }
    ray, pipelined = runs["ray"], runs["pipelined"]
    runs["ray_over_pipelined"] = round(ray["photos_per_s"] / pipelined["photos_per_s"], 3)
    runs["ray_over_pipelined_steady"] = round(
        ray["steady_photos_per_s"] / pipelined["steady_photos_per_s"], 3
    )
    # What the whole run took beyond its steady rate: the pool's start (processes, the
    # framework's import, the models' load), once per wave.
    start_s = ray["processing_s"] - ray["photos"] / max(ray["steady_photos_per_s"], 1e-9)
    runs["ray_start_s"] = round(start_s, 1)
    # A backlog runs in waves of WaveSettings.inputs, each paying that start once.
    wave = WaveSettings().inputs
    wave_s = wave / max(ray["steady_photos_per_s"], 1e-9) + start_s
    runs["ray_over_pipelined_per_wave"] = round(wave / wave_s / pipelined["steady_photos_per_s"], 3)
    return runs


@contextlib.contextmanager
def scratch_postgres(admin: str) -> Iterator[str]:
    """A fresh PostgreSQL database, dropped afterwards."""
    name = f"cervixbatch_bench_{uuid.uuid4().hex[:10]}"
    engine = create_engine(admin, isolation_level="AUTOCOMMIT")
    with engine.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield admin.rsplit("/", 1)[0] + f"/{name}"
    finally:
        with engine.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        engine.dispose()


def commit_rate(root: Path, photos: Path, url: str, commit_batch: int) -> dict[str, Any]:
    """Photos through the stages in this process, then committed by the driver."""
    config = _config(root, url, 0.01, pipeline=False)
    setup_logging(config)
    db = open_database(url)
    stages = load_stages(config)
    totals = BackfillTotals()
    try:
        with Runner(config, db, stages) as runner:
            pair = (stages.cervix_version, stages.lesion_version)
            sources = expand_sources([photos])
            register_sources(db, runner.registrar, sources, totals, hash_here, pair)
            driver = Driver(runner, None, config, stages, totals)
            work = driver.claim(len(list(photos.rglob("*.jpg"))))
            context = StageContext(config, shape_only(stages), runner.limits, runner.sop_filter)
            model = ModelStage(config)
            flights: list[InFlight] = []
            for start in range(0, len(work), 8):
                column = [pack(item) for item in work[start : start + 8]]
                batch = {PAYLOAD: np.array(column, dtype=object)}
                written = write_batch(model(read_batch(batch, context)), context)
                flights.extend(unpack(p) for p in written[PAYLOAD])
            pending = {item.claimed.id: item for item in work}
            for start in range(0, len(flights), commit_batch):
                driver.commit(flights[start : start + commit_batch], pending)
    finally:
        db.dispose()
    return {
        "inputs": totals.committed,
        "commit_batch": commit_batch,
        "commit_s": round(totals.commit_seconds, 3),
        "results_per_s": round(totals.committed / totals.commit_seconds, 1),
    }


def main() -> None:
    """Runs both parts; prints the report as JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--photos", type=int, default=160)
    parser.add_argument("--size", default="4128x3096")
    parser.add_argument(
        "--device-ms",
        default="20,0",
        help="simulated device times to run, comma-separated; 0: the real models",
    )
    parser.add_argument("--commit-photos", type=int, default=512)
    parser.add_argument("--commit-batch", type=int, default=64)
    parser.add_argument(
        "--pg-admin", default="postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
    )
    parser.add_argument("--skip-throughput", action="store_true")
    args = parser.parse_args()
    width, height = (int(v) for v in args.size.split("x"))
    report: dict[str, Any] = {"cpu": _cpu(), "cores": len(os.sched_getaffinity(0))}
    with tempfile.TemporaryDirectory(prefix="cervixbatch-backfill-bench-") as tmp:
        root = Path(tmp)
        if not args.skip_throughput:
            photos = root / "photos"
            bench_photos(photos, args.photos, (width, height), seed=11)
            report["throughput"] = {}
            for device_ms in (float(v) for v in args.device_ms.split(",")):
                device = f"simulated {device_ms:g} ms" if device_ms else "real models"
                report["throughput"][device] = {
                    "photos": args.photos,
                    "size": args.size,
                    **throughput(root, photos / "images", device_ms),
                }
                print(json.dumps({device: report["throughput"][device]}), flush=True)
        small = root / "small"
        bench_photos(small, args.commit_photos, (320, 240), seed=12)
        rates = {}
        with scratch_postgres(args.pg_admin) as url:
            rates["postgresql"] = commit_rate(root / "pg", small / "images", url, args.commit_batch)
        sqlite_url = f"sqlite:///{root / 'sq' / 'state' / 'c.db'}"
        rates["sqlite"] = commit_rate(root / "sq", small / "images", sqlite_url, args.commit_batch)
        report["commit_rate"] = rates
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
