"""Shared fixtures: real Keras models built once per session, real config files, real
SQLite databases in ``tmp_path``, and a guard against leaked threads."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import structlog
from support.daemon import Daemon
from support.models import analytic_model
from support.tools import tool_missing

from cervixbatch.store.db import Database, open_database

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


@pytest.fixture(scope="session")
def analytic_models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Stage models saved as .keras: cervix = red pixels, lesion = bright pixels."""
    folder = tmp_path_factory.mktemp("analytic_models")
    # cervix: sigmoid(24 R - 12) — the pink disc of `draw_photo` is red, the surround dark
    cervix = analytic_model(3, [24.0, 0.0, 0.0], -12.0, "analytic_cervix")
    # lesion: sigmoid(60 gray - 48) — only the near-white patch passes 0.8
    lesion = analytic_model(1, [60.0], -48.0, "analytic_lesion")
    paths = {"cervix": folder / "cervix.keras", "lesion": folder / "lesion.keras"}
    cervix.save(paths["cervix"])
    lesion.save(paths["lesion"])
    return paths


@pytest.fixture(scope="session")
def other_analytic_models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A second model pair with other thresholds (a wider cervix, a smaller lesion): its
    masks differ from :func:`analytic_models`' on the same photo."""
    folder = tmp_path_factory.mktemp("other_analytic_models")
    cervix = analytic_model(3, [20.0, 0.0, 0.0], -8.0, "other_cervix")
    lesion = analytic_model(1, [60.0], -54.0, "other_lesion")
    paths = {"cervix": folder / "cervix.keras", "lesion": folder / "lesion.keras"}
    cervix.save(paths["cervix"])
    lesion.save(paths["lesion"])
    return paths


@pytest.fixture(scope="session")
def model_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One OpenVINO model cache for the session: each model is converted once, not per test
    (the cache is keyed by the model file's sha256, so sharing it is what it is made for)."""
    return tmp_path_factory.mktemp("model_cache")


@pytest.fixture(scope="session")
def second_lesion_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Another lesion model: a lower brightness threshold, so bigger lesions than the first."""
    path = tmp_path_factory.mktemp("second_model") / "lesion_v2.keras"
    analytic_model(1, [60.0], -36.0, "analytic_lesion_v2").save(path)
    return path


@pytest.fixture
def make_config(
    tmp_path: Path, analytic_models: dict[str, Path], model_cache: Path
) -> Callable[..., Path]:
    """Writes a config.toml in tmp_path (inbox, outbox, database there); returns its path.

    Keyword arguments ``section__key=value`` override settings.
    """

    def _make(**overrides: Any) -> Path:
        settings: dict[str, dict[str, Any]] = {
            "paths": {"inbox": "inbox", "outbox": "outbox"},
            "database": {"url": "sqlite:///state/cervixbatch.db"},
            "watch": {"settle_seconds": 0.3, "archive": "archive"},
            "batch": {"size": 4, "max_wait_ms": 100},
            "models": {
                "cervix": str(analytic_models["cervix"]),
                "lesion": str(analytic_models["lesion"]),
                "cache": str(model_cache),
            },
            "logging": {"format": "json"},
        }
        for dotted, value in overrides.items():
            section, key = dotted.split("__", 1)
            settings.setdefault(section, {})[key] = value
        lines = []
        for section, values in settings.items():
            lines.append(f"[{section}]")
            lines.extend(f"{key} = {_toml(value)}" for key, value in values.items())
            lines.append("")
        path = tmp_path / "config.toml"
        path.write_text("\n".join(lines), encoding="utf-8")
        (tmp_path / "inbox").mkdir(exist_ok=True)
        return path

    return _make


def _toml(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    return repr(value)


@pytest.fixture(autouse=True)
def fresh_logging() -> Iterator[None]:
    """Each test starts from structlog's defaults: a command run in-process (bench,
    process) configures logging for the whole process, e.g. at warning level, and must
    not hide the events the next test counts."""
    yield
    structlog.reset_defaults()


@pytest.fixture(autouse=True)
def no_leaked_threads() -> Iterator[None]:
    """Fails a test that leaves a thread of ours running."""
    before = set(threading.enumerate())
    yield
    leaked = [
        t
        for t in threading.enumerate()
        if t not in before and t.is_alive() and t.name.startswith("cervixbatch")
    ]
    for thread in leaked:
        thread.join(timeout=5)
    still = [t.name for t in leaked if t.is_alive()]
    assert not still, f"threads left running: {still}"


PG_ADMIN_URL = os.environ.get(
    "CERVIXBATCH_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)


def postgres_unavailable_reason() -> str | None:
    """Why PostgreSQL tests cannot run here, or None when a server answers."""
    try:
        import psycopg  # noqa: F401
        from sqlalchemy import create_engine, text
    except ImportError:
        return "psycopg is not installed (pip install 'cervixbatch[postgres]')"
    try:
        engine = create_engine(PG_ADMIN_URL, connect_args={"connect_timeout": 3})
        with engine.connect() as connection:
            connection.execute(text("SELECT 1"))
        engine.dispose()
    except Exception as exc:  # noqa: BLE001 - any failure means: no server to test against
        return f"no PostgreSQL server at {PG_ADMIN_URL} ({type(exc).__name__}); CI starts one"
    return None


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A fresh, empty PostgreSQL database for one test, dropped afterwards."""
    import uuid

    from sqlalchemy import create_engine, text

    reason = postgres_unavailable_reason()
    if reason:
        tool_missing(reason)
    name = f"cervixbatch_test_{uuid.uuid4().hex[:12]}"
    admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield PG_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"
    finally:
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture(scope="session")
def orthanc(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """A real Orthanc PACS (DICOMweb on) for the whole session: tests/orthanc_support.py."""
    from support.orthanc_support import running_orthanc

    yield from running_orthanc(tmp_path_factory)


@pytest.fixture(params=["sqlite", "postgresql"])
def db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Database]:
    """The same queue tests on a real SQLite file and on a real PostgreSQL database."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path}/queue.db"
    else:
        url = request.getfixturevalue("postgres_url")
    database = open_database(url)
    yield database
    database.dispose()


@pytest.fixture
def daemons() -> Iterator[Callable[..., Daemon]]:
    """Starts daemons; whatever is still running at the end is killed."""
    started: list[Daemon] = []

    def start(
        config: Path,
        name: str = "daemon",
        env: dict[str, str] | None = None,
        *args: str,
        fsync_delay: float | None = None,
        cli: bool = False,
    ) -> Daemon:
        daemon = Daemon(config, name, env, *args, fsync_delay=fsync_delay, cli=cli)
        started.append(daemon)
        return daemon

    yield start
    for daemon in started:
        if daemon.process.poll() is None:
            daemon.process.kill()
            daemon.process.wait(timeout=30)
