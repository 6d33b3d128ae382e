"""structlog, configured once per entry point.

JSON lines to stdout when stdout is not a terminal (journald keeps every field), readable
coloured lines on a terminal. Events carry ids, hashes and reason codes — never patient
names, IDs or birth dates, which no code path ever reads into a log field.
"""

from __future__ import annotations

import logging
import sys
import warnings
from typing import Any, TextIO

import structlog

from cervixbatch.config import LogFormat, LogLevel

__all__ = ["configure_logging"]

_LEVELS = {
    LogLevel.DEBUG: logging.DEBUG,
    LogLevel.INFO: logging.INFO,
    LogLevel.WARNING: logging.WARNING,
    LogLevel.ERROR: logging.ERROR,
}


class _StreamLogger:
    """Writes each line to ``sys.stdout`` or ``sys.stderr`` as they are *now* (test
    runners and the CLI's own redirections replace them), flushing every line."""

    def __init__(self, stream_name: str) -> None:
        self._stream_name = stream_name

    def msg(self, message: str) -> None:
        stream: TextIO = getattr(sys, self._stream_name)
        stream.write(message + "\n")
        stream.flush()

    log = debug = info = warn = warning = msg
    err = error = critical = exception = fatal = failure = msg


def configure_logging(
    level: LogLevel = LogLevel.INFO, fmt: LogFormat = LogFormat.AUTO, stream: TextIO | None = None
) -> None:
    """Sets the processors, the output format and the level for the whole process.

    ``stream`` is ``sys.stdout`` (the service: journald reads it) or ``sys.stderr`` (one-shot
    commands, whose stdout carries their output).
    """
    stream_name = "stderr" if stream is sys.stderr else "stdout"
    out = stream or sys.stdout
    json_lines = fmt is LogFormat.JSON or (fmt is LogFormat.AUTO and not out.isatty())
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    renderer: Any
    if json_lines:
        shared.append(structlog.processors.format_exc_info)
        renderer = structlog.processors.JSONRenderer()
    else:
        renderer = structlog.dev.ConsoleRenderer(colors=out.isatty())
    structlog.configure(
        processors=[*shared, renderer],
        wrapper_class=structlog.make_filtering_bound_logger(_LEVELS[LogLevel(level)]),
        logger_factory=lambda *_args: _StreamLogger(stream_name),
        cache_logger_on_first_use=False,
    )
    # Libraries that log through the standard library (alembic, watchdog) stay quiet
    # unless something is wrong.
    logging.basicConfig(
        level=logging.WARNING, stream=sys.stderr, format="%(levelname)s %(name)s: %(message)s"
    )
    for noisy in ("alembic", "watchdog", "tensorflow", "absl", "pynetdicom"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    # pydicom warns about every non-conformant file it reads; the reader turns real
    # problems into rejections with reasons, so the rest is noise in the service log.
    warnings.filterwarnings("ignore", module=r"pydicom(\..*)?")
