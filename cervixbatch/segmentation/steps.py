"""The names of a frame's segmentation steps, as timings and logs carry them."""

from __future__ import annotations

import enum

__all__ = ["Step"]


class Step(enum.StrEnum):
    """A frame's steps: :meth:`Pipeline.run <cervixbatch.segmentation.two_stage.Pipeline.run>`
    times each; a schedule that runs them apart (overlapped, Ray) adds their costs, summed
    over frames, to a batch's phase timings."""

    PREPROCESS = "preprocess"
    STAGE1 = "stage1"
    ROI = "roi"
    PREPROCESS2 = "preprocess2"
    LOCATE = "locate"
    STAGE2 = "stage2"
    POSTPROCESS = "postprocess"
