"""What reading an input once and verifying its sha256 costs, against a plain read.

The runner reads a claimed input's whole file once, hashes those bytes and compares the
digest with the registered one before decoding them (see ``cervixbatch.worker.runner._read``).
This times, per photo and in the same run: a plain read of the file, ``read_source``
(read + sha256), and the decode the runner does next (JPEG at a reduced scale, as with the
default ``output.overlay_max_side``), and prints the overhead of the hash as a share of
read + decode. For DICOM the same holds: the bytes are read once and parsed from memory.

    .venv/bin/python benchmarks/read_verify.py [--count 8] [--size 4128x3096] [--repeat 3]
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np

from cervixbatch.imaging.frames import ReadLimits
from cervixbatch.imaging.reader import decode_input, read_source
from cervixbatch.tools.synth.v1 import make_sample

MIN_WORKING_SIDE = 2048  # the runner's with overlay_max_side = 2048 and 256-pixel stage 2


def _photos(folder: Path, count: int, size: tuple[int, int]) -> list[Path]:
    paths = []
    for seed in range(count):
        rgb = make_sample(np.random.default_rng(seed), size).rgb
        ok, data = cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
        assert ok
        path = folder / f"p{seed:03d}.jpg"
        path.write_bytes(data.tobytes())
        paths.append(path)
    return paths


def _time(fn: Callable[[Path], object], paths: list[Path], repeat: int) -> float:
    """Median over ``repeat`` runs of the per-photo time in ms."""
    runs = []
    for _ in range(repeat):
        start = time.perf_counter()
        for path in paths:
            fn(path)
        runs.append((time.perf_counter() - start) * 1000 / len(paths))
    return statistics.median(runs)


def _cpu_name() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.machine()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=8)
    parser.add_argument("--size", default="4128x3096")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    width, height = (int(v) for v in args.size.split("x"))
    limits = ReadLimits()
    with tempfile.TemporaryDirectory() as folder:
        paths = _photos(Path(folder), args.count, (width, height))
        mb = float(np.mean([p.stat().st_size for p in paths])) / 2**20
        for path in paths:  # warm the page cache: both variants read from memory
            path.read_bytes()
        plain = _time(lambda p: p.read_bytes(), paths, args.repeat)
        verified = _time(lambda p: read_source(p, limits.max_file_bytes), paths, args.repeat)
        data = {p: p.read_bytes() for p in paths}
        decode = _time(
            lambda p: decode_input(data[p], limits, min_working_side=MIN_WORKING_SIDE),
            paths,
            args.repeat,
        )
    report = {
        "cpu": _cpu_name(),
        "photos": args.count,
        "size": args.size,
        "mean_file_mb": round(mb, 2),
        "ms_per_photo": {
            "plain_read": round(plain, 2),
            "read_and_sha256": round(verified, 2),
            "decode": round(decode, 2),
        },
        "hash_overhead_of_read_plus_decode": round((verified - plain) / (plain + decode), 3),
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
