"""A batch's state from claim to commit, shared by the runner's two schedules: each claimed
input's work, the batch's outcome, the names of its timed phases, and log events held back
until the commit."""

from __future__ import annotations

import dataclasses
import enum
import time
from typing import Any

from cervixbatch.errors import FailReason, InputRejected
from cervixbatch.imaging.frames import DecodedInput
from cervixbatch.imaging.verified import ChangedFile
from cervixbatch.outputs.outbox import FrameOutputs
from cervixbatch.outputs.staging import Stage
from cervixbatch.segmentation.steps import Step
from cervixbatch.segmentation.two_stage import FrameResult
from cervixbatch.store.leases import ClaimedInput
from cervixbatch.store.schema import Status

__all__ = ["BatchOutcome", "DeferredLog", "Phase", "WorkItem", "add_ms"]


class Phase(enum.StrEnum):
    """A batch's phases, as its timings (``BatchOutcome.timings_ms``) and logs name them."""

    CLAIM = "claim"
    READ = "read"
    SEGMENT = "segment"
    WRITE = "write"
    COMMIT = "commit"


def add_ms(timings_ms: dict[str, float], name: Phase | Step, since: float) -> None:
    """Adds the milliseconds since ``since`` (``time.perf_counter``) to ``name``."""
    timings_ms[name] = timings_ms.get(name, 0.0) + (time.perf_counter() - since) * 1000


@dataclasses.dataclass(slots=True)
class BatchOutcome:
    """What one batch did."""

    inputs: int = 0
    frames: int = 0
    done: int = 0
    rejected: int = 0
    failed: int = 0
    retried: int = 0
    timings_ms: dict[str, float] = dataclasses.field(default_factory=dict)
    latencies_s: list[float] = dataclasses.field(default_factory=list)  # found → done

    def add(self, other: BatchOutcome) -> None:
        """Adds another batch's counts (not its timings) to these."""
        for name in ("inputs", "frames", "done", "rejected", "failed", "retried"):
            setattr(self, name, getattr(self, name) + getattr(other, name))

    def log_done(self, logger: Any) -> None:
        """The batch's one summary event, with its counts and phase timings."""
        logger.info(
            "batch_done",
            inputs=self.inputs,
            frames=self.frames,
            done=self.done,
            rejected=self.rejected,
            failed=self.failed,
            retried=self.retried,
            ms={k: round(v, 1) for k, v in self.timings_ms.items()},
        )


@dataclasses.dataclass(slots=True)
class WorkItem:
    """One claimed input on its way through the batch."""

    claimed: ClaimedInput
    stage: Stage  # this attempt's staging folder: published by the commit that holds the claim
    run: int = 1  # which run of the input this is (2 and up: reprocessed)
    path: str | None = None
    decoded: DecodedInput | None = None
    rejection: InputRejected | None = None
    failure: tuple[FailReason, str] | None = None  # (reason, detail)
    transient: bool = False  # the failure was the disk's: retry without spending an attempt
    completed: bool = False  # committed as done
    committed: bool = False  # this worker's commit of a terminal done/rejected took
    ended: Status | None = None  # the terminal state this worker's commit recorded
    # Files at the input's paths that now hold other bytes: registered as inputs of
    # their own once the batch has committed.
    changed: list[ChangedFile] = dataclasses.field(default_factory=list)
    results: list[FrameResult] = dataclasses.field(default_factory=list)
    outputs: list[FrameOutputs] = dataclasses.field(default_factory=list)
    started: float = 0.0
    published: bool = False  # the staged outputs are in place (a retried commit skips it)

    def fail(self, reason: FailReason, detail: str) -> None:
        """Marks this attempt failed through no fault of the input (retried as allowed)."""
        self.failure = (reason, detail)

    def metadata(self) -> dict[str, object]:
        """What the decoded input says of itself, for its row (empty when not decoded)."""
        decoded = self.decoded
        if decoded is None:
            return {}
        meta: dict[str, object] = {
            "kind": decoded.kind.value,
            "format": decoded.format,
            "frame_count": len(decoded.frames),
        }
        if decoded.dicom is not None:
            meta.update(
                study_uid=decoded.dicom.study_uid,
                series_uid=decoded.dicom.series_uid,
                sop_instance_uid=decoded.dicom.sop_instance_uid,
                sop_class_uid=decoded.dicom.sop_class_uid,
            )
        return meta


class DeferredLog:
    """Log events held back until a transaction has committed."""

    def __init__(self) -> None:
        self._events: list[tuple[str, str, dict[str, Any]]] = []

    def info(self, event: str, **fields: Any) -> None:
        """Holds an info event."""
        self._events.append(("info", event, fields))

    def warning(self, event: str, **fields: Any) -> None:
        """Holds a warning."""
        self._events.append(("warning", event, fields))

    def replay(self, logger: Any) -> None:
        """Logs what was held, in order, to ``logger``."""
        for level, event, fields in self._events:
            getattr(logger, level)(event, **fields)
