"""One engine per process, SQLite tuned for a writer and readers, migrations run at start.

Durable before destructive: where a commit is followed by removing something for good
(``watch.after`` = ``delete`` or ``archive`` takes the input out of the inbox once its
``done`` row is committed), that commit is made with SQLite's ``synchronous = FULL``: its
write-ahead log is fsynced before the commit returns, hence before the inbox file goes.
The fsync covers every commit made before it. With ``NORMAL`` the log reaches the disk
only at a checkpoint, and a power cut could roll the commit back after the photo was
gone. Only the commits that precede a removal ask for it (``session(durable=True)``: one
per batch), the rest stay ``NORMAL``: one fsync per batch instead of one per transaction
(registration, renewals, dispositions), which is what keeps the cost of the guarantee
small (``benchmarks/durability_cost.py``). Where nothing is removed (``keep``) nothing
asks: a commit lost to a power cut is only processed again. (PostgreSQL's commit is
durable with its default ``synchronous_commit = on``.)
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import structlog
from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

from cervixbatch.config import AfterAction, Config, sqlite_file
from cervixbatch.errors import StoreError

__all__ = ["DB_FILE_MODE", "Database", "migrations_dir", "open_configured", "open_database"]

log = structlog.get_logger(__name__)

BUSY_TIMEOUT_MS = 30_000
MIGRATION_LOCK = 0x63627A6D  # an arbitrary, fixed advisory-lock key ("cbzm")
DB_FILE_MODE = 0o600  # the results are health data: the database and its copies, owner only
_SYNCHRONOUS = "cervixbatch_synchronous"  # the level a connection runs with, in its info


def migrations_dir() -> Path:
    """The Alembic environment: inside the wheel, or the repository's ``migrations/``."""
    package = Path(__file__).parent.parent  # the cervixbatch package folder
    for candidate in (package / "_migrations", package.parent / "migrations"):
        if (candidate / "env.py").is_file():
            return candidate
    raise StoreError("the Alembic migrations are missing from this installation")


class Database:
    """An engine and its session factory."""

    def __init__(self, engine: Engine, *, durable: bool = False) -> None:
        self.engine = engine
        self.durable = durable  # commits that precede a removal reach the disk first
        self._sessions = sessionmaker(engine, expire_on_commit=False)
        self._durable_sessions = sessionmaker(
            engine.execution_options(cervixbatch_durable=durable), expire_on_commit=False
        )
        # Same pool, but transactions start with a plain BEGIN: a report must not hold
        # SQLite's write lock while it reads.
        self._read_sessions = sessionmaker(
            engine.execution_options(cervixbatch_read_only=True), expire_on_commit=False
        )

    @property
    def dialect(self) -> str:
        """``sqlite`` or ``postgresql``."""
        return self.engine.dialect.name

    @contextlib.contextmanager
    def session(self, *, durable: bool = False) -> Iterator[Session]:
        """One transaction: committed when the block ends, rolled back on an exception.
        ``durable``: the commit precedes a removal; on a database opened ``durable`` it is
        on stable storage when the block ends (SQLite: ``synchronous = FULL`` for it)."""
        with (self._durable_sessions if durable else self._sessions).begin() as session:
            yield session

    @contextlib.contextmanager
    def read_session(self) -> Iterator[Session]:
        """A transaction for reading only: never takes SQLite's write lock."""
        with self._read_sessions.begin() as session:
            yield session

    def upgrade(self) -> str | None:
        """Runs the migrations to head; returns the revision the database is at."""
        from alembic import command
        from alembic.config import Config as AlembicConfig
        from alembic.runtime.migration import MigrationContext

        config = AlembicConfig()
        config.set_main_option("script_location", str(migrations_dir()))
        try:
            with self.engine.begin() as connection:
                if self.dialect == "postgresql":
                    # Several workers starting at once: one migrates, the others wait here
                    # and then find nothing left to do. Released when the transaction ends.
                    connection.exec_driver_sql(f"SELECT pg_advisory_xact_lock({MIGRATION_LOCK})")
                config.attributes["connection"] = connection
                command.upgrade(config, "head")
            with self.engine.connect() as connection:
                revision: str | None = MigrationContext.configure(connection).get_current_revision()
        except OperationalError as exc:
            raise StoreError(f"cannot migrate the database: {exc.orig}") from exc
        return revision

    def revision(self) -> str | None:
        """The migration revision the database is at; None when it was never migrated."""
        from alembic.runtime.migration import MigrationContext

        read_only = self.engine.execution_options(cervixbatch_read_only=True)
        with read_only.connect() as connection:
            revision: str | None = MigrationContext.configure(connection).get_current_revision()
        return revision

    @staticmethod
    def head_revision() -> str | None:
        """The newest revision among this installation's migrations."""
        from alembic.config import Config as AlembicConfig
        from alembic.script import ScriptDirectory

        config = AlembicConfig()
        config.set_main_option("script_location", str(migrations_dir()))
        head: str | None = ScriptDirectory.from_config(config).get_current_head()
        return head

    def dispose(self) -> None:
        """Closes every pooled connection."""
        self.engine.dispose()


def open_configured(config: Config, *, migrate: bool = True) -> Database:
    """The configured database, opened for a worker: the commits that precede removing an
    input are durable before they return wherever inputs are removed (``watch.after`` is
    not ``keep``)."""
    return open_database(
        config.database.url, migrate=migrate, durable=config.watch.after is not AfterAction.KEEP
    )


def open_database(url: str, *, migrate: bool = True, durable: bool = False) -> Database:
    """Creates the engine for ``url`` (and the SQLite file's folder) and migrates to head.
    ``durable``: sessions opened with ``durable=True`` are on stable storage when they
    commit (SQLite: ``synchronous = FULL`` for them); a worker that deletes or archives
    inputs needs it (see the module, and :func:`open_configured`)."""
    try:
        parsed = make_url(url)
    except ArgumentError as exc:
        raise StoreError(f"database.url is not a valid SQLAlchemy URL: {exc}") from exc
    # A failed statement's message must not carry its parameters (UIDs, paths) into a log.
    kwargs: dict[str, Any] = {"hide_parameters": True}
    if parsed.get_backend_name() == "sqlite":
        database = sqlite_file(url)
        if database is not None:
            _prepare_sqlite_file(database)
        # The connection crosses threads (the runner's pools hand results to the committer).
        kwargs["connect_args"] = {"check_same_thread": False, "timeout": BUSY_TIMEOUT_MS / 1000}
    else:
        kwargs["pool_pre_ping"] = True
    try:
        engine = create_engine(url, **kwargs)
    except Exception as exc:
        raise StoreError(f"cannot open the database {parsed!r}: {exc}") from exc
    if engine.dialect.name == "sqlite":
        event.listen(engine, "connect", _sqlite_pragmas)
        event.listen(engine, "begin", _sqlite_begin_immediate)
    db = Database(engine, durable=durable)
    if migrate:
        revision = db.upgrade()
        log.debug("database_ready", dialect=db.dialect, revision=revision)
    return db


def _prepare_sqlite_file(path: Path) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        if not path.exists():
            # Created here with owner-only rights: the results are health data.
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, DB_FILE_MODE)
            os.close(fd)
    except FileExistsError:
        pass
    except OSError as exc:
        raise StoreError(f"cannot create the database file {path}: {exc.strerror}") from exc


def _sqlite_pragmas(dbapi_connection: Any, record: Any) -> None:
    # pysqlite's own transaction handling defers BEGIN; we issue it ourselves (below).
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")  # readers (report) never block the writer
    cursor.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
    cursor.execute("PRAGMA foreign_keys=ON")
    # NORMAL: consistent across crashes in WAL mode, but the last commits may roll back on
    # a power cut; a durable transaction switches to FULL for its commit (below).
    cursor.execute("PRAGMA synchronous=NORMAL")
    record.info[_SYNCHRONOUS] = "NORMAL"
    cursor.close()


def _sqlite_begin_immediate(connection: Any) -> None:
    # BEGIN IMMEDIATE takes the write lock up front, so two writers wait on the busy
    # timeout instead of failing with "database is locked" when a read turns into a write.
    options = connection.get_execution_options()
    read_only = options.get("cervixbatch_read_only", False)
    if not read_only:
        # SQLite refuses to change the safety level inside a transaction: before BEGIN,
        # and only when it differs from what this connection runs with.
        synchronous = "FULL" if options.get("cervixbatch_durable", False) else "NORMAL"
        info = connection.connection.info
        if info.get(_SYNCHRONOUS) != synchronous:
            connection.exec_driver_sql(f"PRAGMA synchronous={synchronous}")
            info[_SYNCHRONOUS] = synchronous
    connection.exec_driver_sql("BEGIN" if read_only else "BEGIN IMMEDIATE")
