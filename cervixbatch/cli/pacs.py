"""`cervixbatch pacs backfill`: walk a DICOMweb PACS's archive by study date into the inbox."""

from __future__ import annotations

import datetime as dt
import sys

import click

from cervixbatch.cli.common import EXIT_FAILED, app_of, setup_logging
from cervixbatch.cli.progress import progress_bar

__all__ = ["pacs"]


def _date(_ctx: click.Context, _param: click.Parameter, value: str | None) -> dt.date | None:
    if value is None:
        return None
    for pattern in ("%Y-%m-%d", "%Y%m%d"):
        try:
            return dt.datetime.strptime(value, pattern).replace(tzinfo=dt.UTC).date()
        except ValueError:
            continue
    raise click.BadParameter(f"{value!r} is not a date (YYYY-MM-DD)")


@click.group()
def pacs() -> None:
    """Pull from a DICOMweb PACS ([dicomweb] qido_url, wado_url)."""


@pacs.command("backfill")
@click.option("--since", required=True, callback=_date, help="First study date (YYYY-MM-DD).")
@click.option("--until", callback=_date, help="Last study date (default: today).")
@click.option(
    "--modality",
    "modalities",
    help="Comma-separated modalities (default: [dicomweb] modalities), e.g. XC,ES.",
)
@click.option(
    "--slice-days",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="Days of study dates asked for at a time (the cursor moves after each slice).",
)
@click.option("--dry-run", is_flag=True, help="Count what would be fetched; fetch nothing.")
@click.pass_context
def pacs_backfill(
    ctx: click.Context,
    *,
    since: dt.date,
    until: dt.date | None,
    modalities: str | None,
    slice_days: int,
    dry_run: bool,
) -> None:
    """Fetch the instances of studies dated SINCE to UNTIL into the inbox, a slice of days
    at a time; the running daemon (or `cervixbatch process`) then processes them like any
    dropped file. Resumable: run it again after an interruption and it goes on after the
    last finished slice. Instances fetched before (by a poll or a backfill) are skipped."""
    from cervixbatch.pacs.source import DicomWebSource, PacsUnavailable
    from cervixbatch.pacs.walk import backfill, date_slices
    from cervixbatch.store.db import open_database

    config = app_of(ctx).config
    setup_logging(config)
    if not config.dicomweb.qido_url:
        raise click.UsageError("[dicomweb] qido_url is not set in the configuration")
    until = until or dt.datetime.now(dt.UTC).date()
    if until < since:
        raise click.BadParameter("--until is before --since")
    wanted = (
        tuple(m.strip().upper() for m in modalities.split(",") if m.strip())
        if modalities
        else config.dicomweb.modalities
    )
    database = open_database(config.database.url)
    source = DicomWebSource(config, database)
    slices = len(date_slices(since, until, slice_days))
    try:
        with progress_bar("backfill (slices)", slices) as advance:
            result = backfill(
                source,
                database,
                since=since,
                until=until,
                modalities=wanted,
                dry_run=dry_run,
                slice_days=slice_days,
                on_slice=lambda *_: advance(1),
            )
    except PacsUnavailable as exc:
        click.echo(f"cervixbatch: {exc}; run the same command again to go on", err=True)
        sys.exit(EXIT_FAILED)
    finally:
        source.close()
        database.dispose()
    verb = "would fetch" if dry_run else "fetched"
    count = result.new if dry_run else result.fetched
    click.echo(
        f"{result.slices} slice(s) from {result.resumed_at:%Y-%m-%d} to {until:%Y-%m-%d}: "
        f"{result.found} instance(s) found, {verb} {count}"
    )
