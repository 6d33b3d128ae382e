"""The cost of ``synchronous = FULL`` on commit throughput, NORMAL against FULL in the same
run (issue 22, item 4: it must stay under 5 %).

Each round processes the same N photos through the real ``Runner`` (register, claim,
decode, both stages, write the outputs, commit, dispose) with ``watch.after = delete``, on
a fresh SQLite database each time, in three ways:

- ``normal``: as before, every transaction ``synchronous = NORMAL``;
- ``full_batch``: as a worker opens it now (``open_database(durable=True)``): the batch's
  commit, which precedes the removal of its inputs' files, runs FULL, the rest NORMAL;
- ``full_every``: every write transaction FULL (registration, claims, renewals,
  dispositions too), the simple alternative, for comparison.

The models are replaced by the simulated device (``models.simulate_device_ms``), so what
is measured is everything but the model calls: the share the fsyncs take is as large as
it can be. The order of the three changes from round to round and each round's ratios to
``normal`` are paired, so that the load of a shared machine, which drifts, weighs on all
alike.

A busy shared machine makes photos per second noisy, so the run also counts what FULL
adds, which CPU load does not change: the FULL commits per photo (each one fsync of the
WAL more) and this disk's fsync latency (a 4 KiB write and ``fdatasync`` in the same
folder, median of 200), and prints the bound they give: the share of a photo's time
(``normal``) those fsyncs would take if none of them overlapped other work. Prints JSON
with the CPU model.

    .venv/bin/python benchmarks/durability_cost.py [--photos 48] [--rounds 6]
        [--size 1600x1200] [--device-ms 5] [--pipeline | --no-pipeline]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from sqlalchemy import event

from cervixbatch.config import Config, load_config
from cervixbatch.config.types import LogLevel
from cervixbatch.logs import configure_logging
from cervixbatch.model.loaded import Stages
from cervixbatch.model.pair import load_stages
from cervixbatch.store.db import open_database
from cervixbatch.worker.batch_state import BatchOutcome
from cervixbatch.worker.runner import Runner

FSYNC_SAMPLES = 200


def _cpu() -> str:
    for line in Path("/proc/cpuinfo").read_text(errors="replace").splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor()


def _photos(folder: Path, count: int, size: tuple[int, int]) -> list[Path]:
    """Distinct JPEG photos: a pink disc (the cervix) on a dark, noisy field."""
    folder.mkdir(parents=True)
    rng = np.random.default_rng(22)
    width, height = size
    out = []
    for i in range(count):
        image = rng.integers(10, 40, (height, width, 3), dtype=np.uint8)
        centre = (width // 2 + int(rng.integers(-50, 50)), height // 2 + int(rng.integers(-50, 50)))
        cv2.ellipse(image, centre, (width // 4, height // 4), 0, 0, 360, (130, 120, 220), -1)
        cv2.circle(image, centre, height // 12, (250, 250, 250), -1)
        path = folder / f"photo-{i:04d}.jpg"
        ok, data = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 90])
        assert ok
        path.write_bytes(data.tobytes())
        out.append(path)
    return out


def _config(work: Path, args: argparse.Namespace) -> Config:
    text = f"""
[paths]
inbox = "inbox"
outbox = "outbox"
[database]
url = "sqlite:///state/cervixbatch.db"
[watch]
after = "delete"
archive = "archive"
[batch]
size = {args.batch}
max_wait_ms = 50
pipeline = {"true" if args.pipeline else "false"}
[models]
simulate_device_ms = {args.device_ms}
[logging]
level = "warning"
"""
    path = work / "config.toml"
    path.write_text(text, encoding="utf-8")
    return load_config(path)


MODES = ("normal", "full_batch", "full_every")


def _one_run(
    sources: list[Path], root: Path, args: argparse.Namespace, stages: Stages, *, mode: str
) -> dict[str, float]:
    """One pass over the photos on a fresh inbox, outbox and database."""
    work = Path(tempfile.mkdtemp(dir=root))
    try:
        config = _config(work, args)
        inbox = config.paths.inbox
        inbox.mkdir(parents=True)
        for source in sources:
            shutil.copyfile(source, inbox / source.name)
        db = open_database(config.database.url, durable=mode != "normal")
        if mode == "full_every":  # every session as durable as the batch's commit
            db._sessions = db._durable_sessions  # noqa: SLF001 - the alternative measured
        full_commits = [0]

        def counted(connection: Any) -> None:
            if connection.get_execution_options().get("cervixbatch_durable", False):
                full_commits[0] += 1

        event.listen(db.engine, "commit", counted)
        batches: list[BatchOutcome] = []
        try:
            with Runner(config, db, stages) as runner:
                wall, cpu = time.perf_counter(), time.process_time()
                for path in sorted(inbox.iterdir()):
                    runner.registrar.register(path)
                total = runner.process_until_empty(on_batch=batches.append)
                wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        finally:
            db.dispose()
        if total.done != len(sources) or any(inbox.iterdir()):
            raise SystemExit(f"{total.done} of {len(sources)} done; the inbox is not empty")
        commit_ms = sum(b.timings_ms.get("commit", 0.0) for b in batches)
        return {
            "photos_per_s": len(sources) / wall,
            "cpu_ms_per_photo": cpu * 1000 / len(sources),
            "commit_ms_per_photo": commit_ms / len(sources),
            "full_commits_per_photo": full_commits[0] / len(sources),
        }
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _fsync_ms(folder: Path) -> float:
    """This disk's latency for a 4 KiB write made durable (median, ms)."""
    path = folder / "fsync-probe"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
    times = []
    try:
        for i in range(FSYNC_SAMPLES):
            os.pwrite(fd, os.urandom(4096), (i % 64) * 4096)
            started = time.perf_counter()
            os.fdatasync(fd)
            times.append((time.perf_counter() - started) * 1000)
    finally:
        os.close(fd)
        path.unlink()
    return statistics.median(times)


def _summary(runs: list[dict[str, float]]) -> dict[str, float]:
    return {key: round(statistics.median(r[key] for r in runs), 3) for key in runs[0]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--photos", type=int, default=48)
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--size", default="1600x1200")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--device-ms", type=float, default=5.0)
    parser.add_argument("--pipeline", action=argparse.BooleanOptionalAction, default=True)
    parser.add_argument("--scratch", type=Path, default=None, help="a folder on the disk to test")
    args = parser.parse_args()
    configure_logging(LogLevel.WARNING)  # one line per input would cost what is measured
    width, height = (int(v) for v in args.size.split("x"))
    root = Path(tempfile.mkdtemp(prefix="durability-", dir=args.scratch))
    try:
        sources = _photos(root / "sources", args.photos, (width, height))
        stages = load_stages(_config(root, args))
        _one_run(sources[: args.batch], root, args, stages, mode="normal")  # warm-up
        runs: dict[str, list[dict[str, float]]] = {mode: [] for mode in MODES}
        ratios: dict[str, list[float]] = {mode: [] for mode in MODES[1:]}
        for index in range(args.rounds):
            order = MODES[index % 3 :] + MODES[: index % 3]
            this_round = {mode: _one_run(sources, root, args, stages, mode=mode) for mode in order}
            for mode, run in this_round.items():
                runs[mode].append(run)
            for mode, per_round in ratios.items():
                per_round.append(
                    this_round[mode]["photos_per_s"] / this_round["normal"]["photos_per_s"]
                )
        fsync_ms = _fsync_ms(root)
        report: dict[str, Any] = {
            "cpu": _cpu(),
            "cores": len(os.sched_getaffinity(0)),
            "load_average": os.getloadavg()[0],
            "photos": args.photos,
            "size": args.size,
            "batch": args.batch,
            "pipeline": args.pipeline,
            "device_ms_per_image": args.device_ms,
            "rounds": args.rounds,
            "fdatasync_ms_median": round(fsync_ms, 3),
            **{mode: _summary(runs[mode]) for mode in MODES},
        }
        ms_per_photo = 1000 / report["normal"]["photos_per_s"]
        for mode, per_round in ratios.items():
            added_ms = report[mode]["full_commits_per_photo"] * fsync_ms
            report[f"{mode}_over_normal"] = {
                "photos_per_s_median": round(statistics.median(per_round), 4),
                "per_round": [round(r, 4) for r in per_round],
                "throughput_cost_percent": round((1 - statistics.median(per_round)) * 100, 2),
                "fsync_bound_cost_percent_at_most": round(100 * added_ms / ms_per_photo, 2),
            }
        print(json.dumps(report, indent=2))
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
