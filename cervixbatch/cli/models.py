"""`cervixbatch train`, `evaluate` and `bench`: making models, measuring them and the pipeline."""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click

from cervixbatch.cli.common import app_of, setup_logging
from cervixbatch.config import LogLevel, Precision, Runtime

if TYPE_CHECKING:
    from cervixbatch.tools.annotations import Labels, Problem

__all__ = ["bench", "evaluate", "model_info", "train"]

F = TypeVar("F", bound=Callable[..., Any])

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


# -- train / evaluate ------------------------------------------------------------------


def annotation_options(command: F) -> F:
    """--annotations and the label names that map categories to the two stages."""
    command = click.option(
        "--lesion-label",
        "lesion_labels",
        multiple=True,
        default=("lesion",),
        show_default=True,
        help="COCO category / LabelMe label meaning lesion (repeatable).",
    )(command)
    command = click.option(
        "--cervix-label",
        "cervix_labels",
        multiple=True,
        default=("cervix",),
        show_default=True,
        help="COCO category / LabelMe label meaning cervix (repeatable).",
    )(command)
    return click.option(
        "--annotations",
        type=click.Path(path_type=Path, exists=True),
        multiple=True,
        help="Seed 001 box JSON, COCO JSON or LabelMe JSON: a file or a folder of them "
        "(repeatable); seed and COCO image paths are relative to --images.",
    )(command)


def _labels(cervix: tuple[str, ...], lesion: tuple[str, ...]) -> Labels:
    from cervixbatch.tools.annotations import Labels

    overlap = {c.casefold() for c in cervix} & {name.casefold() for name in lesion}
    if overlap:
        raise click.BadParameter(
            f"{', '.join(sorted(overlap))} cannot mean both cervix and lesion",
            param_hint="--cervix-label / --lesion-label",
        )
    return Labels(cervix=cervix, lesion=lesion)


def _echo_problems(problems: Sequence[Problem]) -> None:
    """Lists skipped annotation entries on stderr (each names its file and entry)."""
    for problem in problems:
        click.echo(f"cervixbatch: skipped {problem}", err=True)
    if problems:
        click.echo(
            f"cervixbatch: {len(problems)} annotation problem(s); the rest was used", err=True
        )


@click.command()
@click.option(
    "--stage", type=click.Choice(["cervix", "lesion"]), required=True, help="Which stage to train."
)
@click.option(
    "--images",
    type=click.Path(path_type=Path, file_okay=False, exists=True),
    required=True,
    help="Folder of images (.jpg, .png, .dcm, ...).",
)
@click.option(
    "--masks",
    type=click.Path(path_type=Path, file_okay=False, exists=True),
    help="Masks of the stage's target, one PNG per image stem.",
)
@click.option(
    "--cervix-masks",
    type=click.Path(path_type=Path, file_okay=False, exists=True),
    help="Cervix masks (the lesion stage crops with them, as inference does).",
)
@annotation_options
@click.option(
    "--out",
    type=click.Path(path_type=Path, dir_okay=False),
    required=True,
    help="The .keras file to write (a model card .card.json goes beside it).",
)
@click.option(
    "--epochs",
    type=click.IntRange(min=1),
    default=30,
    show_default=True,
    help="Most epochs to train (early stopping may end sooner).",
)
@click.option(
    "--batch-size",
    type=click.IntRange(min=1),
    default=8,
    show_default=True,
    help="Images per training step.",
)
@click.option(
    "--learning-rate",
    type=click.FloatRange(min=0, min_open=True),
    help="Adam's initial learning rate, halved when validation stalls (default: the seeds' "
    "1e-4 cervix, 1e-3 lesion; a tenth of that with --init).",
)
@click.option(
    "--init",
    type=click.Path(path_type=Path, dir_okay=False, exists=True),
    help="Fine-tune from this model (.keras, Keras 2 .h5 full model or weights only).",
)
@click.option(
    "--warmup-epochs",
    type=click.FloatRange(min=0),
    default=1.0,
    show_default=True,
    help="Raise the learning rate linearly over this many epochs (0: no warm-up).",
)
@click.option(
    "--collapse-epochs",
    type=click.IntRange(min=0),
    default=3,
    show_default=True,
    help="Stop, saving nothing, when predictions stay constant or validation Dice stays at "
    "its first value this many epochs (0: never).",
)
@click.option(
    "--validation-split",
    type=click.FloatRange(0.0, 0.9),
    default=0.2,
    show_default=True,
    help="Share of images held out for validation (seeded).",
)
@click.option(
    "--seed",
    type=int,
    default=0,
    show_default=True,
    help="Seeds the split, the augmentation and the initial weights.",
)
@click.option(
    "--input-size",
    type=click.IntRange(min=16),
    help="Square input size (default 128 cervix, 512 lesion).",
)
@click.option(
    "--filters",
    type=click.IntRange(min=1),
    help="Width: first-level filters (default 32 cervix, 16 lesion).",
)
@click.option("--dice-term", is_flag=True, help="Lesion: add a Dice term to the BCE loss.")
@click.option(
    "--dropout",
    type=click.FloatRange(0.0, 0.9),
    help="Lesion: dropout rate (default 0.5, the seed's builder default).",
)
@click.option(
    "--patience",
    type=click.IntRange(min=1),
    default=8,
    show_default=True,
    help="Epochs without validation improvement before stopping.",
)
@click.option("--resume", is_flag=True, help="Continue from the checkpoint or --out.")
@click.option(
    "--augment",
    type=click.Choice(["seed", "colposcopy"]),
    default="seed",
    show_default=True,
    help="seed: flips, rotation, shift, zoom, shear and mild colour jitter; colposcopy: also "
    "scale from close-up to full view, colour casts, grey renderings, blur, noise, JPEG.",
)
@click.pass_context
def train(
    ctx: click.Context,
    stage: str,
    images: Path,
    masks: Path | None,
    cervix_masks: Path | None,
    annotations: tuple[Path, ...],
    cervix_labels: tuple[str, ...],
    lesion_labels: tuple[str, ...],
    out: Path,
    epochs: int,
    batch_size: int,
    learning_rate: float | None,
    init: Path | None,
    warmup_epochs: float,
    collapse_epochs: int,
    validation_split: float,
    seed: int,
    input_size: int | None,
    filters: int | None,
    dice_term: bool,
    dropout: float | None,
    patience: int,
    resume: bool,
    augment: str,
) -> None:
    """Train one stage on labelled images; the best epoch on validation is kept.

    Labels come from mask folders (--masks, --cervix-masks) or annotation files
    (--annotations: seed 001's box JSON, COCO or LabelMe); bad entries are listed and
    skipped. A run that collapses to a constant mask stops and saves nothing.
    """
    from cervixbatch.model.framework import require_tensorflow

    require_tensorflow()
    from cervixbatch.model.stage import Stage
    from cervixbatch.tools.train import TrainOptions, train_stage

    config = app_of(ctx).config
    setup_logging(config)
    result = train_stage(
        TrainOptions(
            stage=Stage(stage),
            images=images,
            masks=masks,
            out=out,
            cervix_masks=cervix_masks,
            annotations=annotations,
            labels=_labels(cervix_labels, lesion_labels),
            init=init,
            warmup_epochs=warmup_epochs,
            collapse_epochs=collapse_epochs,
            epochs=epochs,
            batch_size=batch_size,
            learning_rate=learning_rate,
            validation_split=validation_split,
            seed=seed,
            resume=resume,
            input_size=input_size,
            filters=filters,
            dice_term=dice_term,
            dropout=dropout,
            margin=config.models.margin,
            patience=patience,
            augment=augment,
        )
    )
    _echo_problems(result.problems)
    click.echo(
        f"{result.model_path}: {result.epochs_run} epochs, validation Dice "
        f"{result.validation['val_dice']:.3f}, IoU {result.validation['val_iou']:.3f} "
        f"(card: {result.card_path})",
        err=True,
    )


@click.command()
@click.option(
    "--images",
    type=click.Path(path_type=Path, file_okay=False, exists=True),
    required=True,
    help="Folder of images.",
)
@click.option(
    "--cervix-masks",
    type=click.Path(path_type=Path, file_okay=False, exists=True),
    help="Ground-truth cervix masks (or --annotations).",
)
@click.option(
    "--lesion-masks",
    type=click.Path(path_type=Path, file_okay=False, exists=True),
    help="Ground-truth lesion masks (or --annotations).",
)
@annotation_options
@click.option("--cervix-model", help="Override models.cervix (builtin:demo or a .keras file).")
@click.option("--lesion-model", help="Override models.lesion.")
@click.option(
    "--runtime",
    type=click.Choice([r.value for r in Runtime]),
    help="Override models.runtime (compare runtimes on the same labelled images).",
)
@click.option(
    "--precision",
    type=click.Choice([p.value for p in Precision]),
    help="Override models.precision (e.g. int8, after `cervixbatch quantize`).",
)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["table", "json"]),
    default="table",
    show_default=True,
    help="A table for people or JSON for scripts.",
)
@click.option(
    "--per-image",
    type=click.Path(path_type=Path, dir_okay=False),
    help="Also write one CSV row per image here.",
)
@click.pass_context
def evaluate(
    ctx: click.Context,
    images: Path,
    cervix_masks: Path | None,
    lesion_masks: Path | None,
    annotations: tuple[Path, ...],
    cervix_labels: tuple[str, ...],
    lesion_labels: tuple[str, ...],
    cervix_model: str | None,
    lesion_model: str | None,
    runtime: str | None,
    precision: str | None,
    fmt: str,
    per_image: Path | None,
) -> None:
    """Run both stages end to end and print Dice and IoU per stage.

    Truth from mask folders or annotation files (seed 001 box JSON, COCO, LabelMe); where
    the cervix truth is a box, the box IoU of the predicted cervix region is given too.
    """
    import json

    from cervixbatch.cli.progress import progress_bar
    from cervixbatch.runner import load_stages, pipeline_for
    from cervixbatch.tools.evaluate import evaluate as run_evaluation
    from cervixbatch.tools.evaluate import write_per_image

    config = app_of(ctx).config
    config = dataclasses.replace(
        config,
        models=dataclasses.replace(
            config.models,
            cervix=cervix_model or config.models.cervix,
            lesion=lesion_model or config.models.lesion,
            runtime=Runtime(runtime) if runtime else config.models.runtime,
            precision=Precision(precision) if precision else config.models.precision,
        ),
    )
    setup_logging(config)
    labels = _labels(cervix_labels, lesion_labels)
    stages = load_stages(config)
    total = sum(1 for p in images.iterdir() if p.is_file())
    with progress_bar("evaluate", total=total) as advance:
        result = run_evaluation(
            pipeline_for(config, stages),
            images,
            cervix_masks,
            lesion_masks,
            annotations=annotations,
            labels=labels,
            batch_size=config.batch.size,
            on_progress=advance,
        )
    _echo_problems(result.problems)
    if per_image is not None:
        write_per_image(per_image, result.scores)
    if fmt == "json":
        made_by = {"runtime": stages.runtime, "precision": stages.precision}
        click.echo(json.dumps({**result.as_dict(), **made_by}, indent=2))
        return
    click.echo(f"{result.images} images ({stages.runtime}, {stages.precision})")
    for stage, values in result.stages.items():
        click.echo(f"{stage:7s} " + "  ".join(f"{k} {v:.4f}" for k, v in values.items()))


@click.command("model-info")
@click.option(
    "--stage", type=click.Choice(["cervix", "lesion"]), required=True, help="The file's stage."
)
@click.option(
    "--input-size",
    type=click.IntRange(min=16),
    help="Weights-only files: the square size to build at (default: the seed's).",
)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["text", "json"]),
    default="text",
    show_default=True,
    help="A line for people or JSON for scripts.",
)
@click.argument("model", type=click.Path(path_type=Path, dir_okay=False, exists=True))
def model_info(stage: str, input_size: int | None, fmt: str, model: Path) -> None:
    """Load a model file as the daemon would and say what it is (format, architecture,
    input, version), or why it cannot be loaded: check a file before configuring it."""
    import json

    from cervixbatch.model.device import configure_tensorflow
    from cervixbatch.model.loading import load_model_file

    configure_tensorflow()
    loaded = load_model_file(model, stage, input_size=input_size)
    info = {
        "file": str(model),
        "stage": stage,
        "format": loaded.format,
        "architecture": loaded.architecture,
        "input_shape": list(loaded.model.input_shape[1:]),
        "output_channels": int(loaded.model.output_shape[-1]),
        "parameters": int(loaded.model.count_params()),
        "version": loaded.version,
    }
    if fmt == "json":
        click.echo(json.dumps(info, indent=2))
        return
    click.echo(f"{model.name}: {loaded.description}; version {loaded.version[:12]}")


# -- bench -----------------------------------------------------------------------------


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
    "--precision",
    type=click.Choice([p.value for p in Precision]),
    help="Override models.precision.",
)
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
    "false) on the same photos, beside the seed-style loop.",
)
@click.option(
    "--output",
    type=click.Path(path_type=Path, dir_okay=False),
    help="Also write the JSON report to this file.",
)
@click.pass_context
def bench(
    ctx: click.Context,
    count: int | None,
    sizes_text: str | None,
    tiny: bool,
    precision: str | None,
    runtimes_text: str | None,
    precisions_text: str | None,
    batch_size: int | None,
    simulate_text: str | None,
    compare_schedules: bool,
    output: Path | None,
) -> None:
    """Images/second end to end against the seed-style loop and the model-only bound,
    in one run on synthetic photos; prints a JSON report. With --runtimes/--precisions,
    every pair side by side (model-only, end to end, agreement with TensorFlow float32)."""
    from cervixbatch.tools.bench import (
        DEFAULT_SIZES,
        TINY_SIZES,
        BenchOptions,
        bench_steps,
        dumps,
        run_bench,
    )
    from cervixbatch.tools.bench_runtimes import render_table
    from cervixbatch.tools.synth import parse_size

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
    )
    from cervixbatch.cli.progress import progress_bar
    from cervixbatch.tools.bench_schedule import BenchOptions as ScheduleOptions

    schedule = ScheduleOptions(
        count=options.count,
        sizes=options.sizes,
        tiny=tiny,
        precision=options.precision,
        batch_size=batch_size,
    )
    if device_ms:
        from cervixbatch.tools.bench_device import run_device_bench

        with progress_bar("bench", total=2 * len(options.sizes) * len(device_ms)) as advance:
            report = run_device_bench(config, schedule, device_ms, on_step=advance)
    elif compare_schedules:
        from cervixbatch.tools.bench_schedule import run_bench as run_schedule_bench

        with progress_bar("bench", total=3 * len(options.sizes)) as advance:
            report = run_schedule_bench(config, schedule, on_step=advance)
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
        from cervixbatch.outputs.outbox import write_atomic

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
