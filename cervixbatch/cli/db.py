"""`cervixbatch db`: migrations, online backups, and the database's health check."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from cervixbatch.cli.common import EXIT_FAILED, app_of, format_option, setup_logging

__all__ = ["db"]


@click.group()
def db() -> None:
    """Database maintenance: migrations, backups, checks."""


@db.command("upgrade")
@click.pass_context
def db_upgrade(ctx: click.Context) -> None:
    """Run the Alembic migrations to head (also done at every start)."""
    from cervixbatch.store.db import open_database

    config = app_of(ctx).config
    setup_logging(config)
    database = open_database(config.database.url, migrate=False)
    try:
        revision = database.upgrade()
    finally:
        database.dispose()
    click.echo(f"database at revision {revision}", err=True)


@db.command("backup")
@click.argument("file", type=click.Path(path_type=Path, dir_okay=False))
@click.option("--force", is_flag=True, help="Replace FILE if it exists.")
@click.pass_context
def db_backup(ctx: click.Context, file: Path, force: bool) -> None:
    """Write an online, consistent copy of the SQLite database to FILE, safe while the
    daemon writes (SQLite's backup API). For PostgreSQL, print the pg_dump command to use
    instead and exit 1, since no FILE was written."""
    from cervixbatch.ops.backup import backup_sqlite, pg_dump_command, sqlite_source

    config = app_of(ctx).config
    setup_logging(config)
    source = sqlite_source(config.database.url)
    if source is None:
        click.echo(
            "cervixbatch: PostgreSQL is backed up with its own tool, pg_dump; run "
            "(the password comes from PGPASSWORD or ~/.pgpass):",
            err=True,
        )
        click.echo(pg_dump_command(config.database.url, file))
        sys.exit(EXIT_FAILED)
    report = backup_sqlite(source, file, force=force)
    click.echo(
        f"backup written to {report.path} ({report.size_bytes / 1e6:.1f} MB): "
        f"{report.inputs} inputs, {report.results} results, revision {report.revision}; "
        "integrity ok",
        err=True,
    )


@db.command("check")
@format_option("table", "json")
@click.pass_context
def db_check(ctx: click.Context, fmt: str) -> None:
    """Check the database (SQLite's integrity and foreign-key checks, the migration
    revision) and that every output file a result names exists; missing files are
    counted by reason. Exit 1 when anything is wrong."""
    from cervixbatch.ops.check import check_database
    from cervixbatch.store.db import open_database

    config = app_of(ctx).config
    setup_logging(config)
    database = open_database(config.database.url, migrate=False)
    try:
        report = check_database(config, database)
    finally:
        database.dispose()
    if fmt == "json":
        click.echo(json.dumps(report.as_dict(), indent=2))
    else:
        integrity = (
            ("ok" if not report.integrity else "FAILED")
            if report.integrity_checked
            else "not checked (PostgreSQL)"
        )
        click.echo(
            f"database   {report.dialect}, revision {report.revision}; integrity {integrity}"
        )
        click.echo(
            f"outputs    {report.files_checked} files of {report.results_checked} results "
            f"checked ({report.results_purged} results purged on purpose)"
        )
        for example in report.examples:
            click.echo(
                f"missing    input {example['input_id']} {example['kind']}: {example['reason']}"
                f"  {example['path']}"
            )
        for problem in report.problems:
            click.echo(f"problem    {problem}")
        click.echo("ok" if report.ok else "problems found")
    sys.exit(0 if report.ok else EXIT_FAILED)
