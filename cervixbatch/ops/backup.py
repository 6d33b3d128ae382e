"""``cervixbatch db backup FILE``: an online, consistent copy of the SQLite database.

SQLite's backup API copies the database in one step, inside one read transaction: in
WAL mode the daemon keeps writing meanwhile, and the copy is the database as it was when
the step began — every transaction committed by then, none after. The copy is written to
a temp file beside FILE, converted to a self-contained file (no ``-wal``), checked with
``integrity_check``, flushed to disk, and only then renamed to FILE. PostgreSQL has
``pg_dump`` for this; for it the command to run is given instead.
"""

from __future__ import annotations

import dataclasses
import os
import shlex
import sqlite3
from pathlib import Path

import structlog
from sqlalchemy.engine import make_url

from cervixbatch.config import is_sqlite_url, sqlite_file
from cervixbatch.errors import StoreError
from cervixbatch.outputs.atomic import atomic_path
from cervixbatch.store.db import DB_FILE_MODE

__all__ = ["BackupReport", "backup_sqlite", "pg_dump_command", "sqlite_source"]

log = structlog.get_logger(__name__)

BUSY_TIMEOUT_S = 30.0


@dataclasses.dataclass(frozen=True, slots=True)
class BackupReport:
    """What the copy holds."""

    path: Path
    size_bytes: int
    inputs: int
    results: int
    revision: str | None


def sqlite_source(url: str) -> Path | None:
    """The SQLite file to back up; None for another database (it has its own tool)."""
    if not is_sqlite_url(url):
        return None
    file = sqlite_file(url)
    if file is None:
        raise StoreError("an in-memory SQLite database cannot be backed up")
    return file


def backup_sqlite(source: Path, target: Path, *, force: bool = False) -> BackupReport:
    """Copies the live database at ``source`` to ``target`` (atomically: all or nothing)."""
    if not source.is_file():
        raise StoreError(f"there is no database at {source}")
    target = target.absolute()
    if target.resolve() == source.resolve():
        raise StoreError("the backup file cannot be the database itself")
    if target.exists() and not force:
        raise StoreError(f"{target} exists already (--force replaces it)")
    if not target.parent.is_dir():
        raise StoreError(f"the folder {target.parent} does not exist")
    try:
        with atomic_path(target) as temp:  # removed on any error; fsynced and renamed on none
            fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, DB_FILE_MODE)
            os.close(fd)
            report = _copy(source, temp)
    except OSError as exc:
        raise StoreError(f"cannot write the backup {target}: {exc.strerror or exc}") from exc
    log.info("backup_written", inputs=report.inputs, results=report.results)
    return dataclasses.replace(report, path=target)


def _copy(source: Path, temp: Path) -> BackupReport:
    src = sqlite3.connect(source, timeout=BUSY_TIMEOUT_S)
    dst = sqlite3.connect(temp)
    try:
        try:
            src.backup(dst)  # pages=-1: the whole database in one step, one snapshot
        except sqlite3.Error as exc:
            raise StoreError(f"the backup failed: {exc}") from exc
        dst.execute("PRAGMA journal_mode=DELETE")  # one file, no -wal beside it
        problems = [row[0] for row in dst.execute("PRAGMA integrity_check(10)")]
        if problems != ["ok"]:
            raise StoreError(f"the copy fails SQLite's integrity check: {'; '.join(problems)}")
        inputs = _count(dst, "inputs")
        results = _count(dst, "results")
        revision = _revision(dst)
    finally:
        dst.close()
        src.close()
    return BackupReport(temp, temp.stat().st_size, inputs, results, revision)


def _count(connection: sqlite3.Connection, table: str) -> int:
    try:
        return int(connection.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0])  # noqa: S608 - fixed names
    except sqlite3.OperationalError:  # a database that was never migrated
        return 0


def _revision(connection: sqlite3.Connection) -> str | None:
    try:
        row = connection.execute("SELECT version_num FROM alembic_version").fetchone()
    except sqlite3.OperationalError:
        return None
    return str(row[0]) if row else None


def pg_dump_command(url: str, target: Path) -> str:
    """The ``pg_dump`` command that backs up a PostgreSQL database (no password in it:
    pg_dump reads ``PGPASSWORD`` or ``~/.pgpass``)."""
    parsed = make_url(url)
    args = ["pg_dump", "--format=custom", f"--file={target}"]
    if parsed.host:
        args.append(f"--host={parsed.host}")
    if parsed.port:
        args.append(f"--port={parsed.port}")
    if parsed.username:
        args.append(f"--username={parsed.username}")
    args.append(parsed.database or "postgres")
    return shlex.join(args)
