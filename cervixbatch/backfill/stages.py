"""The stages a backfill ships to the Ray cluster, as plain callables over batches (they
import no Ray): each row is one claimed input, pickled in the ``payload`` column, so every
stage calls the same phases as the runners. Its frames' pixels travel beside it in the
``pixels`` tensor column: Ray Data moves a tensor column between stages as one buffer and
hands it to the next stage without a copy, where pickling them (and Ray's conversions of
a bytes column) cost the model actor two thirds of its time.

    hash_paths            CPU tasks   the sha256 of files not registered yet
    read_batch            CPU tasks   read, verify, decode, stage-1 inputs (phases)
    ModelStage            actor pool  both model calls, the crop between them; model
                                      loaded once per actor, batched by ``batch.size``
    write_batch           CPU tasks   full-size masks and files into the attempt's
                                      staging folder (phases), then the heavy arrays
                                      dropped before the row travels back to the driver
"""

from __future__ import annotations

import dataclasses
import pickle
import resource
import socket
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import numpy as np
import numpy.typing as npt

from cervixbatch.errors import FailReason
from cervixbatch.intake.discovery import hash_file
from cervixbatch.model.loaded import Stages
from cervixbatch.model.pair import load_stages, pipeline_for
from cervixbatch.outputs.frame_writer import FrameWriter
from cervixbatch.outputs.outbox import Outbox
from cervixbatch.segmentation.steps import Step
from cervixbatch.worker.batch_state import Phase, add_ms
from cervixbatch.worker.phases import (
    finish_and_write,
    frame_jobs,
    read_item,
    take_written,
    working_side,
)

if TYPE_CHECKING:
    from cervixbatch.config import Config
    from cervixbatch.imaging.frames import ReadLimits
    from cervixbatch.imaging.sop import SopClassFilter
    from cervixbatch.segmentation.two_stage import Pipeline
    from cervixbatch.worker.batch_state import WorkItem
    from cervixbatch.worker.overlapped_jobs import FrameJob

__all__ = [
    "PAYLOAD",
    "PIXELS",
    "InFlight",
    "ModelStage",
    "ShapeOnly",
    "StageContext",
    "from_rows",
    "hash_paths",
    "pack",
    "put_pixels",
    "read_batch",
    "shape_only",
    "take_pixels",
    "to_rows",
    "unpack",
    "write_batch",
]

PAYLOAD = "payload"
PIXELS = "pixels"  # per input: its frames stacked (frames x H x W x 3, uint8)
Batch = dict[str, npt.NDArray[Any]]
_EMPTY_RGB = np.zeros((0, 0, 3), dtype=np.uint8)
_NO_PIXELS = np.zeros((0, 1, 1, 3), dtype=np.uint8)  # not decoded, or kept in the payload


def pack(value: object) -> bytes:
    """Pickled for a Ray Data column (protocol 5: arrays without a copy)."""
    return pickle.dumps(value, protocol=5)


def unpack(data: bytes) -> Any:
    """The value :func:`pack` pickled (only ever our own rows, from our own stages)."""
    return pickle.loads(data)  # noqa: S301 - written by this backfill's own stages


def _column(values: list[Any]) -> npt.NDArray[Any]:
    column = np.empty(len(values), dtype=object)
    for index, value in enumerate(values):  # (arrays: one per row, never broadcast)
        column[index] = value
    return column


def take_pixels(flight: InFlight) -> npt.NDArray[np.uint8]:
    """Moves the pixels of ``flight``'s frames out of it (for the ``pixels`` column);
    frames of different sizes stay where they are (``_NO_PIXELS`` returned)."""
    decoded = flight.item.decoded
    if decoded is None or not decoded.frames:
        return _NO_PIXELS
    if len({frame.rgb.shape for frame in decoded.frames}) != 1:
        return _NO_PIXELS
    if len(decoded.frames) == 1:
        pixels = decoded.frames[0].rgb[np.newaxis]  # a view: no copy
    else:
        pixels = np.stack([frame.rgb for frame in decoded.frames])
    _set_frames(flight, [_EMPTY_RGB] * len(decoded.frames))
    return pixels


def put_pixels(flight: InFlight, pixels: npt.NDArray[np.uint8]) -> None:
    """Gives ``flight``'s frames back the pixels :func:`take_pixels` took (read-only
    views of the block they came in: no stage writes into a frame)."""
    if len(pixels):
        _set_frames(flight, list(pixels))


def _set_frames(flight: InFlight, images: list[npt.NDArray[np.uint8]]) -> None:
    decoded = flight.item.decoded
    assert decoded is not None
    frames = tuple(
        dataclasses.replace(frame, rgb=rgb)
        for frame, rgb in zip(decoded.frames, images, strict=True)
    )
    flight.item.decoded = dataclasses.replace(decoded, frames=frames)
    for job in flight.jobs:
        job.frame = frames[job.index]


def from_rows(batch: Batch) -> list[InFlight]:
    """The batch's inputs, each with its pixels back."""
    flights: list[InFlight] = []
    for payload, pixels in zip(batch[PAYLOAD], batch[PIXELS], strict=True):
        flight: InFlight = unpack(payload)
        put_pixels(flight, pixels)
        flights.append(flight)
    return flights


def to_rows(flights: list[InFlight]) -> Batch:
    """The batch for the next stage: each input pickled without its pixels, beside them."""
    pixels = [take_pixels(flight) for flight in flights]
    return {PAYLOAD: _column([pack(f) for f in flights]), PIXELS: _column(pixels)}


@dataclasses.dataclass(slots=True)
class InFlight:
    """One claimed input between stages, and what it cost where."""

    item: WorkItem
    jobs: list[FrameJob] = dataclasses.field(default_factory=list)
    phase_ms: dict[str, float] = dataclasses.field(default_factory=dict)
    model_calls: int = 0  # predict_batch calls its model stage made (its batch's share)
    peak_rss_mb: dict[str, float] = dataclasses.field(default_factory=dict)  # node → MB

    def note_memory(self) -> None:
        """Records this process's peak resident memory under its node."""
        node = _node_name()
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
        self.peak_rss_mb[node] = max(self.peak_rss_mb.get(node, 0.0), peak)


def _node_name() -> str:
    """The Ray node this process runs on; the host outside Ray (a call that must not start
    a Ray of its own)."""
    import sys

    ray = sys.modules.get("ray")  # a Ray worker has imported it
    if ray is not None and ray.is_initialized():
        return str(ray.get_runtime_context().get_node_id())[:12]
    return socket.gethostname()


@dataclasses.dataclass(frozen=True, slots=True)
class ShapeOnly:
    """A stage's input shape without its model: what the CPU stages need of it."""

    input_size: tuple[int, int]
    input_channels: int

    def predict_batch(self, images: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
        """Never called: the model calls run in the actor pool."""
        msg = f"no model in this process ({len(images)} images): the actor pool runs them"
        raise RuntimeError(msg)


def shape_only(stages: Stages) -> Stages:
    """The stages' versions and shapes, without the models (small, picklable)."""
    return dataclasses.replace(
        stages,
        cervix=ShapeOnly(stages.cervix.input_size, stages.cervix.input_channels),
        lesion=ShapeOnly(stages.lesion.input_size, stages.lesion.input_channels),
    )


@dataclasses.dataclass(frozen=True, slots=True)
class StageContext:
    """What the CPU stages need, shipped with each task."""

    config: Config
    stages: Stages  # shape only
    limits: ReadLimits
    sop_filter: SopClassFilter

    @property
    def min_working_side(self) -> int | None:
        """How far a photo may be decoded below full size (as the runner)."""
        return working_side(self.config, self.stages.lesion.input_size)

    def pipeline(self) -> Pipeline:
        """The pipeline's CPU steps (its model calls raise)."""
        return pipeline_for(self.config, self.stages)


def hash_paths(batch: Batch) -> Batch:
    """The sha256 of each file in ``path`` ("" when it cannot be read: the driver's
    registration then records why)."""
    digests = []
    for path in batch["path"]:
        try:
            digests.append(hash_file(Path(str(path))))
        except OSError:
            digests.append("")
    return {"path": batch["path"], "sha256": np.array(digests, dtype=object)}


def read_batch(batch: Batch, context: StageContext) -> Batch:
    """Reads, verifies and decodes each input and computes its frames' stage-1 inputs."""
    pipeline = context.pipeline()
    side = context.min_working_side
    out = []
    for payload in batch[PAYLOAD]:
        item: WorkItem = unpack(payload)
        clock = time.perf_counter()
        read_item(item, context.limits, min_working_side=side, sop_filter=context.sop_filter)
        flight = InFlight(item, frame_jobs(item, pipeline))
        add_ms(flight.phase_ms, Phase.READ, clock)
        flight.note_memory()
        out.append(flight)
    return to_rows(out)


class ModelStage:
    """The two model calls, in an actor that loads the models once."""

    def __init__(self, config: Config) -> None:
        self._stages = load_stages(config)
        self._pipeline = pipeline_for(config, self._stages)
        self._chunk = config.batch.size

    def __call__(self, batch: Batch) -> Batch:
        """Segments every frame of the batch's inputs, ``batch.size`` frames per call."""
        flights = from_rows(batch)
        jobs = [job for flight in flights for job in flight.jobs if job.item.failure is None]
        calls = 0
        for start in range(0, len(jobs), self._chunk):
            calls += self._segment(jobs[start : start + self._chunk])
        for index, flight in enumerate(flights):
            flight.model_calls = calls if index == 0 else 0  # counted once per batch
            flight.note_memory()
        return to_rows(flights)

    def _segment(self, chunk: list[FrameJob]) -> int:
        """Stage 1, the crops, stage 2; a failure fails the chunk's inputs (retried)."""
        pipeline = self._pipeline
        clock = time.perf_counter()
        try:
            probs = pipeline.cervix.predict_batch(np.stack([job.stage1_input for job in chunk]))  # type: ignore[misc]
            t1 = time.perf_counter()
            located = [pipeline.locate(job.frame, p) for job, p in zip(chunk, probs, strict=True)]
            t2 = time.perf_counter()
            lesion = pipeline.stage2(located)
        except Exception as exc:  # noqa: BLE001 - the chunk fails, the backfill goes on
            for job in chunk:
                job.item.fail(
                    FailReason.INTERNAL_ERROR, f"segmentation failed: {type(exc).__name__}"
                )
            return 1
        t3 = time.perf_counter()
        count = len(chunk)
        for job, where, prob in zip(chunk, located, lesion, strict=True):
            # The crop is a view of the frame: pickled on its own it would travel twice.
            light = dataclasses.replace(where, crop=None, stage2_input=None)
            job.stage1_input, job.located, job.lesion_prob = None, light, prob
            job.timings_ms[Step.STAGE1] = (t1 - clock) * 1000 / count
            job.timings_ms[Step.LOCATE] = (t2 - t1) * 1000 / count
            job.timings_ms[Step.STAGE2] = (t3 - t2) * 1000 / count
        return 1 + any(where.stage2_input is not None for where in located)


def write_batch(batch: Batch, context: StageContext) -> Batch:
    """Finishes and writes every frame into its input's staging folder; what travels on
    to the driver is the input without its pixels."""
    pipeline = context.pipeline()
    writer = FrameWriter(context.config, Outbox(context.config.paths.outbox), context.stages)
    out = []
    for flight in from_rows(batch):
        clock = time.perf_counter()
        jobs = [job for job in flight.jobs if job.item.decoded and job.item.failure is None]
        for job in jobs:
            _restore_crop(job)
        written = [finish_and_write(job, pipeline, writer) for job in jobs]
        take_written(jobs, written, flight.phase_ms)
        flight.jobs = []
        _drop_pixels(flight.item)
        add_ms(flight.phase_ms, Phase.WRITE, clock)
        flight.note_memory()
        out.append(pack(flight))
    return {PAYLOAD: _column(out)}


def _restore_crop(job: FrameJob) -> None:
    """The crop stage 2 saw: the frame inside the located box (as ``Pipeline.locate``
    cut it), a view again rather than a second copy carried from the actor."""
    where = job.located
    if where is not None and where.box is not None and where.crop is None:
        box = where.box
        crop = job.frame.rgb[box.y0 : box.y1, box.x0 : box.x1]
        job.located = dataclasses.replace(where, crop=crop)


@dataclasses.dataclass(frozen=True, slots=True)
class _Extent:
    """A written mask's shape, in place of its pixels: the result row needs no more."""

    shape: tuple[int, ...]


def _drop_pixels(item: WorkItem) -> None:
    """Keeps what the commit records (measures, sizes, metadata, outputs' paths) and drops
    the frames and full-size masks, so a row back to the driver is a few kB."""
    for result in item.results:
        extent = cast("Any", _Extent(tuple(result.cervix_mask.shape)))
        result.cervix_mask = result.lesion_mask = extent
        result.crop = result.source = None
    decoded = item.decoded
    if decoded is not None:
        frames = tuple(dataclasses.replace(f, rgb=_EMPTY_RGB) for f in decoded.frames)
        item.decoded = dataclasses.replace(decoded, frames=frames, dicom_header=None)
