"""The per-input phases of a schedule that runs them apart from the runner: the Ray
backfill (:mod:`cervixbatch.backfill`) runs each in a process of its own, so each is a
plain function of what travels with the input (the same steps, in the same order, as
:class:`~cervixbatch.worker.batch_phases.BatchPhases`, which the runner's schedules call).

    read_item → frame_jobs (stage-1 inputs) → [the two model calls] → finish_and_write
      → take_written (results and outputs onto the input, failures recorded)
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import TYPE_CHECKING

from cervixbatch.errors import FailReason, OutputError
from cervixbatch.imaging.verified import read_registered
from cervixbatch.outputs.outbox import FrameOutputs
from cervixbatch.segmentation.steps import Step
from cervixbatch.worker.overlapped_jobs import FrameJob

if TYPE_CHECKING:
    from cervixbatch.config import Config
    from cervixbatch.imaging.frames import ReadLimits
    from cervixbatch.imaging.sop import SopClassFilter
    from cervixbatch.outputs.frame_writer import FrameWriter
    from cervixbatch.segmentation.two_stage import FrameResult, Pipeline
    from cervixbatch.worker.batch_state import WorkItem

__all__ = [
    "finish_and_write",
    "frame_jobs",
    "read_item",
    "take_frame",
    "take_written",
    "working_side",
]


def working_side(config: Config, lesion_input_size: tuple[int, int]) -> int | None:
    """How far photos may be decoded below full size and still serve every output."""
    max_side = config.output.overlay_max_side
    if not max_side:
        return None  # overlays at full size need the full picture
    lesion_h, lesion_w = lesion_input_size
    # The cervix fills a third or more of a photo's side; twice the stage-2 size keeps
    # the crop stage 2 sees at or above its input resolution.
    return max(max_side, 2 * max(lesion_h, lesion_w))


def read_item(
    item: WorkItem,
    limits: ReadLimits,
    *,
    min_working_side: int | None,
    sop_filter: SopClassFilter | None,
) -> None:
    """The registered bytes, read once, verified and decoded: nothing reads the path
    again. Paths that now hold other bytes are kept for registration after commit."""
    read = read_registered(
        item.claimed.paths,
        item.claimed.sha256,
        limits,
        min_working_side=min_working_side,
        sop_filter=sop_filter,
    )
    item.decoded, item.path, item.rejection = read.decoded, read.path, read.rejection
    item.changed = read.changed
    if read.failure is not None:
        item.fail(FailReason.INTERNAL_ERROR, read.failure)


def frame_jobs(item: WorkItem, pipeline: Pipeline) -> list[FrameJob]:
    """The frames of a read input, each with its stage-1 input (CPU, any thread); none
    when it was not decoded or its pre-processing failed (then the input has failed)."""
    if item.decoded is None:
        return []
    jobs = []
    try:
        for index, frame in enumerate(item.decoded.frames):
            clock = time.perf_counter()
            job = FrameJob(item, index, frame, pipeline.stage1_input(frame))
            job.timings_ms[Step.PREPROCESS] = (time.perf_counter() - clock) * 1000
            jobs.append(job)
    except Exception as exc:  # noqa: BLE001 - one bad input never stops the batch
        item.fail(FailReason.INTERNAL_ERROR, f"preprocessing failed: {type(exc).__name__}")
        return []
    return jobs


def finish_and_write(
    job: FrameJob, pipeline: Pipeline, writer: FrameWriter
) -> tuple[FrameResult | None, FrameOutputs | Exception]:
    """Full-size masks and measures of one segmented frame, then its files (atomically);
    the error instead of the outputs when either fails."""
    item = job.item
    assert item.decoded is not None
    try:
        clock = time.perf_counter()
        result = pipeline.finish(job.frame, job.located, job.lesion_prob)  # type: ignore[arg-type]
        job.timings_ms[Step.POSTPROCESS] = (time.perf_counter() - clock) * 1000
        result.timings_ms = job.timings_ms
    except Exception as exc:  # noqa: BLE001 - one bad input never stops the batch
        return None, RuntimeError(f"post-processing failed: {type(exc).__name__}")
    try:
        return result, writer.write(item.decoded, job.index, result, stage=item.stage)
    except OutputError as exc:
        return result, exc


def take_frame(
    item: WorkItem, result: FrameResult | None, outputs: FrameOutputs | Exception
) -> None:
    """Puts one written frame's result and outputs on its input, or records why it failed
    (its first failure stands: the disk's is retried without spending an attempt)."""
    if result is not None:
        item.results.append(result)
    if isinstance(outputs, FrameOutputs):
        item.outputs.append(outputs)
    elif item.failure is None:
        output_failed = isinstance(outputs, OutputError)  # else an error of ours
        reason = FailReason.OUTPUT_ERROR if output_failed else FailReason.INTERNAL_ERROR
        item.fail(reason, str(outputs))
        item.transient = isinstance(outputs, OutputError) and outputs.transient


def take_written(
    jobs: Sequence[FrameJob],
    written: Sequence[tuple[FrameResult | None, FrameOutputs | Exception]],
    phase_ms: dict[str, float],
) -> None:
    """Puts each frame's result and outputs on its input (:func:`take_frame`); adds each
    step's cost (summed over frames: they overlap) to ``phase_ms``."""
    for job, (result, outputs) in zip(jobs, written, strict=True):
        take_frame(job.item, result, outputs)
        for step in Step:
            phase_ms[step] = phase_ms.get(step, 0.0) + job.timings_ms.get(step, 0.0)
