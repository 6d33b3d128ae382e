"""`cervixbatch quantize`: the INT8 models of the configured stages, with agreement cards."""

from __future__ import annotations

from pathlib import Path

import click

from cervixbatch.cli.common import app_of, setup_logging

__all__ = ["quantize"]


@click.command()
@click.option(
    "--images",
    type=click.Path(path_type=Path, file_okay=False, exists=True),
    help="Your own photos (searched recursively). Without it: synthetic photos, with a warning.",
)
@click.option(
    "--count",
    type=click.IntRange(min=1),
    default=300,
    show_default=True,
    help="Calibration photos (the rest up to --held-out are held out for the agreement).",
)
@click.option(
    "--held-out",
    type=click.IntRange(min=1),
    default=50,
    show_default=True,
    help="Photos never calibrated on, where float and INT8 masks are compared (at most a "
    "fifth of the photos).",
)
@click.option(
    "--selection",
    type=click.IntRange(min=0),
    default=60,
    show_default=True,
    help="Calibration photos the search never sees, where its tries are checked against "
    "the gate before one is kept (at most a fifth of the calibration photos; 0: none).",
)
@click.option("--seed", type=int, default=0, show_default=True, help="Random seed of the split.")
@click.option(
    "--max-drop",
    type=click.FloatRange(min=0.0, max=1.0),
    help="How far the agreement with the float model on calibration photos may drop before "
    "the most sensitive layers are kept in float (default: half the gate's margin, "
    "(1 - models.min_agreement_dice) / 2); 0: every layer in INT8.",
)
@click.pass_context
def quantize(
    ctx: click.Context,
    *,
    images: Path | None,
    count: int,
    held_out: int,
    selection: int,
    seed: int,
    max_drop: float | None,
) -> None:
    """Write INT8 models of both stages for the OpenVINO runtime, each with a card: the
    calibration set, and the agreement with the float model on held-out photos (mean Dice
    of the masks, the largest disagreement, the lesion decisions flipped, the largest
    change of lesion fraction). `models.precision = "int8"` uses them, `"auto"` where
    they pass; a stage whose mean Dice is below `models.min_agreement_dice`, or that
    flips more than 2 % of the lesion decisions, is refused."""
    from cervixbatch.errors import ModelError
    from cervixbatch.model.runtime import OPENVINO_MISSING, openvino_available
    from cervixbatch.tools.quantize.run import QuantizeOptions, quantize_models

    config = app_of(ctx).config
    setup_logging(config)
    if not openvino_available():
        raise ModelError(OPENVINO_MISSING)
    if images is None:
        click.echo(
            "cervixbatch: warning: no --images: calibrating and checking on synthetic "
            "photos. The agreement on your own photos is unknown; run again with "
            "--images DIR (about 300 of your photos) before clinical use.",
            err=True,
        )
    options = QuantizeOptions(
        images=images,
        count=count,
        held_out=held_out,
        selection=selection,
        seed=seed,
        max_drop=max_drop,
    )
    cards = quantize_models(
        config, options, on_progress=lambda text: click.echo(f"quantize: {text}", err=True)
    )
    for card in cards:
        verdict = "ok" if card.passed else "REFUSED by the gate"
        click.echo(
            f"{card.stage:7s} mean Dice {card.mean_dice:.4f} on {card.held_out} held-out "
            f"photos (worst {card.min_dice:.4f}: {card.worst_image}), lesion decision "
            f"flipped on {card.decision_flips} ({card.decision_flip_share:.1%}), largest "
            f"lesion-fraction change {card.max_lesion_fraction_change:.3f}, calibrated on "
            f"{card.calibration}: {verdict}\n        {card.reason}\n        {card.paths.xml}"
            f"\n        {card.paths.card}"
        )
        if card.convolutions_in_int8 == 0:
            click.echo(
                f"        {card.stage}: the search kept every convolution in float, so this "
                'model has no INT8 speed; precision "auto" runs the stage as it would '
                "without it (try more calibration photos, or --max-drop)"
            )
