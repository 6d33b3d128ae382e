"""The labelled-data options that `train` and `evaluate` share: annotation files and the
label names that map their categories to the two stages, and the report of skipped entries."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click

if TYPE_CHECKING:
    from cervixbatch.tools.annotations.shapes import Labels, Problem

__all__ = ["annotation_options", "echo_problems", "labels_of", "mask_kind_option"]

F = TypeVar("F", bound=Callable[..., Any])


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
        help="Seed project 001's box JSON, COCO JSON or LabelMe JSON: a file or a folder of "
        "them (repeatable); their image paths (seed project 001, COCO) are relative to --images.",
    )(command)


def mask_kind_option(command: F) -> F:
    """--mask-kind: the target masks are regions, or drawn outlines (strokes) to fill."""
    return click.option(
        "--mask-kind",
        type=click.Choice(["region", "outline"]),
        default="region",
        show_default=True,
        help="region: masks paint the area; outline: masks are hand-drawn strokes around it, "
        "filled by the rule in docs/annotations.md (check it with `labels sheet`).",
    )(command)


def labels_of(cervix: tuple[str, ...], lesion: tuple[str, ...]) -> Labels:
    """The label names of each stage; a name given to both is a usage error."""
    from cervixbatch.tools.annotations.shapes import Labels

    overlap = {c.casefold() for c in cervix} & {name.casefold() for name in lesion}
    if overlap:
        raise click.BadParameter(
            f"{', '.join(sorted(overlap))} cannot mean both cervix and lesion",
            param_hint="--cervix-label / --lesion-label",
        )
    return Labels(cervix=cervix, lesion=lesion)


def echo_problems(problems: Sequence[Problem]) -> None:
    """Lists skipped annotation entries on stderr (each names its file and entry)."""
    for problem in problems:
        click.echo(f"cervixbatch: skipped {problem}", err=True)
    if problems:
        click.echo(
            f"cervixbatch: {len(problems)} annotation problem(s); the rest was used", err=True
        )
