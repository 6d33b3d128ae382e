"""The ``cervixbatch`` command: parses, loads the configuration, calls the library.

Errors reach the user here, once: a :class:`ConfigError` exits 2, any other
:class:`CervixbatchError` exits 1, each as one line on standard error.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click
from sqlalchemy.exc import SQLAlchemyError

from cervixbatch.cli.backfill import backfill
from cervixbatch.cli.bench import bench
from cervixbatch.cli.common import EXIT_CONFIG, EXIT_FAILED, AppContext, app_of, setup_logging
from cervixbatch.cli.db import db
from cervixbatch.cli.evaluate import evaluate
from cervixbatch.cli.labels_sheet import labels
from cervixbatch.cli.model_info import model_info
from cervixbatch.cli.ops import purge, reprocess, status
from cervixbatch.cli.pacs import pacs
from cervixbatch.cli.quantize import quantize
from cervixbatch.cli.report import report
from cervixbatch.cli.synth import synth
from cervixbatch.cli.train import train
from cervixbatch.errors import CervixbatchError, ConfigError
from cervixbatch.model.framework import FRAMEWORK_MODULES, framework_error
from cervixbatch.version import __version__

__all__ = ["main"]

F = TypeVar("F", bound=Callable[..., Any])


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
        except ImportError as exc:  # TensorFlow missing or broken, wherever it was first needed
            if (exc.name or "").split(".")[0] not in FRAMEWORK_MODULES:
                raise
            click.echo(f"cervixbatch: error: {framework_error(exc)}", err=True)
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


# -- run -------------------------------------------------------------------------------


@main.command()
@click.pass_context
def run(ctx: click.Context) -> None:
    """Run the daemon in the foreground: scan the inbox, then watch it.

    SIGTERM or SIGINT finishes the batch in hand and exits 0; a second one exits at once.
    SIGHUP reloads the configuration.
    """
    from cervixbatchd.service import serve  # the service imports the library, not the reverse

    app = app_of(ctx)
    sys.exit(serve(app.config, config_path=app.config_path))


# -- process ---------------------------------------------------------------------------


@main.command()
@click.argument("paths", nargs=-1, required=True, type=click.Path(path_type=Path, exists=True))
@click.pass_context
def process(ctx: click.Context, paths: tuple[Path, ...]) -> None:
    """Process every file under PATHS once, through the same pipeline and database as
    `run`, then exit: 0 when every input is accounted for, 1 if any failed."""
    from cervixbatch.cli.process import process_paths

    config = app_of(ctx).config
    setup_logging(config)
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


for command in (
    backfill,
    report,
    synth,
    train,
    evaluate,
    labels,
    model_info,
    bench,
    quantize,
    db,
    status,
    reprocess,
    purge,
    pacs,
):
    main.add_command(command)


if __name__ == "__main__":  # pragma: no cover
    main()
