"""`cervixbatch model-info`: a model file loaded as the daemon would, and what it is."""

from __future__ import annotations

from pathlib import Path

import click

from cervixbatch.cli.common import app_of

__all__ = ["model_info"]


@click.command("model-info")
@click.option(
    "--stage",
    type=click.Choice(["cervix", "lesion"]),
    help="The file's stage (required for a file; builtin:demo shows both stages without it).",
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
@click.argument("model")
@click.pass_context
def model_info(
    ctx: click.Context, stage: str | None, input_size: int | None, fmt: str, model: str
) -> None:
    """Load a model file as the daemon would and say what it is (format, architecture,
    input, version), or why it cannot be loaded: check a file before configuring it.

    For ``builtin:demo``: each stage's card (architecture, version, the data it was trained
    on, its intended use). For both: the precision ``models.precision`` gives it on this
    machine under the configuration, and why (``auto``: the fastest whose agreement card
    passes: INT8, else bfloat16, else float32)."""
    if model.startswith("builtin:"):
        _builtin_info(model, stage, fmt, ctx)
        return
    path = Path(model)
    if not path.is_file():
        raise click.BadParameter(f"file {model} does not exist", param_hint="MODEL")
    if stage is None:
        raise click.BadParameter("give the file's --stage", param_hint="--stage")
    _file_info(path, stage, input_size, fmt, ctx)


def _precision(ctx: click.Context, ref: str, stage: str) -> str:
    """The precision the configuration gives this model here, and why."""
    from cervixbatch.errors import CervixbatchError
    from cervixbatch.model.runtime import auto_choice

    try:
        return auto_choice(app_of(ctx).config, ref, stage)
    except CervixbatchError as exc:
        return f"unknown: {exc}"


def _builtin_info(ref: str, stage: str | None, fmt: str, ctx: click.Context) -> None:
    """The shipped cards of ``builtin:demo``: what each stage is and what it learnt from."""
    import json

    from cervixbatch.model.stage import DEMO_DIR

    if ref != "builtin:demo":
        raise click.BadParameter(f"unknown built-in model {ref} (only builtin:demo)")
    info = {}
    for name in [stage] if stage else ["cervix", "lesion"]:
        card = json.loads((DEMO_DIR / f"{name}.card.json").read_text(encoding="utf-8"))
        info[name] = {
            "architecture": card.get("architecture"),
            "input_shape": card.get("input_shape"),
            "parameters": card.get("parameters"),
            "version": card.get("shipped_as", {}).get("version_sha256"),
            "training_data": card.get("data", {}),
            "intended_use": card.get("intended_use"),
            "precision": _precision(ctx, ref, name),
        }
    if fmt == "json":
        click.echo(json.dumps(info, indent=2))
        return
    for name, entry in info.items():
        data = entry["training_data"]
        trained_on = data.get("description") or "; ".join(
            str(data[key]) for key in ("generator", "hard_negatives") if data.get(key)
        )
        click.echo(
            f"{name}: {entry['architecture']} {entry['input_shape']}, version "
            f"{str(entry['version'])[:12]}\n  trained on: {trained_on} "
            f"({data.get('image_count', '?')} images)\n  use: {entry['intended_use']}"
            f"\n  precision: {entry['precision']}"
        )


def _file_info(
    model: Path, stage: str, input_size: int | None, fmt: str, ctx: click.Context
) -> None:
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
        "precision": _precision(ctx, str(model), stage),
    }
    if fmt == "json":
        click.echo(json.dumps(info, indent=2))
        return
    click.echo(
        f"{model.name}: {loaded.description}; version {loaded.version[:12]}\n"
        f"  precision: {info['precision']}"
    )
