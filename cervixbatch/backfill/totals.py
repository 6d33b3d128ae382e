"""What a backfill did (its summary and exit status), and its progress line."""

from __future__ import annotations

import collections
import dataclasses
import sys
import time
from typing import TextIO

__all__ = ["BackfillTotals", "ProgressLine"]


@dataclasses.dataclass(slots=True)
class BackfillTotals:
    """Counts of one backfill run."""

    engine: str = "ray"
    sources: int = 0  # files found under the folders and in the manifests
    inputs: int = 0  # distinct inputs among them (the same bytes twice: one)
    new: int = 0  # registered by this run
    already_done: int = 0  # known bytes, done by this model pair: skipped before decoding
    requeued_other_pair: int = 0  # known bytes done by another model pair: run again
    done: int = 0  # of this run's sources, done now
    failed: int = 0
    queued: int = 0  # left in the queue (paused, or attempts left after a lost task)
    rejected: collections.Counter[str] = dataclasses.field(default_factory=collections.Counter)
    committed: int = 0  # inputs this run committed (any outcome)
    model_calls: int | None = 0  # predict_batch calls of the model actors (None: local)
    frames: int = 0
    seconds: float = 0.0
    commit_seconds: float = 0.0  # the driver's transactions and publishing, summed
    peak_rss_mb: dict[str, float] = dataclasses.field(default_factory=dict)  # node → MB
    driver_peak_rss_mb: float = 0.0
    lost_waves: int = 0  # waves the cluster failed; their inputs went back to the queue
    # The first and last commits' clocks (perf_counter) and the inputs of the first: the
    # steady rate between them leaves out the start (a Ray actor importing its framework
    # and loading the models, each wave) and the pipeline's fill.
    first_commit: tuple[float, int] | None = None
    last_commit_at: float = 0.0

    @property
    def photos_per_s(self) -> float:
        """Inputs committed per second of processing."""
        return self.committed / self.seconds if self.seconds > 0 else 0.0

    def note_commit(self, count: int) -> None:
        """Counts ``count`` committed inputs and when they were committed."""
        now = time.perf_counter()
        self.committed += count
        if self.first_commit is None:
            self.first_commit = (now, self.committed)
        self.last_commit_at = now

    @property
    def steady_photos_per_s(self) -> float:
        """Inputs committed per second after the first commit (0: too few commits)."""
        if self.first_commit is None:
            return 0.0
        started, first = self.first_commit
        elapsed = self.last_commit_at - started
        return (self.committed - first) / elapsed if elapsed > 0 else 0.0

    def as_json(self) -> dict[str, object]:
        """A JSON-ready summary."""
        data = dataclasses.asdict(self)
        data["rejected"] = dict(sorted(self.rejected.items()))
        data["photos_per_s"] = round(self.photos_per_s, 2)
        data["steady_photos_per_s"] = round(self.steady_photos_per_s, 2)
        del data["first_commit"], data["last_commit_at"]
        return data

    def lines(self) -> list[str]:
        """The human summary."""
        rejected = sum(self.rejected.values())
        calls = "" if self.model_calls is None else f", {self.model_calls} model calls"
        lines = [
            (
                f"backfill ({self.engine}): {self.sources} files, {self.inputs} inputs: "
                f"{self.done} done, {rejected} rejected, {self.failed} failed; "
                f"{self.already_done} already done (skipped before decoding), {self.new} new"
                + (
                    f", {self.requeued_other_pair} run again (done by another model pair)"
                    if self.requeued_other_pair
                    else ""
                )
            ),
            (
                f"{self.committed} committed in {self.seconds:.1f} s "
                f"({self.photos_per_s:.1f} photos/s), {self.frames} frames{calls}"
            ),
        ]
        if self.rejected:
            reasons = ", ".join(f"{r} {n}" for r, n in sorted(self.rejected.items()))
            lines.append(f"rejected by reason: {reasons}")
        if self.peak_rss_mb or self.driver_peak_rss_mb:
            nodes = ", ".join(f"{n} {mb:.0f} MB" for n, mb in sorted(self.peak_rss_mb.items()))
            lines.append(
                f"peak memory: driver {self.driver_peak_rss_mb:.0f} MB"
                + (f"; largest worker process per node: {nodes}" if nodes else "")
            )
        if self.queued:
            lines.append(f"{self.queued} left queued: run again, or let the daemon take them")
        return lines


class ProgressLine:
    """A plain progress line on standard error (a terminal, a pipe or a SLURM log alike):
    done of total, photos per second and the ETA, at most every ``every`` seconds."""

    def __init__(self, total: int, *, every: float = 5.0, stream: TextIO | None = None) -> None:
        self.total = total
        self.count = 0
        self._every = every
        self._stream = stream or sys.stderr
        self._start = time.monotonic()
        self._last = self._start

    def advance(self, count: int, *, force: bool = False) -> None:
        """Adds ``count`` finished inputs; prints when due."""
        self.count += count
        now = time.monotonic()
        if not force and now - self._last < self._every:
            return
        self._last = now
        elapsed = max(now - self._start, 1e-9)
        rate = self.count / elapsed
        left = max(self.total - self.count, 0)
        eta = f"{left / rate:.0f} s" if rate > 0 else "?"
        self._stream.write(
            f"backfill: {self.count}/{self.total} photos, {rate:.1f} photos/s, ETA {eta}\n"
        )
        self._stream.flush()
