"""`cervixbatch report`: what has been processed, in every format."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import click

from cervixbatch.cli.common import app_of, format_option, parse_date, setup_logging
from cervixbatch.config import Config
from cervixbatch.store.schema import Status

if TYPE_CHECKING:
    from cervixbatch.report.filters import ReportFilter

__all__ = ["report"]


# -- report ----------------------------------------------------------------------------


@click.command()
@format_option("table", "json", "csv", "html")
@click.option("--since", help="Only inputs found at or after this ISO date/time (UTC).")
@click.option("--until", help="Only inputs found before this ISO date/time (UTC).")
@click.option(
    "--status",
    "statuses",
    multiple=True,
    type=click.Choice([status.value for status in Status]),
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
    "--all-versions",
    is_flag=True,
    help="Every run's results (one per `reprocess`), not only each input's latest.",
)
@click.option(
    "--compare-models",
    nargs=2,
    metavar="A B",
    help="Per input with results under both, the lesion fraction under each pair of models "
    "and the Dice between their masks. A pair is CERVIX:LESION version prefixes, or one "
    "prefix of either (table, json or csv).",
)
@click.option(
    "--ignored",
    is_flag=True,
    help="List what the inbox holds that is not an input (hidden, temp name, symlink, not "
    "a regular file, too deep) and why, instead of the report (table or json).",
)
@click.pass_context
def report(
    ctx: click.Context,
    *,
    fmt: str,
    since: str | None,
    until: str | None,
    statuses: tuple[str, ...],
    reasons: tuple[str, ...],
    limit: int | None,
    output: Path | None,
    show_patient: bool,
    all_versions: bool,
    compare_models: tuple[str, str] | None,
    ignored: bool,
) -> None:
    """Show what has been processed: a summary (counts, reasons, lesion-positive share,
    throughput, processing times, models), then the latest items.

    `--format html --output DIR/report.html` writes a page with a contact sheet of overlay
    thumbnails (in DIR/report_files/) that opens from disk.
    """
    from cervixbatch.report.filters import ReportFilter
    from cervixbatch.report.query import collect, render_csv, render_json
    from cervixbatch.store.db import open_database

    config = app_of(ctx).config
    setup_logging(config)
    if ignored:
        _report_ignored(config, fmt, limit, output)
        return
    if limit is None and not compare_models:
        # a terminal shows the latest, a page a contact sheet of the latest; the summary
        # and the statistics still cover every matching input
        limit = {"table": 20, "html": 1000}.get(fmt)
    report_filter = ReportFilter(
        since=parse_date(since, "--since"),
        until=parse_date(until, "--until"),
        statuses=tuple(Status(s) for s in statuses),
        reasons=reasons,
        limit=limit,
        all_versions=all_versions,
    )
    if compare_models:
        _report_comparison(config, report_filter, compare_models, fmt, output)
        return
    db = open_database(config.database.url)
    try:
        with db.read_session() as session:
            data = collect(
                session,
                report_filter,
                inbox=config.paths.inbox,
                lesion_threshold=config.report.lesion_positive_threshold,
            )
            if fmt in {"table", "html"} and data.stats.models:
                from cervixbatch.model.loading import configured_descriptions

                refs = {"cervix": config.models.cervix, "lesion": config.models.lesion}
                data.model_names.update(configured_descriptions(refs))
            if fmt in {"table", "html", "json"} and data.stats.models:
                data.precision_now.update(_precision_now(config))
            if fmt == "json":
                text = render_json(data)
            elif fmt == "csv":
                text = render_csv(data)
            elif fmt == "html":
                from cervixbatch.report.html import render_html

                if output is None:
                    raise click.UsageError("--format html needs --output FILE.html")
                text = render_html(data, output=output, show_patient=show_patient)
            else:
                from cervixbatch.report.table import render_table

                to_terminal = output is None and sys.stdout.isatty()
                text = render_table(
                    data,
                    width=shutil.get_terminal_size().columns if to_terminal else 120,
                    colour=to_terminal,
                )
    finally:
        db.dispose()
    _emit(text, output)


def _report_comparison(
    config: Config,
    report_filter: ReportFilter,
    specs: tuple[str, str],
    fmt: str,
    output: Path | None,
) -> None:
    """`report --compare-models A B`: two pairs of model versions on the same inputs."""
    from cervixbatch.store.db import open_database
    from cervixbatch.tools.evaluation.compare import (
        compare_models,
        render_compare_csv,
        render_compare_json,
        render_compare_table,
    )

    render = {
        "table": render_compare_table,
        "json": render_compare_json,
        "csv": render_compare_csv,
    }.get(fmt)
    if render is None:
        raise click.UsageError("--compare-models prints --format table, json or csv")
    db = open_database(config.database.url)
    try:
        with db.read_session() as session:
            comparison = compare_models(
                session, *specs, restrict=report_filter.apply, limit=report_filter.limit
            )
    finally:
        db.dispose()
    _emit(render(comparison), output)


def _report_ignored(config: Config, fmt: str, limit: int | None, output: Path | None) -> None:
    """`report --ignored`: the inbox's entries that are not inputs, and why."""
    from cervixbatch.intake.ignored import list_ignored, render_ignored_json, render_ignored_table
    from cervixbatch.intake.rules import own_paths

    if fmt not in {"table", "json"}:
        raise click.UsageError("--ignored prints --format table or json")
    inbox = config.paths.inbox
    entries = list_ignored(inbox, excluded=own_paths(config), limit=limit)
    render = render_ignored_json if fmt == "json" else render_ignored_table
    text = render(inbox, entries)
    _emit(text, output)


def _emit(text: str, output: Path | None) -> None:
    """Standard output, or a file written atomically (--output)."""
    if output is None:
        click.echo(text, nl=False)
        return
    from cervixbatch.outputs.atomic import write_atomic

    output.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(output.resolve(), text.encode("utf-8"))
    click.echo(f"report written to {output}", err=True)


def _precision_now(config: Config) -> dict[str, str]:
    """Which precision each configured stage gets here now, and why (empty where it
    cannot be told: the report never fails for it)."""
    from cervixbatch.errors import CervixbatchError
    from cervixbatch.model.runtime import auto_choices

    try:
        return auto_choices(config)
    except CervixbatchError:
        return {}
