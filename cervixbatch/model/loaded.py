"""The two loaded stage models and what identifies them: a leaf, so that the loader
(``model.pair``) and the stand-ins it may load (``model.simulated``) both build one."""

from __future__ import annotations

import dataclasses

from cervixbatch.config import Runtime
from cervixbatch.segmentation.two_stage import Predictor

__all__ = ["Stages"]


@dataclasses.dataclass(frozen=True, slots=True)
class Stages:
    """The two loaded models and what identifies them in the results."""

    cervix: Predictor
    lesion: Predictor
    cervix_version: str
    lesion_version: str
    precision: str  # a label: one precision, or the two stages' when they differ
    cervix_description: str = ""  # format and architecture, e.g. "keras2-h5-weights: ..."
    lesion_description: str = ""
    runtime: Runtime = Runtime.TENSORFLOW
