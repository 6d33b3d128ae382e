"""`cervixbatch train`: one stage trained on labelled images, the best epoch kept."""

from __future__ import annotations

from pathlib import Path

import click

from cervixbatch.cli.common import app_of, setup_logging
from cervixbatch.cli.labels import annotation_options, echo_problems, labels_of, mask_kind_option
from cervixbatch.model.stage_names import Stage

__all__ = ["train"]


@click.command()
@click.option(
    "--stage",
    type=click.Choice([stage.value for stage in Stage]),
    required=True,
    help="Which stage to train.",
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
@mask_kind_option
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
    help="Adam's initial learning rate, halved when validation stalls (default: the seed "
    "projects' 1e-4 cervix, 1e-3 lesion; a tenth of that with --init).",
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
    help="Share of images held out for validation (drawn with --seed).",
)
@click.option(
    "--validation-list",
    type=click.Path(path_type=Path, dir_okay=False, exists=True),
    help="Validate on the images whose stems this file lists, one a line (a fixed split, "
    "e.g. by patient), instead of --validation-split.",
)
@click.option(
    "--seed",
    type=int,
    default=0,
    show_default=True,
    help="Random seed of the split, the augmentation and the initial weights.",
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
@click.option(
    "--dice-term/--no-dice-term",
    default=True,
    show_default=True,
    help="Lesion: add a Dice term to the BCE loss (small, imbalanced lesions need it).",
)
@click.option(
    "--seed-recipe",
    is_flag=True,
    help="Lesion: seed project 000's recipe, BCE alone (no Dice term).",
)
@click.option(
    "--dropout",
    type=click.FloatRange(0.0, 0.9),
    help="Lesion: dropout rate (default 0.5, seed project 000's builder default).",
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
    help="seed: the seed projects' flips, rotation, shift, zoom, shear and mild colour "
    "jitter; colposcopy: also scale from close-up to full view, colour casts, grey "
    "renderings, blur, noise, JPEG.",
)
@click.pass_context
def train(
    ctx: click.Context,
    *,
    stage: str,
    images: Path,
    masks: Path | None,
    cervix_masks: Path | None,
    annotations: tuple[Path, ...],
    cervix_labels: tuple[str, ...],
    lesion_labels: tuple[str, ...],
    mask_kind: str,
    out: Path,
    epochs: int,
    batch_size: int,
    learning_rate: float | None,
    init: Path | None,
    warmup_epochs: float,
    collapse_epochs: int,
    validation_split: float,
    validation_list: Path | None,
    seed: int,
    input_size: int | None,
    filters: int | None,
    dice_term: bool,
    seed_recipe: bool,
    dropout: float | None,
    patience: int,
    resume: bool,
    augment: str,
) -> None:
    """Train one stage on labelled images; the best epoch on validation is kept.

    Labels come from mask folders (--masks, --cervix-masks) or annotation files
    (--annotations: seed project 001's box JSON, COCO or LabelMe); bad entries are listed and
    skipped. A run that collapses to a constant mask stops and saves nothing.
    """
    from cervixbatch.model.framework import require_tensorflow

    require_tensorflow()
    from cervixbatch.tools.training.options import TrainOptions
    from cervixbatch.tools.training.train import train_stage

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
            labels=labels_of(cervix_labels, lesion_labels),
            init=init,
            warmup_epochs=warmup_epochs,
            collapse_epochs=collapse_epochs,
            epochs=epochs,
            batch_size=batch_size,
            learning_rate=learning_rate,
            validation_split=validation_split,
            validation_list=validation_list,
            mask_kind=mask_kind,
            seed=seed,
            resume=resume,
            input_size=input_size,
            filters=filters,
            dice_term=dice_term,
            seed_recipe=seed_recipe,
            dropout=dropout,
            margin=config.models.margin,
            patience=patience,
            augment=augment,
        )
    )
    echo_problems(result.problems)
    click.echo(
        f"{result.model_path}: {result.epochs_run} epochs, validation Dice "
        f"{result.validation['val_dice']:.3f}, IoU {result.validation['val_iou']:.3f} "
        f"(card: {result.card_path})",
        err=True,
    )
