"""cervixbatch: batch segmentation of colposcopy images with a two-stage UNet.

The public API, for scripts that drive the library without the command line::

    import cervixbatch

    config = cervixbatch.load_config(Path("config.toml"))
    db = cervixbatch.open_configured(config)          # durable where inputs are removed
    stages = cervixbatch.load_stages(config)          # the two models, as configured
    with cervixbatch.Runner(config, db, stages) as runner:
        runner.registrar.register(Path("inbox/photo.jpg"))
        outcome = runner.process_until_empty()

Names are imported when first used, so ``import cervixbatch`` stays cheap (no TensorFlow,
no SQLAlchemy) for the CLI's start-up.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from cervixbatch.version import __version__

# name -> the module that defines it
_PUBLIC = {
    "Config": "cervixbatch.config",
    "load_config": "cervixbatch.config",
    "open_database": "cervixbatch.store.db",
    "open_configured": "cervixbatch.store.db",
    "Database": "cervixbatch.store.db",
    "Status": "cervixbatch.store.schema",
    "load_stages": "cervixbatch.model.pair",
    "Stages": "cervixbatch.model.loaded",
    "Runner": "cervixbatch.worker.runner",
    "BatchOutcome": "cervixbatch.worker.batch_state",
    "CervixbatchError": "cervixbatch.errors",
    "ConfigError": "cervixbatch.errors",
    "InputRejected": "cervixbatch.errors",
    "RejectReason": "cervixbatch.errors",
    "FailReason": "cervixbatch.errors",
}

__all__ = [
    "BatchOutcome",
    "CervixbatchError",
    "Config",
    "ConfigError",
    "Database",
    "FailReason",
    "InputRejected",
    "RejectReason",
    "Runner",
    "Stages",
    "Status",
    "__version__",
    "load_config",
    "load_stages",
    "open_configured",
    "open_database",
]

if TYPE_CHECKING:  # what type checkers and IDEs see; at run time __getattr__ imports lazily
    from cervixbatch.config import Config, load_config
    from cervixbatch.errors import (
        CervixbatchError,
        ConfigError,
        FailReason,
        InputRejected,
        RejectReason,
    )
    from cervixbatch.model.loaded import Stages
    from cervixbatch.model.pair import load_stages
    from cervixbatch.store.db import Database, open_configured, open_database
    from cervixbatch.store.schema import Status
    from cervixbatch.worker.batch_state import BatchOutcome
    from cervixbatch.worker.runner import Runner


def __getattr__(name: str) -> Any:
    module = _PUBLIC.get(name)
    if module is None:
        raise AttributeError(f"module 'cervixbatch' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # the next look-up is a plain attribute
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_PUBLIC})
