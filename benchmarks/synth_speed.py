"""Seconds per synthetic sample, synth v1 against synth v2, measured in the same run.

Times ``make_sample`` (painting, camera, masks at full size; no file writing) at 12 MP
and at 1600x1200, as wall-clock and as this process's CPU time (the CPU time is what a
busy shared machine distorts least), and prints the CPU model and load.

    .venv/bin/python benchmarks/synth_speed.py [--count 8]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from cervixbatch.tools.synth import v1 as synth_v1
from cervixbatch.tools.synth import v2 as synth_v2
from cervixbatch.tools.synth.v1 import SynthSample

SIZES = ((4000, 3000), (1600, 1200))


def _cpu() -> str:
    for line in Path("/proc/cpuinfo").read_text(errors="replace").splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor()


def _time(
    make: Callable[[np.random.Generator, tuple[int, int]], SynthSample],
    size: tuple[int, int],
    count: int,
) -> dict[str, float]:
    make(np.random.default_rng(999), size)  # warm caches and lazy imports
    wall, cpu = time.perf_counter(), time.process_time()
    for i in range(count):
        make(np.random.default_rng([1, i]), size)
    return {
        "wall_s": round((time.perf_counter() - wall) / count, 3),
        "cpu_s": round((time.process_time() - cpu) / count, 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--count", type=int, default=8)
    args = parser.parse_args()
    report: dict[str, object] = {
        "cpu": _cpu(),
        "cores": len(os.sched_getaffinity(0)),
        "load_average_before": os.getloadavg()[0],
        "samples_per_size": args.count,
    }
    for width, height in SIZES:
        v1 = _time(synth_v1.make_sample, (width, height), args.count)
        v2 = _time(synth_v2.make_sample, (width, height), args.count)
        report[f"{width}x{height}"] = {
            "v1": v1,
            "v2": v2,
            "v2_over_v1_cpu": round(v2["cpu_s"] / v1["cpu_s"], 3),
        }
    report["load_average_after"] = os.getloadavg()[0]
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
