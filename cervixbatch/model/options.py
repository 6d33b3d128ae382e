"""How the stage models are loaded (``LoadOptions``) and where converted models are kept.

A leaf of ``model/``: ``runtime`` (which runtime loads a stage) and ``openvino_rt`` (the
OpenVINO loader) both read these options, so they live below both, and neither of those
modules imports the other at import time or for types.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import TYPE_CHECKING

from cervixbatch.config import OTSU, Config, Precision, Runtime
from cervixbatch.config.database_url import sqlite_file

if TYPE_CHECKING:
    from cervixbatch.model.stage import OutputReduction

__all__ = ["LoadOptions", "cache_folder"]


@dataclasses.dataclass(frozen=True, slots=True)
class LoadOptions:
    """How both stages are loaded: what the ``[models]``, ``[batch]`` and ``[report]``
    settings say."""

    runtime: Runtime
    precision: Precision
    batch_size: int
    cache: Path | None  # converted models; None: convert in memory at every start
    min_agreement_dice: float = 0.98
    cervix_input_size: int = 0  # weights-only files: the size to build at (0: the seed's)
    lesion_input_size: int = 0
    cervix_seed_gray: bool = False  # cervix_threshold "otsu": seed 001's channel step

    @classmethod
    def from_config(cls, config: Config) -> LoadOptions:
        """The options of ``config``, its cache folder resolved."""
        return cls(
            runtime=config.models.runtime,
            precision=config.models.precision,
            batch_size=config.batch.size,
            cache=cache_folder(config),
            min_agreement_dice=config.models.min_agreement_dice,
            cervix_input_size=config.models.cervix_input_size,
            lesion_input_size=config.models.lesion_input_size,
            cervix_seed_gray=config.models.cervix_threshold == OTSU,
        )

    def input_size(self, stage: str) -> int | None:
        """The size a weights-only file of ``stage`` is built at; None: the seed's."""
        size = self.cervix_input_size if stage == "cervix" else self.lesion_input_size
        return size or None

    def reduction(self, stage: str) -> OutputReduction:
        """How ``stage``'s output channels become one score per pixel."""
        from cervixbatch.model.stage import OutputReduction

        if stage == "cervix" and self.cervix_seed_gray:
            return OutputReduction.SEED_GRAY
        return OutputReduction.MEAN


def cache_folder(config: Config) -> Path | None:
    """Where converted models are kept: ``models.cache``, else ``model-cache`` beside a
    SQLite database; None (convert in memory) for other databases, so nothing is written
    outside the configured folders."""
    if config.models.cache is not None:
        return config.models.cache
    database = sqlite_file(config.database.url)  # the one rule for a SQLite URL's file
    return database.parent / "model-cache" if database is not None else None
