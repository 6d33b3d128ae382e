"""The ``cervixbatch`` command: parses, loads the configuration, calls the library.

Errors reach the user here, once: a :class:`ConfigError` exits 2, any other
:class:`CervixbatchError` exits 1, each as one line on standard error.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click
from sqlalchemy.exc import SQLAlchemyError

from cervixbatch import __version__
from cervixbatch.config import Config, Precision, load_config
from cervixbatch.errors import CervixbatchError, ConfigError

__all__ = ["main"]

F = TypeVar("F", bound=Callable[..., Any])

EXIT_FAILED = 1
EXIT_CONFIG = 2


@dataclasses.dataclass(slots=True)
class AppContext:
    """What every command shares: where the configuration comes from, loaded once."""

    config_path: Path | None
    _config: Config | None = None

    @property
    def config(self) -> Config:
        """The validated configuration (loaded on first use)."""
        if self._config is None:
            self._config = load_config(self.config_path)
        return self._config


class CervixbatchGroup(click.Group):
    """Turns library errors into one line and an exit status, at the edge."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except ConfigError as exc:
            click.echo(f"cervixbatch: configuration error: {exc}", err=True)
            sys.exit(EXIT_CONFIG)
        except CervixbatchError as exc:
            click.echo(f"cervixbatch: error: {exc}", err=True)
            sys.exit(EXIT_FAILED)
        except SQLAlchemyError as exc:  # locked past the busy timeout, or unreachable
            reason = getattr(exc, "orig", None) or exc
            click.echo(f"cervixbatch: database error: {reason}", err=True)
            sys.exit(EXIT_FAILED)


@click.group(cls=CervixbatchGroup)
@click.option(
    "--config",
    "config_path",
    type=click.Path(path_type=Path, dir_okay=False),
    help="Configuration file (default: $CERVIXBATCH_CONFIG, then ./config.toml).",
)
@click.version_option(__version__, prog_name="cervixbatch")
@click.pass_context
def main(ctx: click.Context, config_path: Path | None) -> None:
    """Batch segmentation of colposcopy images with a two-stage UNet."""
    ctx.obj = AppContext(config_path=config_path)


def _app(ctx: click.Context) -> AppContext:
    app = ctx.find_object(AppContext)
    assert app is not None
    return app


def _setup_logging(config: Config, *, to_stderr: bool = True) -> None:
    from cervixbatch.logs import configure_logging

    # One-shot commands keep stdout for their output (a JSON report, say).
    configure_logging(
        config.logging.level, config.logging.format, sys.stderr if to_stderr else sys.stdout
    )


# -- run -------------------------------------------------------------------------------


@main.command()
@click.pass_context
def run(ctx: click.Context) -> None:
    """Run the daemon in the foreground: scan the inbox, then watch it.

    SIGTERM or SIGINT finishes the batch in hand and exits 0; a second one exits at once.
    SIGHUP reloads the configuration.
    """
    from cervixbatchd.service import serve  # the service imports the library, not the reverse

    app = _app(ctx)
    sys.exit(serve(app.config, config_path=app.config_path))


# -- process ---------------------------------------------------------------------------


@main.command()
@click.argument("paths", nargs=-1, required=True, type=click.Path(path_type=Path, exists=True))
@click.pass_context
def process(ctx: click.Context, paths: tuple[Path, ...]) -> None:
    """Process every file under PATHS once, through the same pipeline and database as
    `run`, then exit: 0 when every input is accounted for, 1 if any failed."""
    from cervixbatch.batch import process_paths

    config = _app(ctx).config
    _setup_logging(config)
    totals = process_paths(config, paths)
    click.echo(
        f"{totals.inputs} inputs: {totals.done} done, {totals.rejected} rejected, "
        f"{totals.failed} failed, {totals.known} already known",
        err=True,
    )
    if totals.queued:
        click.echo(
            f"{totals.queued} left queued ({totals.paused or 'paused'}); "
            "run again, or let the daemon take them",
            err=True,
        )
    sys.exit(EXIT_FAILED if totals.failed or totals.queued else 0)


# -- report ----------------------------------------------------------------------------


def _parse_date(value: str | None, name: str) -> dt.datetime | None:
    if value is None:
        return None
    try:
        parsed = dt.datetime.fromisoformat(value)
    except ValueError:
        raise click.BadParameter(f"{value!r} is not an ISO date or time", param_hint=name) from None
    return parsed.replace(tzinfo=dt.UTC) if parsed.tzinfo is None else parsed


@main.command()
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["table", "json", "csv", "html"]),
    default="table",
    show_default=True,
    help="Output format.",
)
@click.option("--since", help="Only inputs found at or after this ISO date/time (UTC).")
@click.option("--until", help="Only inputs found before this ISO date/time (UTC).")
@click.option(
    "--status",
    "statuses",
    multiple=True,
    type=click.Choice(["queued", "processing", "done", "rejected", "failed"]),
    help="Only inputs in this status (repeatable).",
)
@click.option("--reason", "reasons", multiple=True, help="Only inputs with this reason code.")
@click.option(
    "--limit",
    type=click.IntRange(min=0),
    help="At most this many items, newest first (default: 20 for table, 1000 for html, "
    "all for json and csv). The summary always counts every matching input.",
)
@click.option(
    "--output",
    type=click.Path(path_type=Path, dir_okay=False),
    help="Write to this file instead of standard output.",
)
@click.option("--show-patient", is_flag=True, help="HTML: show patient names (off by default).")
@click.option(
    "--ignored",
    is_flag=True,
    help="List what the inbox holds that is not an input (hidden, temp name, symlink, not "
    "a regular file, too deep) and why, instead of the report (table or json).",
)
@click.pass_context
def report(
    ctx: click.Context,
    fmt: str,
    since: str | None,
    until: str | None,
    statuses: tuple[str, ...],
    reasons: tuple[str, ...],
    limit: int | None,
    output: Path | None,
    show_patient: bool,
    ignored: bool,
) -> None:
    """Show what has been processed: a summary (counts, reasons, lesion-positive share,
    throughput, processing times, models), then the latest items.

    `--format html --output DIR/report.html` writes a page with a contact sheet of overlay
    thumbnails (in DIR/report_files/) that opens from disk.
    """
    from cervixbatch.report import ReportFilter, collect, render_csv, render_json
    from cervixbatch.store.db import open_database
    from cervixbatch.store.schema import Status

    config = _app(ctx).config
    _setup_logging(config)
    if ignored:
        _report_ignored(config, fmt, limit, output)
        return
    if limit is None:
        # a terminal shows the latest, a page a contact sheet of the latest; the summary
        # and the statistics still cover every matching input
        limit = {"table": 20, "html": 1000}.get(fmt)
    report_filter = ReportFilter(
        since=_parse_date(since, "--since"),
        until=_parse_date(until, "--until"),
        statuses=tuple(Status(s) for s in statuses),
        reasons=reasons,
        limit=limit,
    )
    db = open_database(config.database.url)
    try:
        with db.read_session() as session:
            data = collect(
                session,
                report_filter,
                inbox=config.paths.inbox,
                lesion_threshold=config.report.lesion_positive_threshold,
            )
            if fmt == "json":
                text = render_json(data)
            elif fmt == "csv":
                text = render_csv(data)
            elif fmt == "html":
                from cervixbatch.report_html import render_html

                if output is None:
                    raise click.UsageError("--format html needs --output FILE.html")
                text = render_html(data, output=output, show_patient=show_patient)
            else:
                from cervixbatch.report_table import render_table

                to_terminal = output is None and sys.stdout.isatty()
                text = render_table(
                    data,
                    width=click.get_terminal_size()[0] if to_terminal else 120,
                    colour=to_terminal,
                )
    finally:
        db.dispose()
    if output is None:
        click.echo(text, nl=False)
    else:
        from cervixbatch.outputs import write_atomic

        output.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(output.resolve(), text.encode("utf-8"))
        click.echo(f"report written to {output}", err=True)


def _report_ignored(config: Config, fmt: str, limit: int | None, output: Path | None) -> None:
    """`report --ignored`: the inbox's entries that are not inputs, and why."""
    from cervixbatch.ignored import (
        list_ignored,
        own_paths,
        render_ignored_json,
        render_ignored_table,
    )

    if fmt not in {"table", "json"}:
        raise click.UsageError("--ignored prints --format table or json")
    inbox = config.paths.inbox
    entries = list_ignored(inbox, excluded=own_paths(config), limit=limit)
    render = render_ignored_json if fmt == "json" else render_ignored_table
    text = render(inbox, entries)
    if output is None:
        click.echo(text, nl=False)
    else:
        from cervixbatch.outputs import write_atomic

        output.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(output.resolve(), text.encode("utf-8"))
        click.echo(f"report written to {output}", err=True)


# -- synth -----------------------------------------------------------------------------


@main.command()
@click.option("--count", type=click.IntRange(min=1), required=True, help="How many photos.")
@click.option(
    "--out",
    type=click.Path(path_type=Path, file_okay=False),
    required=True,
    help="Folder to write images/, cervix/ and lesion/ into.",
)
@click.option("--seed", type=int, default=0, show_default=True, help="Same seed, same set.")
@click.option(
    "--size", "size_text", help="Fixed size WxH (default: varied, 1600x1200 to 4128x3096)."
)
def synth(count: int, out: Path, seed: int, size_text: str | None) -> None:
    """Make synthetic colposcopy-like photos with ground-truth masks."""
    from cervixbatch.progress import progress_bar
    from cervixbatch.synth import parse_size, write_dataset

    try:
        size = parse_size(size_text) if size_text else None
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--size") from None
    with progress_bar("synth", total=count) as advance:
        stems = write_dataset(out, count, seed=seed, size=size, on_progress=lambda _i: advance(1))
    click.echo(f"wrote {len(stems)} photos with masks to {out}", err=True)


# -- train / evaluate ------------------------------------------------------------------


@main.command()
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
@click.option("--epochs", type=click.IntRange(min=1), default=30, show_default=True)
@click.option("--batch-size", type=click.IntRange(min=1), default=8, show_default=True)
@click.option(
    "--learning-rate", type=click.FloatRange(min=0, min_open=True), default=1e-3, show_default=True
)
@click.option("--validation-split", type=click.FloatRange(0.0, 0.9), default=0.2, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
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
    from cervixbatch.train import TrainOptions, train_stage

    config = _app(ctx).config
    _setup_logging(config)
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


@main.command()
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
    "--format", "fmt", type=click.Choice(["table", "json"]), default="table", show_default=True
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

    from cervixbatch.evaluate import evaluate as run_evaluation
    from cervixbatch.evaluate import write_per_image
    from cervixbatch.progress import progress_bar
    from cervixbatch.runner import load_stages, pipeline_for

    config = _app(ctx).config
    if cervix_model or lesion_model:
        config = dataclasses.replace(
            config,
            models=dataclasses.replace(
                config.models,
                cervix=cervix_model or config.models.cervix,
                lesion=lesion_model or config.models.lesion,
            ),
        )
    _setup_logging(config)
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


@main.command()
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
    output: Path | None,
) -> None:
    """Images/second end to end against the seed-style loop and the model-only bound,
    in one run on synthetic photos; prints a JSON report."""
    from cervixbatch.bench import DEFAULT_SIZES, TINY_SIZES, BenchOptions, dumps, run_bench
    from cervixbatch.synth import parse_size

    config = _app(ctx).config
    # batch_done lines for every batch would bury the report: warnings only
    _setup_logging(
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
    options = BenchOptions(
        count=count or (4 if tiny else 16),
        sizes=sizes or DEFAULT_SIZES,
        tiny=tiny,
        precision=Precision(precision) if precision else None,
        batch_size=batch_size,
    )
    text = dumps(run_bench(config, options))
    click.echo(text)
    if output is not None:
        from cervixbatch.outputs import write_atomic

        output.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(output.resolve(), (text + "\n").encode("utf-8"))


# -- db --------------------------------------------------------------------------------


@main.group()
def db() -> None:
    """Database maintenance."""


@db.command("upgrade")
@click.pass_context
def db_upgrade(ctx: click.Context) -> None:
    """Run the Alembic migrations to head (also done at every start)."""
    from cervixbatch.store.db import open_database

    config = _app(ctx).config
    _setup_logging(config)
    database = open_database(config.database.url, migrate=False)
    try:
        revision = database.upgrade()
    finally:
        database.dispose()
    click.echo(f"database at revision {revision}", err=True)


if __name__ == "__main__":  # pragma: no cover
    main()
