"""``cervixbatch bench``: images/second of the real path against the seed projects'
per-image loop and against the model-only bound, measured in one run on the same
synthetic photos.

Three paths, each warmed up (traced) before it is timed:

- the SEED LOOP (``bench_seed_loop.seed_loop``), written as the seed projects work: per
  image a full ``cv2.imread``, straight ``cv2.resize`` calls, ``model.predict`` on one
  image per stage, full-resolution post-processing, ``cv2.imwrite`` and one SQLite
  transaction;
- END TO END: the real code path (a real Config in a temp dir, ``open_database``,
  ``Runner``: register → claim → read → both stages → write → commit);
- MODEL ONLY: both stages on ready tensors at the batch size, via ``predict_batch``.

The models, photos and configuration are ``tools.bench_setup``'s; the two measured paths
of the real code are ``tools.bench_paths``'s.
"""

from __future__ import annotations

import resource
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cervixbatch.config import Config, Precision, Runtime
from cervixbatch.tools.bench.paths import measure_variant
from cervixbatch.tools.bench.runtimes import (
    Variant,
    agreement_with,
    parse_variants,
    quantize_bench_models,
    variant_config,
)
from cervixbatch.tools.bench.seed_loop import seed_loop
from cervixbatch.tools.bench.setup import (
    WARMUP,
    BenchOptions,
    bench_photos,
    configured_bench_models,
    machine_info,
    make_bench_config,
    ratio,
    save_bench_models,
)

if TYPE_CHECKING:
    from cervixbatch.segmentation.two_stage import Pipeline

__all__ = ["bench_steps", "run_bench"]

_REFERENCE = Variant(Runtime.TENSORFLOW, Precision.FLOAT32)  # what the agreement is against


def bench_steps(options: BenchOptions) -> int:
    """How often ``run_bench`` calls ``on_step``: the seed loop and each variant per size."""
    variants, _ = _variants(options)
    return len(options.sizes) * (1 + len(variants))


def run_bench(
    config: Config, options: BenchOptions, on_step: Callable[[int], None] | None = None
) -> dict[str, Any]:
    """Measures the paths (every variant's, with ``--runtimes``/``--precisions``) and returns
    the report (JSON-ready). ``on_step(1)`` is called after each measured path of each size.
    """
    step = on_step or (lambda _n: None)
    from cervixbatch.model.device import configure_tensorflow

    started = time.perf_counter()
    info = configure_tensorflow()
    variants, notes = _variants(options)
    with tempfile.TemporaryDirectory(prefix="cervixbatch-bench-") as tmp:
        root = Path(tmp)
        own_int8 = False
        if options.configured_models:
            models, own_int8 = configured_bench_models(
                config, root / "models", root / "model-cache"
            )
        else:
            paths = save_bench_models(root / "models", tiny=options.tiny)
            models = str(paths[0]), str(paths[1])
        bench_config = make_bench_config(config, root, options, models)
        int8 = any(v is not None and v.precision is Precision.INT8 for v in variants)
        if int8 and not own_int8:
            quantize_bench_models(
                bench_config,
                root,
                tiny=options.tiny,
                seed=options.seed,
                trained=options.configured_models,
            )
        photos: dict[str, tuple[list[Path], list[Path]]] = {}
        per_size: dict[str, Any] = {}
        seed_models = load_seed_loop_models(bench_config)
        for size in options.sizes:
            name = f"{size[0]}x{size[1]}"
            photos[name] = (
                bench_photos(root / f"photos-{name}", options.count, size, options.seed),
                bench_photos(root / f"warm-{name}", WARMUP, size, options.seed + 1),
            )
            seed_loop(photos[name][1], *seed_models, root / f"seed-warm-{name}")  # warm-up
            per_size[name] = {
                "seed_loop": seed_loop(photos[name][0], *seed_models, root / f"seed-{name}")
            }
            step(1)
        del seed_models
        rows = _measure_variants(bench_config, root, variants, photos, options, step)
    first = rows[0]
    for name, entry in per_size.items():
        entry["end_to_end"] = first["end_to_end"][name]
        entry["ratios"] = {
            "end_to_end_vs_seed_loop": ratio(entry["end_to_end"], entry["seed_loop"]),
            "end_to_end_vs_model_only": ratio(entry["end_to_end"], first["model_only"]),
        }
    report: dict[str, Any] = {
        "count": options.count,
        "batch_size": bench_config.batch.size,
        "runtime": first["runtime"],
        "precision": {"end_to_end": first["precision"], "seed_loop": "float32"},
        "models": {
            "tiny": options.tiny,
            "source": _source(options.configured_models, own_int8),
            **first["inputs"],
        },
        "overlay_max_side": bench_config.output.overlay_max_side,
        "model_only": first["model_only"],
        "sizes": per_size,
    }
    if variants != [None]:
        report["variants"] = [{k: v for k, v in row.items() if k != "inputs"} for row in rows]
        report["notes"] = notes
    report |= {
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "machine": machine_info(info.device, cpu_bf16=info.cpu_bf16),
        "wall_s": round(time.perf_counter() - started, 1),
    }
    return report


def load_seed_loop_models(config: Config) -> tuple[Any, Any]:
    """The bench models as plain float32 Keras models, for the seeds' per-image loop."""
    from cervixbatch.model.stage import load_keras_model
    from cervixbatch.model.stage_names import Stage

    models = config.models
    return (
        load_keras_model(
            models.cervix, Stage.CERVIX, input_size=models.cervix_input_size or None
        ).model,
        load_keras_model(
            models.lesion, Stage.LESION, input_size=models.lesion_input_size or None
        ).model,
    )


def _source(configured: bool, own_int8: bool) -> str:
    if not configured:
        return "seed-size, random weights"
    if own_int8:
        return "configured, with their own INT8 models (made by `quantize`, cards passing)"
    return "configured (any INT8 models quantized by the bench, in its own folder)"


def _variants(options: BenchOptions) -> tuple[list[Variant | None], list[str]]:
    """The variants asked for; ``[None]`` (the configured runtime and precision) without."""
    if not options.runtimes and not options.precisions:
        return [None], []
    chosen, notes = parse_variants(
        options.runtimes or (Runtime.AUTO,), options.precisions or (Precision.AUTO,)
    )
    return list(chosen), notes


def _measure_variants(  # noqa: PLR0917 - one private helper of run_bench
    config: Config,
    root: Path,
    variants: Sequence[Variant | None],
    photos: dict[str, tuple[list[Path], list[Path]]],
    options: BenchOptions,
    step: Callable[[int], None],
) -> list[dict[str, Any]]:
    """Each variant's model-only bound and end to end per size; with variants, also its
    agreement with TensorFlow float32 on the first size's photos."""
    from cervixbatch.model.pair import load_stages, pipeline_for

    reference: Pipeline | None = None
    first_photos = next(iter(photos.values()))[0]
    if variants != [None]:
        reference_config = variant_config(config, _REFERENCE, root)
        reference = pipeline_for(reference_config, load_stages(reference_config))
    rows = []
    for variant in variants:
        run_config = config if variant is None else variant_config(config, variant, root)
        stages = load_stages(run_config)
        row = measure_variant(
            run_config, stages, photos, repeats=2 if options.tiny else 3, step=step
        )
        if reference is not None:
            row["variant"] = f"{stages.runtime}/{stages.precision}"
            row["agreement"] = agreement_with(
                reference,
                stages,
                first_photos,
                run_config.batch.size,
                run_config.report.lesion_positive_threshold,
            )
        rows.append(row)
        del stages
    base = rows[0]
    tf32 = next((r for r in rows if r.get("variant") == _REFERENCE.name), None)
    for row in rows:
        row["ratios"] = {
            "model_only_vs_tensorflow_float32": ratio(row["model_only"], tf32["model_only"])
            if tf32
            else None,
            "end_to_end_vs_first": {
                size: ratio(row["end_to_end"][size], base["end_to_end"][size])
                for size in row["end_to_end"]
            },
        }
    return rows
