"""`cervixbatch labels sheet`: a contact sheet to check how outline masks are filled."""

from __future__ import annotations

from pathlib import Path

import click

__all__ = ["labels"]

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".tif", ".tiff", ".bmp", ".webp")


@click.group()
def labels() -> None:
    """Check labelled data by eye."""


@labels.command()
@click.option(
    "--images",
    type=click.Path(path_type=Path, file_okay=False, exists=True),
    required=True,
    help="Folder of photos.",
)
@click.option(
    "--masks",
    type=click.Path(path_type=Path, file_okay=False, exists=True),
    required=True,
    help="Outline masks (strokes), one PNG per photo stem.",
)
@click.option(
    "--out",
    type=click.Path(path_type=Path, dir_okay=False),
    required=True,
    help="The contact sheet to write (.png or .jpg).",
)
@click.option(
    "--limit",
    type=click.IntRange(min=1),
    default=48,
    show_default=True,
    help="Most photos on the sheet (those with a stroke; undecided and partial first).",
)
@click.option(
    "--columns", type=click.IntRange(min=1), default=2, show_default=True, help="Sheet columns."
)
def sheet(images: Path, masks: Path, out: Path, limit: int, columns: int) -> None:
    """Photo | stroke | filled region, one row per photo, for outline masks.

    Shows what the outline rule (docs/annotations.md) makes of each stroke, with its status
    (filled, partial, undecided), so the rule can be checked on your own data before
    `train --mask-kind outline`. Prints how many photos had each status.
    """
    import cv2

    from cervixbatch.tools.annotations.outline_sheet import outline_row, write_sheet

    rows = []
    counts: dict[str, int] = {}
    for photo in sorted(images.iterdir()):
        mask = masks / f"{photo.stem}.png"
        if photo.suffix.lower() not in IMAGE_SUFFIXES or not mask.is_file():
            continue
        stroke = cv2.imread(str(mask), cv2.IMREAD_GRAYSCALE)
        bgr = cv2.imread(str(photo), cv2.IMREAD_COLOR)
        if stroke is None or bgr is None:
            click.echo(f"cervixbatch: skipped {photo.name}: not a readable image", err=True)
            continue
        row, filled = outline_row(bgr, stroke, photo.stem)
        counts[filled.status.value] = counts.get(filled.status.value, 0) + 1
        if stroke.any():
            rows.append((["undecided", "partial", "filled"].index(filled.status.value), row))
    if not rows:
        raise click.ClickException(f"no photo in {images} has a stroke in {masks}")
    rows.sort(key=lambda item: item[0])
    write_sheet(out, [row for _, row in rows[:limit]], columns=columns)
    click.echo(" ".join(f"{k} {v}" for k, v in sorted(counts.items())) + f" → {out}")
