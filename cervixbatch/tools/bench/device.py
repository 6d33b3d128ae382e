"""``cervixbatch bench --simulate-device MS[,MS...]``: the real path around a stand-in
accelerator (``model/simulated.py``), sequential and pipelined on the same photos in one
run, against the bound the phases allow.

For each size and each device time, both schedules process the same synthetic JPEGs,
each on a fresh database and outbox after a warm-up. Reported per schedule: images/s of
the processing (claim to commit; registering the files, the same serial work in both, is
reported apart), ms per image per step, CPU ms per image of the whole process (the
simulated device uses none: this is the CPU the photos cost besides the models), and the
share of the time the device was busy.

The bound, from the sequential run's phases (each measured alone, with every core):
``1 / max(read, device, crops, write)`` per image, where the pipelined stages are read =
decode + stage-1 input, crops = ROI + crop + stage-2 input, write = full-size masks +
overlay + files (the CPU steps that the sequential run does on one thread count 1/cores
of their time, as the pipelined pools spread them). That bound assumes each phase has
cores of its own; on a machine where read, crops and write share the same cores, their
sum bounds too: ``1 / max(device, read + crops + write)``. The tighter of the two is the
bound the pipelined schedule is measured against.
"""

from __future__ import annotations

import os
import resource
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from cervixbatch.config import Config
from cervixbatch.tools.bench.paths import end_to_end_runner
from cervixbatch.tools.bench.setup import BenchOptions, bench_photos, make_bench_config

__all__ = ["run_device_bench"]

_WARMUP = 4  # photos per run before timing: thread pools, caches, the database file
_SCHEDULES = ("sequential", "pipelined")


def run_device_bench(
    config: Config,
    options: BenchOptions,
    device_ms: Sequence[float],
    on_step: Callable[[int], None] | None = None,
) -> dict[str, Any]:
    """Measures both schedules for every size and device time; the report (JSON-ready).

    ``on_step(1)`` is called after each measured run (2 per size and device time).
    """
    from cervixbatch.model.pair import load_stages

    step = on_step or (lambda _n: None)
    started = time.perf_counter()
    cores = len(os.sched_getaffinity(0))
    per_size: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="cervixbatch-bench-") as tmp:
        root = Path(tmp)
        for size in options.sizes:
            name = f"{size[0]}x{size[1]}"
            photos = bench_photos(root / f"photos-{name}", options.count, size, options.seed)
            warm = bench_photos(root / f"warm-{name}", _WARMUP, size, options.seed + 1)
            per_ms: dict[str, Any] = {}
            for ms in device_ms:
                runs: dict[str, Any] = {}
                for schedule in _SCHEDULES:
                    run_config = make_bench_config(
                        config,
                        root / f"{name}-{ms:g}ms-{schedule}",
                        options,
                        ("builtin:simulated", "builtin:simulated"),
                        pipeline=schedule == "pipelined",
                        simulate_device_ms=ms,
                    )
                    stages = load_stages(run_config)
                    device = stages.cervix.device  # type: ignore[attr-defined]
                    with end_to_end_runner(run_config, stages) as e2e:
                        e2e.run(warm)
                        busy = device.busy_s
                        report = e2e.run(photos)
                        processing_s = len(photos) / report["processing_images_per_s"]
                        report["device_busy"] = round((device.busy_s - busy) / processing_s, 3)
                    runs[schedule] = report
                    step(1)
                per_ms[f"{ms:g}"] = _compare(runs, ms, cores)
            per_size[name] = per_ms
    return {
        "simulated_device_ms": list(device_ms),
        "count": options.count,
        "batch_size": options.batch_size or config.batch.size,
        "overlay_max_side": config.output.overlay_max_side,
        "cores": cores,
        "sizes": per_size,
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "machine": _machine(),
        "wall_s": round(time.perf_counter() - started, 1),
    }


def _compare(runs: dict[str, Any], ms: float, cores: int) -> dict[str, Any]:
    sequential, pipelined = runs["sequential"], runs["pipelined"]
    steps, inner = sequential["steps_ms"], sequential["pipeline_steps_ms"]
    phases = {
        "read_ms": steps["decode"] + inner.get("preprocess", 0.0) / cores,
        "device_ms": ms,
        "crops_ms": (inner.get("roi", 0.0) + inner.get("preprocess2", 0.0)) / cores,
        "write_ms": steps["write"] + inner.get("postprocess", 0.0) / cores,
    }
    cpu_phases = phases["read_ms"] + phases["crops_ms"] + phases["write_ms"]
    phase_bound = 1000 / max(phases.values())
    shared_bound = 1000 / max(ms, cpu_phases)
    bound = min(phase_bound, shared_bound)
    rate = pipelined["processing_images_per_s"]
    return {
        **runs,
        "bound": {
            **{k: round(v, 2) for k, v in phases.items()},
            "phases_images_per_s": round(phase_bound, 2),
            "shared_cores_images_per_s": round(shared_bound, 2),
            "images_per_s": round(bound, 2),
        },
        "ratios": {
            "pipelined_vs_sequential": round(rate / sequential["processing_images_per_s"], 3),
            "pipelined_vs_bound": round(rate / bound, 3),
            "pipelined_vs_phase_bound": round(rate / phase_bound, 3),
        },
    }


def _machine() -> dict[str, Any]:
    import cv2

    from cervixbatch.outputs.png import fast_png_available

    model = "unknown"
    try:
        text = Path("/proc/cpuinfo").read_text(encoding="ascii", errors="replace")
    except OSError:
        text = ""
    for line in text.splitlines():
        if line.startswith("model name") and ":" in line:
            model = line.split(":", 1)[1].strip()
            break
    return {
        "cpu": model,
        "cores": len(os.sched_getaffinity(0)),
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "opencv": cv2.__version__,
        "opencv_threads": cv2.getNumThreads(),
        "fast_png": fast_png_available(),
    }
