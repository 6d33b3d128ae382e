"""Small JPEG thumbnails of overlays, for the HTML report's contact sheet.

Decoding uses OpenCV's reduced-size JPEG decoding where the source is large, so a
4128x3096 overlay becomes a 320-pixel thumbnail without decoding every pixel. A thumbnail
newer than its source is kept as it is: rendering the same report twice is cheap.
"""

from __future__ import annotations

import dataclasses
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING

import cv2

from cervixbatch.imaging.photo import REDUCED_JPEG_DECODES
from cervixbatch.outputs.atomic import write_atomic

if TYPE_CHECKING:
    from collections.abc import Iterable

__all__ = ["ThumbnailJob", "make_thumbnail", "make_thumbnails"]

MAX_SIDE = 360
QUALITY = 80


@dataclasses.dataclass(frozen=True, slots=True)
class ThumbnailJob:
    """One thumbnail to make: from ``source`` (of the given size, when known) to ``dest``."""

    source: Path
    dest: Path
    width: int = 0
    height: int = 0


def _read_flag(job: ThumbnailJob, max_side: int) -> int:
    longest = max(job.width, job.height)
    for factor, flag in REDUCED_JPEG_DECODES:
        if longest and longest // factor >= max_side:
            return flag
    return cv2.IMREAD_COLOR


def make_thumbnail(job: ThumbnailJob, *, max_side: int = MAX_SIDE, quality: int = QUALITY) -> bool:
    """Write one thumbnail (or keep a newer one); False when the source is missing or bad."""
    try:
        source_mtime = job.source.stat().st_mtime_ns
    except OSError:
        return False
    try:
        if job.dest.stat().st_mtime_ns >= source_mtime:
            return True
    except OSError:
        pass
    image = cv2.imread(str(job.source), _read_flag(job, max_side))
    if image is None:
        return False
    height, width = image.shape[:2]
    scale = max_side / max(height, width)
    if scale < 1.0:
        size = (max(1, round(width * scale)), max(1, round(height * scale)))
        image = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
    ok, data = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        return False
    job.dest.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(job.dest, data.tobytes())
    return True


def make_thumbnails(jobs: Iterable[ThumbnailJob], *, max_side: int = MAX_SIDE) -> dict[Path, bool]:
    """Make many thumbnails on a few threads (OpenCV releases the GIL); dest → success."""
    todo = list(jobs)
    if not todo:
        return {}
    workers = max(1, min(len(todo), os.cpu_count() or 1, 8))
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="cervixbatch-thumb") as pool:
        done = pool.map(lambda job: make_thumbnail(job, max_side=max_side), todo)
        return {job.dest: ok for job, ok in zip(todo, done, strict=True)}
