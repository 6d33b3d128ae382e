"""What a SIGHUP may change while the service runs, and what needs a restart.

Batch size, the partial-batch wait and the log level are read afresh for every batch
or event, so they apply at once. Everything else (paths, database, models, watch mode,
pools) was used to build long-lived objects; a change there is logged as needing a
restart and otherwise ignored, so a reload never drops or doubles work.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import TYPE_CHECKING, Any

import structlog

from cervixbatch.config import load_config
from cervixbatch.errors import CervixbatchError
from cervixbatch.logs import configure_logging

if TYPE_CHECKING:
    from cervixbatch.config import Config

__all__ = ["LIVE_KEYS", "ReloadPlan", "plan_reload", "reload_config"]

log = structlog.get_logger("cervixbatchd")

LIVE_KEYS = ("batch.size", "batch.max_wait_ms", "logging.level")


@dataclasses.dataclass(frozen=True, slots=True)
class ReloadPlan:
    """The configuration to run with after a reload, and what differed."""

    config: Config
    applied: dict[str, Any]  # dotted key -> new value, for the keys that apply now
    needs_restart: tuple[str, ...]  # dotted keys that changed but wait for a restart

    def as_log_dict(self) -> dict[str, Any]:
        """The "reloaded" event's fields: what applied, what waits, the live values now."""
        return {
            "applied": self.applied,
            "needs_restart": list(self.needs_restart),
            "batch_size": self.config.batch.size,
            "max_wait_ms": self.config.batch.max_wait_ms,
            "log_level": self.config.logging.level,
        }


def reload_config(current: Config, path: Path | None) -> Config:
    """SIGHUP: the configuration to run with from now on (batch size, max wait and log
    level applied; what needs a restart named in the log); ``current`` when the file no
    longer loads (a typo must not stop the service)."""
    try:
        new = load_config(path)
    except CervixbatchError as exc:
        log.error("reload_failed", detail=str(exc))  # noqa: TRY400 - the message says it
        return current
    plan = plan_reload(current, new)
    if plan.config.logging.level != current.logging.level:
        configure_logging(plan.config.logging.level, plan.config.logging.format)
    log.info("reloaded", **plan.as_log_dict())
    return plan.config


def plan_reload(current: Config, new: Config) -> ReloadPlan:
    """Take the live keys from ``new`` and list the other keys that differ."""
    old_values = _flatten(current)
    new_values = _flatten(new)
    changed = sorted(key for key in new_values if new_values[key] != old_values.get(key))
    applied = {key: new_values[key] for key in changed if key in LIVE_KEYS}
    config = dataclasses.replace(
        current,
        batch=dataclasses.replace(
            current.batch, size=new.batch.size, max_wait_ms=new.batch.max_wait_ms
        ),
        logging=dataclasses.replace(current.logging, level=new.logging.level),
    )
    needs_restart = tuple(key for key in changed if key not in LIVE_KEYS)
    return ReloadPlan(config=config, applied=applied, needs_restart=needs_restart)


def _flatten(config: Config) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for field in dataclasses.fields(config):
        section = getattr(config, field.name)
        if not dataclasses.is_dataclass(section):
            continue  # `source`: where the file is, not a setting
        for inner in dataclasses.fields(section):
            out[f"{field.name}.{inner.name}"] = getattr(section, inner.name)
    return out
