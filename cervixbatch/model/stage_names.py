"""The two stages by name: a leaf, so that the loaders (``model.loading``), the compiled
call (``model.stage``) and the tools all say ``Stage.CERVIX`` without importing each
other."""

from __future__ import annotations

import enum

__all__ = ["Stage"]


class Stage(enum.StrEnum):
    """The two stages of the pipeline."""

    CERVIX = "cervix"
    LESION = "lesion"
