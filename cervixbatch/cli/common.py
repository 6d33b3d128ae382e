"""What the command modules share: the application context, logging set-up, exit codes."""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

import click

from cervixbatch.config import Config, load_config

__all__ = ["EXIT_CONFIG", "EXIT_FAILED", "AppContext", "app_of", "setup_logging"]

EXIT_FAILED = 1
EXIT_CONFIG = 2


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
