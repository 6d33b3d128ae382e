"""`cervixbatch model-info`: a model file loaded as the daemon would, and what it is."""

from __future__ import annotations

from pathlib import Path

import click

__all__ = ["model_info"]


@click.command("model-info")
@click.option(
    "--stage", type=click.Choice(["cervix", "lesion"]), required=True, help="The file's stage."
)
@click.option(
    "--input-size",
    type=click.IntRange(min=16),
    help="Weights-only files: the square size to build at (default: the seed projects').",
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
