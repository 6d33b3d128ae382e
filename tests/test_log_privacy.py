"""Logs carry no identifiers: a failed statement hides its parameters, and a logged
exception keeps its traceback and type but not its message."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
import structlog
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from cervixbatch.config import LogFormat, LogLevel
from cervixbatch.logs import configure_logging
from cervixbatch.store.db import open_database

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

UID = "1.2.826.0.1.3680043.10.99." + "7" * 60
PATH = "/srv/inbox/Doe^Jane/exam-778899.dcm"


def _read_header() -> None:
    """Raises what a reader might: a ValueError quoting a UID, caused by an OSError quoting
    a path."""
    try:
        Path(PATH).read_bytes()
    except FileNotFoundError as exc:
        raise ValueError(f"StudyInstanceUID {UID} is too long") from exc


@pytest.fixture
def json_logs(capsys: pytest.CaptureFixture[str]) -> Iterator[Callable[[], str]]:
    """Logging as the service sets it up (JSON lines on stdout); yields what was logged."""
    configure_logging(LogLevel.DEBUG, LogFormat.JSON)
    yield lambda: capsys.readouterr().out
    structlog.reset_defaults()


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_a_failed_statement_does_not_show_its_parameters(
    backend: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    """The engine's errors name the statement but not the values bound to it."""
    url = (
        request.getfixturevalue("postgres_url")
        if backend == "postgres"
        else f"sqlite:///{tmp_path / 'db.sqlite'}"
    )
    db = open_database(url)
    try:
        with pytest.raises(DBAPIError) as info, db.session() as session:
            # too long for PostgreSQL, no path for SQLite: refused, with the value bound
            session.execute(text("INSERT INTO inputs (sha256) VALUES (:uid)"), {"uid": UID})
    finally:
        db.dispose()
    assert UID not in str(info.value)
    assert "hidden" in str(info.value)


def test_a_logged_exception_keeps_its_type_not_its_text(json_logs: Callable[[], str]) -> None:
    """``log.exception`` and ``exc_info=`` render the chain's types and frames only."""
    log = structlog.get_logger("test")
    try:
        _read_header()
    except ValueError as exc:
        log.exception("fatal_error", error=type(exc).__name__)
        log.error("pipeline_failed", exc_info=exc)  # noqa: TRY400 - as pipelined.py does
    lines = [json.loads(line) for line in json_logs().splitlines()]
    assert [line["event"] for line in lines] == ["fatal_error", "pipeline_failed"]
    for line in lines:
        rendered = json.dumps(line)
        assert UID not in rendered and "Doe^Jane" not in rendered and "778899" not in rendered
        assert "builtins.FileNotFoundError" in line["exception"]
        assert line["exception"].rstrip().endswith("builtins.ValueError")
        assert "test_a_logged_exception_keeps_its_type_not_its_text" in line["exception"]


def test_the_console_renderer_keeps_no_exception_text(capsys: pytest.CaptureFixture[str]) -> None:
    """On a terminal's format too, an exception is shown without its message."""
    configure_logging(LogLevel.INFO, LogFormat.CONSOLE)
    try:
        try:
            _read_header()
        except ValueError:
            structlog.get_logger("test").exception("fatal_error")
        out = capsys.readouterr().out
    finally:
        structlog.reset_defaults()
    assert "fatal_error" in out and "builtins.ValueError" in out
    assert PATH not in out and UID not in out
