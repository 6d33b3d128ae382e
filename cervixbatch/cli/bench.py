"""`cervixbatch bench`: images/second of the pipeline against the seed projects' per-image
loop and the model-only bound; runtimes, precisions, schedules and a simulated device."""

from __future__ import annotations

import dataclasses
import enum
from pathlib import Path
from typing import TypeVar

import click

from cervixbatch.cli.common import app_of, precision_option, setup_logging
from cervixbatch.config import LogLevel, Precision, Runtime

__all__ = ["bench"]

E = TypeVar("E", bound=enum.Enum)


def _choices(text: str | None, kind: type[E], option: str) -> tuple[E, ...]:
    """A comma-separated list of enum values; a bad one is a usage error naming them all."""
    if not text:
        return ()
    try:
        return tuple(kind(part.strip()) for part in text.split(",") if part.strip())
    except ValueError:
        allowed = ", ".join(str(m.value) for m in kind)
        raise click.BadParameter(f"choose from {allowed}", param_hint=option) from None


@click.command()
@click.option(
    "--count", type=click.IntRange(min=1), help="Photos per size (default 16; 4 with --tiny)."
)
@click.option(
    "--sizes",
    "sizes_text",
    help="Comma-separated WxH (default 4128x3096,1600x1200; 320x240 with --tiny).",
)
@click.option("--tiny", is_flag=True, help="Tiny models and small photos: a smoke run.")
@click.option(
    "--configured-models",
    is_flag=True,
    help="Bench the configured models (models.cervix/lesion, e.g. builtin:demo or yours) "
    "instead of seed-size models with random weights: speed and, with int8, an agreement "
    "that means something (quantized with accuracy control, as `quantize` does).",
)
@precision_option("Override models.precision.")
@click.option(
    "--runtimes",
    "runtimes_text",
    help="Comma-separated runtimes to compare side by side: tensorflow, openvino, auto.",
)
@click.option(
    "--precisions",
    "precisions_text",
    help="Comma-separated precisions to compare (with each runtime): e.g. float32,int8. "
    "INT8 quantizes the bench models first.",
)
@click.option("--batch-size", type=click.IntRange(min=1), help="Override batch.size.")
@click.option(
    "--simulate-device",
    "simulate_text",
    metavar="MS[,MS...]",
    help="Replace both models by a stand-in accelerator taking MS milliseconds per image "
    "(no CPU); compares the sequential and pipelined schedules against their bound.",
)
@click.option(
    "--compare-schedules",
    is_flag=True,
    help="The real models end to end under both schedules (batch.pipeline true and "
    "false) on the same photos, beside the seed projects' per-image loop.",
)
@click.option(
    "--output",
    type=click.Path(path_type=Path, dir_okay=False),
    help="Also write the JSON report to this file.",
)
@click.pass_context
def bench(
    ctx: click.Context,
    *,
    count: int | None,
    sizes_text: str | None,
    tiny: bool,
    configured_models: bool,
    precision: str | None,
    runtimes_text: str | None,
    precisions_text: str | None,
    batch_size: int | None,
    simulate_text: str | None,
    compare_schedules: bool,
    output: Path | None,
) -> None:
    """Images/second end to end against the seed projects' per-image loop and the
    model-only bound, in one run on synthetic photos; prints a JSON report. With
    --runtimes/--precisions, every pair side by side (model-only, end to end, agreement
    with TensorFlow float32)."""
    from cervixbatch.tools.bench.run import bench_steps, run_bench
    from cervixbatch.tools.bench.runtimes import render_table
    from cervixbatch.tools.bench.setup import DEFAULT_SIZES, TINY_SIZES, BenchOptions, dumps
    from cervixbatch.tools.synth.v1 import parse_size

    config = app_of(ctx).config
    # batch_done lines for every batch would bury the report: warnings only
    setup_logging(
        dataclasses.replace(
            config, logging=dataclasses.replace(config.logging, level=LogLevel.WARNING)
        )
    )
    try:
        sizes = (
            tuple(parse_size(part) for part in sizes_text.split(",") if part.strip())
            if sizes_text
            else (TINY_SIZES if tiny else DEFAULT_SIZES)
        )
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--sizes") from None
    device_ms = _device_times(simulate_text) if simulate_text else ()
    options = BenchOptions(
        count=count or (4 if tiny else 48 if device_ms else 16),
        sizes=sizes or DEFAULT_SIZES,
        tiny=tiny,
        precision=Precision(precision) if precision else None,
        runtimes=_choices(runtimes_text, Runtime, "--runtimes"),
        precisions=_choices(precisions_text, Precision, "--precisions"),
        batch_size=batch_size,
        configured_models=configured_models,
    )
    if configured_models and (device_ms or compare_schedules):
        raise click.UsageError(
            "--configured-models goes with the runtime bench only (not --simulate-device "
            "or --compare-schedules)"
        )
    from cervixbatch.cli.progress import progress_bar

    if device_ms:
        from cervixbatch.tools.bench.device import run_device_bench

        with progress_bar("bench", total=2 * len(options.sizes) * len(device_ms)) as advance:
            report = run_device_bench(config, options, device_ms, on_step=advance)
    elif compare_schedules:
        from cervixbatch.tools.bench.schedule import run_bench as run_schedule_bench

        with progress_bar("bench", total=3 * len(options.sizes)) as advance:
            report = run_schedule_bench(config, options, on_step=advance)
    else:
        with progress_bar("bench", total=bench_steps(options)) as advance:
            report = run_bench(config, options, on_step=advance)
    text = dumps(report)
    click.echo(text)
    if "variants" in report:
        click.echo(render_table(report["variants"], list(report["sizes"])), err=True)
        for note in report["notes"]:
            click.echo(f"note: {note}", err=True)
    if output is not None:
        from cervixbatch.outputs.atomic import write_atomic

        output.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(output.resolve(), (text + "\n").encode("utf-8"))


def _device_times(text: str) -> tuple[float, ...]:
    """``--simulate-device 5,20,50``: positive milliseconds per image."""
    try:
        times = tuple(float(part) for part in text.split(",") if part.strip())
    except ValueError:
        times = ()
    if not times or any(not 0 < ms < 10_000 for ms in times):
        raise click.BadParameter(
            f"expected milliseconds per image, e.g. 5 or 5,20,50, not {text!r}",
            param_hint="--simulate-device",
        )
    return times
