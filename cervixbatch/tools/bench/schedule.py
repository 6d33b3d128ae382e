"""``cervixbatch bench --compare-schedules``: the pipelined and the sequential schedules
side by side on the real models, each end to end on its own database and outbox, beside
the seed projects' per-image loop and the model-only bound, in one run on the same
synthetic photos (the three paths as in ``tools.bench``).
"""

from __future__ import annotations

import resource
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from cervixbatch.config import Config
from cervixbatch.tools.bench.paths import end_to_end_runner, model_only
from cervixbatch.tools.bench.seed_loop import load_plain, seed_loop
from cervixbatch.tools.bench.setup import (
    WARMUP,
    BenchOptions,
    bench_photos,
    machine_info,
    make_bench_config,
    ratio,
    save_bench_models,
)

__all__ = ["run_bench"]


def run_bench(
    config: Config, options: BenchOptions, on_step: Callable[[int], None] | None = None
) -> dict[str, Any]:
    """Measures the paths and returns the report (JSON-ready).

    ``on_step(1)`` is called after each measured path of each size (3 per size).
    """
    step = on_step or (lambda _n: None)
    from cervixbatch.model.device import configure_tensorflow
    from cervixbatch.model.pair import load_stages

    started = time.perf_counter()
    info = configure_tensorflow()
    with tempfile.TemporaryDirectory(prefix="cervixbatch-bench-") as tmp:
        root = Path(tmp)
        cervix_path, lesion_path = save_bench_models(root / "models", tiny=options.tiny)
        models = str(cervix_path), str(lesion_path)
        pipelined = config.batch.pipeline
        other = "sequential" if pipelined else "pipelined"
        bench_config = make_bench_config(config, root / "e2e", options, models, pipeline=pipelined)
        other_config = make_bench_config(
            config, root / other, options, models, pipeline=not pipelined
        )
        stages = load_stages(bench_config)
        batch = bench_config.batch.size
        repeats = 2 if options.tiny else 3
        bounds = [model_only(stages, batch, repeats=repeats)]
        seed_models = load_plain(cervix_path), load_plain(lesion_path)

        per_size: dict[str, Any] = {}
        with (
            end_to_end_runner(bench_config, stages) as e2e,
            end_to_end_runner(other_config, stages) as e2e_other,
        ):
            for size in options.sizes:
                name = f"{size[0]}x{size[1]}"
                photos = bench_photos(root / f"photos-{name}", options.count, size, options.seed)
                warm = bench_photos(root / f"warm-{name}", WARMUP, size, options.seed + 1)
                seed_loop(warm, *seed_models, root / f"seed-warm-{name}")  # warm-up
                seed = seed_loop(photos, *seed_models, root / f"seed-{name}")
                step(1)
                e2e.run(warm)  # warm-up (the first size also traces the graphs)
                per_size[name] = {"seed_loop": seed, "end_to_end": e2e.run(photos)}
                step(1)
                e2e_other.run(warm)  # the other schedule, on its own database and outbox
                per_size[name][f"end_to_end_{other}"] = e2e_other.run(photos)
                step(1)
                bounds.append(model_only(stages, batch, repeats=repeats))
    # The bound is the best of its runs (before and after each size): a conservative
    # denominator when something else on the machine slows one of them down.
    best = max(bounds, key=lambda bound: bound["images_per_s"])
    for entry in per_size.values():
        runs = {
            entry["end_to_end"]["mode"]: entry["end_to_end"],
            other: entry[f"end_to_end_{other}"],
        }
        entry["ratios"] = {
            "end_to_end_vs_seed_loop": ratio(entry["end_to_end"], entry["seed_loop"]),
            "end_to_end_vs_model_only": ratio(entry["end_to_end"], best),
            "pipelined_vs_sequential": ratio(runs["pipelined"], runs["sequential"]),
        }
    return {
        "count": options.count,
        "batch_size": batch,
        "precision": {"end_to_end": stages.precision, "seed_loop": "float32"},
        "models": {
            "tiny": options.tiny,
            "cervix_input": [*stages.cervix.input_size, stages.cervix.input_channels],
            "lesion_input": [*stages.lesion.input_size, stages.lesion.input_channels],
        },
        "overlay_max_side": bench_config.output.overlay_max_side,
        "model_only": {**best, "runs_images_per_s": [b["images_per_s"] for b in bounds]},
        "sizes": per_size,
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "machine": machine_info(info.device, cpu_bf16=info.cpu_bf16),
        "wall_s": round(time.perf_counter() - started, 1),
    }
