"""`cervixbatch train`, `evaluate` and `bench`: making models, measuring them and the pipeline."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import click

from cervixbatch.cli.common import app_of, setup_logging
from cervixbatch.config import Precision

__all__ = ["bench", "evaluate", "train"]


# -- train / evaluate ------------------------------------------------------------------


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
    required=True,
    help="Masks of the stage's target, one PNG per image stem.",
)
@click.option(
    "--cervix-masks",
    type=click.Path(path_type=Path, file_okay=False, exists=True),
    help="Cervix masks (the lesion stage crops with them, as inference does).",
)
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
    default=1e-3,
    show_default=True,
    help="Adam's initial learning rate (halved when validation stalls).",
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
@click.pass_context
def train(
    ctx: click.Context,
    stage: str,
    images: Path,
    masks: Path,
    cervix_masks: Path | None,
    out: Path,
    epochs: int,
    batch_size: int,
    learning_rate: float,
    validation_split: float,
    seed: int,
    input_size: int | None,
    filters: int | None,
    dice_term: bool,
    dropout: float | None,
    patience: int,
    resume: bool,
) -> None:
    """Train one stage on labelled images; the best epoch on validation is kept."""
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
        )
    )
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
    required=True,
    help="Ground-truth cervix masks.",
)
@click.option(
    "--lesion-masks",
    type=click.Path(path_type=Path, file_okay=False, exists=True),
    required=True,
    help="Ground-truth lesion masks.",
)
@click.option("--cervix-model", help="Override models.cervix (builtin:demo or a .keras file).")
@click.option("--lesion-model", help="Override models.lesion.")
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
    cervix_masks: Path,
    lesion_masks: Path,
    cervix_model: str | None,
    lesion_model: str | None,
    fmt: str,
    per_image: Path | None,
) -> None:
    """Run both stages end to end and print Dice and IoU per stage."""
    import json

    from cervixbatch.cli.progress import progress_bar
    from cervixbatch.runner import load_stages, pipeline_for
    from cervixbatch.tools.evaluate import evaluate as run_evaluation
    from cervixbatch.tools.evaluate import write_per_image

    config = app_of(ctx).config
    if cervix_model or lesion_model:
        config = dataclasses.replace(
            config,
            models=dataclasses.replace(
                config.models,
                cervix=cervix_model or config.models.cervix,
                lesion=lesion_model or config.models.lesion,
            ),
        )
    setup_logging(config)
    stages = load_stages(config)
    total = sum(1 for p in images.iterdir() if p.is_file())
    with progress_bar("evaluate", total=total) as advance:
        result = run_evaluation(
            pipeline_for(config, stages),
            images,
            cervix_masks,
            lesion_masks,
            batch_size=config.batch.size,
            on_progress=advance,
        )
    if per_image is not None:
        write_per_image(per_image, result.scores)
    if fmt == "json":
        click.echo(json.dumps(result.as_dict(), indent=2))
        return
    click.echo(f"{result.images} images")
    for stage, values in result.stages.items():
        click.echo(f"{stage:7s} " + "  ".join(f"{k} {v:.4f}" for k, v in values.items()))


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
@click.option("--batch-size", type=click.IntRange(min=1), help="Override batch.size.")
@click.option(
    "--simulate-device",
    "simulate_text",
    metavar="MS[,MS...]",
    help="Replace both models by a stand-in accelerator taking MS milliseconds per image "
    "(no CPU); compares the sequential and pipelined schedules against their bound.",
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
    batch_size: int | None,
    simulate_text: str | None,
    output: Path | None,
) -> None:
    """Images/second end to end against the seed-style loop and the model-only bound,
    in one run on synthetic photos; prints a JSON report."""
    from cervixbatch.tools.bench import DEFAULT_SIZES, TINY_SIZES, BenchOptions, dumps, run_bench
    from cervixbatch.tools.synth import parse_size

    config = app_of(ctx).config
    # batch_done lines for every batch would bury the report: warnings only
    setup_logging(
        dataclasses.replace(config, logging=dataclasses.replace(config.logging, level="warning"))
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
        batch_size=batch_size,
    )
    from cervixbatch.cli.progress import progress_bar

    if device_ms:
        from cervixbatch.tools.bench_device import run_device_bench

        with progress_bar("bench", total=2 * len(options.sizes) * len(device_ms)) as advance:
            report = run_device_bench(config, options, device_ms, on_step=advance)
    else:
        with progress_bar("bench", total=3 * len(options.sizes)) as advance:
            report = run_bench(config, options, on_step=advance)
    text = dumps(report)
    click.echo(text)
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
