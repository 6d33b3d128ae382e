"""``cervixbatch synth``: synthetic photos with ground-truth masks, first or second
generation, with settings held out or required."""

from __future__ import annotations

from pathlib import Path

import click

__all__ = ["synth"]

_FEATURES_HELP = (
    "close_up, full_view, metal_speculum, plastic_speculum, lesion, glare_cluster, mucus, "
    "blood, ectropion, nabothian_cysts, green_filter, strong_jpeg, low_resolution, defocus, "
    "motion_blur"
)


@click.command()
@click.option("--count", type=click.IntRange(min=1), required=True, help="How many photos.")
@click.option(
    "--out",
    type=click.Path(path_type=Path, file_okay=False),
    required=True,
    help="Folder to write images/, cervix/ and lesion/ into.",
)
@click.option(
    "--seed",
    type=int,
    default=0,
    show_default=True,
    help="Random seed: the same seed gives the same set.",
)
@click.option(
    "--size",
    "size_text",
    help="Fixed size WxH (default: varied; v2 also draws 480x360 to 800x600 archive sizes).",
)
@click.option(
    "--generator",
    type=click.Choice(["v1", "v2"]),
    default="v2",
    show_default=True,
    help="v2: close-ups and full views, speculums, glare, casts (issue 16); "
    "v1: the first generation, reproduced byte for byte.",
)
@click.option(
    "--hold-out",
    "hold_out",
    multiple=True,
    metavar="FEATURES",
    help=f"v2 settings no photo shows, comma-separated (for training sets): {_FEATURES_HELP}.",
)
@click.option(
    "--only",
    multiple=True,
    metavar="FEATURES",
    help="v2 settings every photo shows, comma-separated (for evaluation sets).",
)
def synth(
    *,
    count: int,
    out: Path,
    seed: int,
    size_text: str | None,
    generator: str,
    hold_out: tuple[str, ...],
    only: tuple[str, ...],
) -> None:
    """Make synthetic colposcopy-like photos with ground-truth masks."""
    from cervixbatch.cli.progress import progress_bar
    from cervixbatch.tools.synth.v1 import parse_size

    try:
        size = parse_size(size_text) if size_text else None
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--size") from None
    if generator == "v1":
        if hold_out or only:
            raise click.UsageError(
                "--hold-out and --only choose synth-v2 settings: use --generator v2"
            )
        from cervixbatch.tools.synth.v1 import write_dataset as write_v1

        with progress_bar("synth", total=count) as advance:
            stems = write_v1(out, count, seed=seed, size=size, on_progress=lambda _i: advance(1))
    else:
        from cervixbatch.tools.synth.v2 import Selection, parse_features
        from cervixbatch.tools.synth.v2.dataset import write_dataset as write_v2

        try:
            selection = Selection(hold_out=parse_features(hold_out), only=parse_features(only))
        except ValueError as exc:
            raise click.BadParameter(str(exc), param_hint="--hold-out/--only") from None
        with progress_bar("synth", total=count) as advance:
            stems = write_v2(
                out,
                count,
                seed=seed,
                size=size,
                selection=selection,
                on_progress=lambda _i: advance(1),
            )
    click.echo(f"wrote {len(stems)} photos with masks to {out}", err=True)
