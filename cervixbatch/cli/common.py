"""What the command modules share: the application context, logging set-up, exit codes."""

from __future__ import annotations

import dataclasses
import datetime as dt
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from cervixbatch.config import Config, Precision, load_config

__all__ = [
    "EXIT_CONFIG",
    "EXIT_FAILED",
    "AppContext",
    "app_of",
    "format_option",
    "parse_date",
    "precision_option",
    "setup_logging",
]

EXIT_FAILED = 1
EXIT_CONFIG = 2

F = TypeVar("F", bound=Callable[..., Any])


@dataclasses.dataclass(slots=True)
class AppContext:
    """What every command shares: where the configuration comes from, loaded once."""

    config_path: Path | None
    _config: Config | None = None

    @property
    def config(self) -> Config:
        """The validated configuration (loaded on first use)."""
        if self._config is None:
            self._config = load_config(self.config_path)
        return self._config


def app_of(ctx: click.Context) -> AppContext:
    """The context the `main` group created."""
    app = ctx.find_object(AppContext)
    assert app is not None
    return app


def setup_logging(config: Config, *, to_stderr: bool = True) -> None:
    """Configures logging for a one-shot command (to stderr: stdout is its output)."""
    from cervixbatch.logs import configure_logging

    # One-shot commands keep stdout for their output (a JSON report, say).
    configure_logging(
        config.logging.level, config.logging.format, sys.stderr if to_stderr else sys.stdout
    )


def parse_date(value: str | None, name: str) -> dt.datetime | None:
    """An ISO date or time from the command line, as aware UTC (naive means UTC)."""
    if value is None:
        return None
    try:
        parsed = dt.datetime.fromisoformat(value)
    except ValueError:
        raise click.BadParameter(f"{value!r} is not an ISO date or time", param_hint=name) from None
    return parsed.replace(tzinfo=dt.UTC) if parsed.tzinfo is None else parsed


def format_option(*choices: str, help_text: str = "Output format.") -> Callable[[F], F]:
    """The shared ``--format`` option: the first choice is the default."""
    return click.option(
        "--format",
        "fmt",
        type=click.Choice(choices),
        default=choices[0],
        show_default=True,
        help=help_text,
    )


def precision_option(help_text: str) -> Callable[[F], F]:
    """The shared ``--precision`` option: one of the models' precisions, or None (the
    configured ``models.precision``)."""
    return click.option(
        "--precision", type=click.Choice([p.value for p in Precision]), help=help_text
    )
