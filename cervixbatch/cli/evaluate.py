"""`cervixbatch evaluate`: both stages end to end on labelled images, Dice and IoU per stage."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import click

from cervixbatch.cli.common import app_of, format_option, precision_option, setup_logging
from cervixbatch.cli.labels import annotation_options, echo_problems, labels_of, mask_kind_option
from cervixbatch.config import Precision, Runtime

__all__ = ["evaluate"]


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
@mask_kind_option
@click.option("--cervix-model", help="Override models.cervix (builtin:demo or a .keras file).")
@click.option("--lesion-model", help="Override models.lesion.")
@click.option(
    "--runtime",
    type=click.Choice([r.value for r in Runtime]),
    help="Override models.runtime (compare runtimes on the same labelled images).",
)
@precision_option("Override models.precision (e.g. int8, after `cervixbatch quantize`).")
@format_option("table", "json", help_text="A table for people or JSON for scripts.")
@click.option(
    "--per-image",
    type=click.Path(path_type=Path, dir_okay=False),
    help="Also write one CSV row per image here.",
)
@click.pass_context
def evaluate(
    ctx: click.Context,
    *,
    images: Path,
    cervix_masks: Path | None,
    lesion_masks: Path | None,
    annotations: tuple[Path, ...],
    cervix_labels: tuple[str, ...],
    lesion_labels: tuple[str, ...],
    mask_kind: str,
    cervix_model: str | None,
    lesion_model: str | None,
    runtime: str | None,
    precision: str | None,
    fmt: str,
    per_image: Path | None,
) -> None:
    """Run both stages end to end and print Dice and IoU per stage.

    Truth from mask folders or annotation files (seed project 001's box JSON, COCO, LabelMe); where
    the cervix truth is a box, the box IoU of the predicted cervix region is given too.
    """
    import json

    from cervixbatch.cli.progress import progress_bar
    from cervixbatch.model.pair import load_stages, pipeline_for
    from cervixbatch.tools.evaluation.evaluate import evaluate as run_evaluation
    from cervixbatch.tools.evaluation.evaluate import write_per_image

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
    labels = labels_of(cervix_labels, lesion_labels)
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
            mask_kind=mask_kind,
            batch_size=config.batch.size,
            on_progress=advance,
        )
    echo_problems(result.problems)
    if per_image is not None:
        write_per_image(per_image, result.scores)
    if fmt == "json":
        made_by = {"runtime": stages.runtime, "precision": stages.precision}
        click.echo(json.dumps({**result.as_dict(), **made_by}, indent=2))
        return
    click.echo(f"{result.images} images ({stages.runtime}, {stages.precision})")
    for stage, values in result.stages.items():
        click.echo(f"{stage:7s} " + "  ".join(f"{k} {v:.4f}" for k, v in values.items()))
