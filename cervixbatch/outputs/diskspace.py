"""The disk watermark: below a free-space threshold no new inputs are taken."""

from __future__ import annotations

import os
from pathlib import Path

import structlog

__all__ = ["DiskWatermark", "free_mb"]

log = structlog.get_logger(__name__)


def free_mb(path: Path) -> float:
    """Free space for an unprivileged writer on the filesystem holding ``path``, in MiB."""
    probe = path
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    stats = os.statvfs(probe)
    return stats.f_bavail * stats.f_frsize / (1024 * 1024)


class DiskWatermark:
    """Tells whether free space on the outbox's disk is below ``min_free_mb``; logs each
    change of state once, so an operator sees when work pauses and when it resumes."""

    def __init__(self, path: Path, min_free_mb: float) -> None:
        self.path = path
        self.min_free_mb = min_free_mb
        self.low = False
        self.free = float("inf")

    def check(self) -> bool:
        """Measures now; True while space is below the watermark."""
        if self.min_free_mb <= 0:
            return False
        try:
            self.free = free_mb(self.path)
        except OSError as exc:
            log.warning("disk_space_unknown", error=exc.strerror)
            return self.low
        low = self.free < self.min_free_mb
        if low != self.low:
            event = "disk_space_low" if low else "disk_space_recovered"
            log.warning(event, free_mb=round(self.free, 1), min_free_mb=self.min_free_mb)
        self.low = low
        return low

    def describe(self) -> str:
        """One line for STATUS= and the report."""
        return f"disk space low: {self.free:.0f} MiB free, below {self.min_free_mb:.0f} MiB"
