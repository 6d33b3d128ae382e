"""structlog, configured once per entry point.

JSON lines to stdout when stdout is not a terminal (journald keeps every field), readable
coloured lines on a terminal. Events carry ids, hashes and reason codes — never patient
names, IDs or birth dates, which no code path ever reads into a log field.
"""

from __future__ import annotations

import logging
import sys
import traceback
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
        shared.append(_exception_without_text)
        renderer = structlog.processors.JSONRenderer()
    else:
        renderer = structlog.dev.ConsoleRenderer(
            colors=out.isatty(), exception_formatter=_write_exception
        )
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
    # pydicom's warnings quote the values they find wrong (UIDs among them).
    logging.getLogger("pydicom").setLevel(logging.ERROR)
    # pydicom warns about every non-conformant file it reads; the reader turns real
    # problems into rejections with reasons, so the rest is noise in the service log.
    warnings.filterwarnings("ignore", module=r"pydicom(\..*)?")


def exception_without_text(exc: BaseException) -> str:
    """A traceback of ``exc`` and its causes with each exception's type but not its
    message: a message may quote a path, a UID or a failed statement's values."""
    parts: list[str] = []
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        frames = "".join(traceback.format_tb(current.__traceback__))
        kind = type(current)
        name = f"{kind.__module__}.{kind.__qualname__}"
        parts.append(f"Traceback (most recent call last):\n{frames}{name}")
        hidden = current.__suppress_context__  # raised "from None"
        current = current.__cause__ or (None if hidden else current.__context__)
    return "\n\nThe above exception led to the one below:\n\n".join(reversed(parts))


def _exception_without_text(_logger: Any, _name: str, event: dict[str, Any]) -> dict[str, Any]:
    """Renders ``exc_info`` as :func:`exception_without_text` in the ``exception`` field."""
    exc_info = event.pop("exc_info", None)
    exc = _exception_of(exc_info)
    if exc is not None:
        event["exception"] = exception_without_text(exc)
    return event


def _write_exception(sio: TextIO, exc_info: Any) -> None:
    """The console renderer's exception formatter: :func:`exception_without_text`."""
    exc = _exception_of(exc_info)
    if exc is not None:
        sio.write("\n" + exception_without_text(exc))


def _exception_of(exc_info: Any) -> BaseException | None:
    if isinstance(exc_info, BaseException):
        return exc_info
    if isinstance(exc_info, tuple) and len(exc_info) == 3:  # sys.exc_info()'s triple
        found = exc_info[1]
        return found if isinstance(found, BaseException) else None
    if exc_info:  # True: the exception being handled
        return sys.exc_info()[1]
    return None
