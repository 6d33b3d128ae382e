"""What the pipelined runner (:mod:`cervixbatch.worker.overlapped`) carries between its stages."""

from __future__ import annotations

import dataclasses
import threading
from concurrent.futures import Future

import numpy as np
import numpy.typing as npt

from cervixbatch.imaging.frames import Frame
from cervixbatch.segmentation.two_stage import Located
from cervixbatch.worker.batch_state import BatchOutcome, Phase, WorkItem, add_ms

__all__ = ["FrameJob", "InFlightBatch", "StartedChunk"]

Floats = npt.NDArray[np.float32]


@dataclasses.dataclass(slots=True)
class FrameJob:
    """One frame of a claimed input on its way through the stages."""

    item: WorkItem
    index: int  # of the frame in its input
    frame: Frame
    stage1_input: Floats | None = None
    located: Located | None = None
    lesion_prob: Floats | None = None
    timings_ms: dict[str, float] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(eq=False, slots=True)
class InFlightBatch:
    """One claim's inputs, from claim to commit."""

    work: list[WorkItem]
    outcome: BatchOutcome
    frames: list[FrameJob] = dataclasses.field(default_factory=list)
    chunks_left: int = 0
    phase_ms: dict[str, float] = dataclasses.field(default_factory=dict)
    committed: bool = False
    read_started: bool = False
    finished: threading.Event = dataclasses.field(default_factory=threading.Event)

    def timed(self, phase: Phase, since: float) -> None:
        """Adds the milliseconds since ``since`` to ``phase``."""
        add_ms(self.phase_ms, phase, since)


@dataclasses.dataclass(slots=True)
class StartedChunk:
    """A chunk whose stage 1 ran; its crops are being cut in the pool."""

    batch: InFlightBatch
    jobs: list[FrameJob]
    located: list[Future[Located]]
