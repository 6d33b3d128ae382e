"""`cervixbatch status`, `reprocess` and `purge`: running it for months."""

from __future__ import annotations

import json
import shutil
import sys
from typing import Any

import click

from cervixbatch.cli.common import EXIT_FAILED, app_of, format_option, parse_date, setup_logging
from cervixbatch.config import Config
from cervixbatch.store.schema import Status

__all__ = ["purge", "reprocess", "status"]


@click.command()
@format_option("table", "json")
@click.option(
    "--stale-after",
    type=click.FloatRange(min=1.0),
    default=60.0,
    show_default=True,
    help="A worker whose heartbeat is older than this many seconds is stale.",
)
@click.option(
    "--max-queue-age",
    type=click.FloatRange(min=0.0),
    default=600.0,
    show_default=True,
    help="The queue counts as behind once its oldest input has waited this many seconds.",
)
@click.pass_context
def status(ctx: click.Context, fmt: str, stale_after: float, max_queue_age: float) -> None:
    """Show whether it is running and how far behind it is: the workers (alive or stale),
    the queue by status, the oldest queued input's age, why work is paused, the disk
    watermark and the latest error. Exit 0 when a live worker exists and the oldest queued
    input is younger than --max-queue-age, else 1 (for monitoring)."""
    from cervixbatch.ops.status import gather_status, render_status_json
    from cervixbatch.store.db import open_database

    config = app_of(ctx).config
    setup_logging(config)
    database = open_database(config.database.url)
    try:
        report = gather_status(
            config, database, stale_after_s=stale_after, max_queue_age_s=max_queue_age
        )
    finally:
        database.dispose()
    if fmt == "json":
        click.echo(render_status_json(report), nl=False)
    else:
        from cervixbatch.ops.status_table import render_status_table

        to_terminal = sys.stdout.isatty()
        width = shutil.get_terminal_size().columns if to_terminal else 120
        click.echo(render_status_table(report, width=width, colour=to_terminal), nl=False)
    sys.exit(0 if report.healthy else EXIT_FAILED)


@click.command()
@click.option("--id", "ids", type=int, multiple=True, help="This input id (repeatable).")
@click.option(
    "--status",
    "statuses",
    multiple=True,
    type=click.Choice([status.value for status in Status if status.terminal]),
    help="Inputs in this status (repeatable).",
)
@click.option(
    "--reason", "reasons", multiple=True, help="Inputs with this reason code (repeatable)."
)
@click.option("--since", help="Inputs found at or after this ISO date/time (UTC).")
@click.option("--until", help="Inputs found before this ISO date/time (UTC).")
@click.option(
    "--other-models",
    is_flag=True,
    help="Inputs whose latest results were made by models other than the configured ones.",
)
@click.option("--dry-run", is_flag=True, help="Say how many and which; queue nothing.")
@format_option("table", "json")
@click.pass_context
def reprocess(
    ctx: click.Context,
    *,
    ids: tuple[int, ...],
    statuses: tuple[str, ...],
    reasons: tuple[str, ...],
    since: str | None,
    until: str | None,
    other_models: bool,
    dry_run: bool,
    fmt: str,
) -> None:
    """Queue inputs again (with new models, say); the criteria combine. Earlier results
    stay in the database and their files on disk; the daemon (or `process`) takes the
    inputs like new ones. An input whose bytes are no longer where they were seen is
    left as it is, with a reason (source_missing, source_changed)."""
    from cervixbatch.ops.reprocess import apply_plan, plan_reprocess
    from cervixbatch.store.db import open_database
    from cervixbatch.store.reprocess_queries import Selection

    config = app_of(ctx).config
    setup_logging(config)
    selection = Selection(
        ids=ids,
        statuses=tuple(Status(s) for s in statuses),
        reasons=reasons,
        since=parse_date(since, "--since"),
        until=parse_date(until, "--until"),
        other_than_models=_configured_versions(config) if other_models else None,
    )
    if selection.empty:
        raise click.UsageError(
            "say which inputs: --id, --status, --reason, --since/--until or --other-models"
        )
    database = open_database(config.database.url)
    try:
        decisions = plan_reprocess(config, database, selection)
        outcome = apply_plan(database, decisions, dry_run=dry_run)
    finally:
        database.dispose()
    rows = [
        {
            "id": d.candidate.id,
            "status": d.candidate.status.value,
            "reason": d.candidate.reason,
            "latest_run": d.candidate.latest_run,
            "models": {"cervix": d.candidate.cervix_model, "lesion": d.candidate.lesion_model},
            "verdict": d.verdict.value,
            "detail": d.detail,
        }
        for d in outcome.decisions
    ]
    if fmt == "json":
        document = {
            "dry_run": dry_run,
            "selected": len(rows),
            "requeued": list(outcome.requeued),
            "counts": outcome.counts(),
            "inputs": rows,
        }
        click.echo(json.dumps(document, indent=2))
    else:
        for row in rows:
            click.echo(_reprocess_line(row))
    counts = outcome.counts()
    verb = "would queue" if dry_run else "queued"
    number = counts["queue"] if dry_run else len(outcome.requeued)
    others = ", ".join(f"{k} {v}" for k, v in counts.items() if k != "queue" and v)
    click.echo(
        f"{verb} {number} of {len(rows)} selected inputs" + (f"; not: {others}" if others else ""),
        err=True,
    )


def _reprocess_line(row: dict[str, Any]) -> str:
    models = row["models"]
    pair = f"{models['cervix'][:8]}/{models['lesion'][:8]}" if models["cervix"] else "-"
    return (
        f"{row['id']:>8}  {row['status']:<8}  run {row['latest_run'] or '-':<3}  {pair:<17}  "
        f"{row['verdict']:<14}  {row['detail']}"
    )


def _configured_versions(config: Config) -> tuple[str, str]:
    from cervixbatch.model.stage_names import Stage
    from cervixbatch.model.versions import configured_version

    return (
        configured_version(config.models.cervix, Stage.CERVIX),
        configured_version(config.models.lesion, Stage.LESION),
    )


@click.command()
@click.option(
    "--before", required=True, help="Outputs of results made before this ISO date/time (UTC)."
)
@click.option(
    "--include-latest",
    is_flag=True,
    help="Also the outputs of each input's latest results (by default only those of "
    "earlier runs, superseded by `reprocess`, are removed).",
)
@click.option("--dry-run", is_flag=True, help="List what would be removed; remove nothing.")
@format_option("table", "json")
@click.pass_context
def purge(ctx: click.Context, before: str, include_latest: bool, dry_run: bool, fmt: str) -> None:
    """Remove the output files of results made before a date, and record it on each
    result (outputs_purged_at); the rows stay. Lists every file it removes (or would)."""
    from cervixbatch.ops.retention import purge_outputs
    from cervixbatch.store.db import open_database
    from cervixbatch.store.retention_queries import latest_kept

    config = app_of(ctx).config
    setup_logging(config)
    cutoff = parse_date(before, "--before")
    assert cutoff is not None
    database = open_database(config.database.url)
    try:
        report = purge_outputs(
            config, database, before=cutoff, include_latest=include_latest, dry_run=dry_run
        )
        kept = 0
        if not include_latest:
            with database.read_session() as session:
                kept = latest_kept(session, before=cutoff)
    finally:
        database.dispose()
    if fmt == "json":
        click.echo(json.dumps({**report.as_dict(), "kept_latest": kept}, indent=2))
    else:
        for path in report.files:
            click.echo(str(path))
    verb = "would remove" if dry_run else "removed"
    notes = [
        f"{count} {what}"
        for count, what in (
            (report.already_gone, "already gone"),
            (report.refused, "left alone (outside the outbox or not a regular file)"),
            (report.errors, "could not be removed"),
            (kept, "results kept as their input's latest (--include-latest removes them too)"),
        )
        if count
    ]
    click.echo(
        f"{verb} {len(report.files)} files ({report.bytes / 1e6:.1f} MB) of "
        f"{report.results} results" + ("; " + "; ".join(notes) if notes else ""),
        err=True,
    )
    if report.errors:
        sys.exit(EXIT_FAILED)
