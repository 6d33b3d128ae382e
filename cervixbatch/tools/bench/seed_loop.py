"""The seed projects' way of segmenting, kept as the benchmark's baseline.

This is the only place ``model.predict`` may appear: one image per call, full-size
decode and resizes, one transaction per image. cervixbatch's own path never works so.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np

__all__ = ["load_plain", "rates", "seed_loop"]


def seed_loop(
    photos: Sequence[Path], cervix_model: Any, lesion_model: Any, out: Path
) -> dict[str, Any]:
    """The seed projects' way, one image at a time; the only ``model.predict`` here.

    Per image: ``cv2.imread`` at full size, ``cv2.resize`` straight to each model's size,
    ``predict`` on a batch of one per stage, masks made at full resolution, overlay drawn
    at full resolution, ``cv2.imwrite`` of masks, overlay and crop, one row committed in
    its own SQLite transaction.
    """
    out.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(out / "seed.db")  # the defaults: rollback journal, full sync
    conn.execute(
        "CREATE TABLE IF NOT EXISTS results (path TEXT, cervix_fraction REAL,"
        " lesion_fraction REAL, box TEXT, cervix_mask TEXT, lesion_mask TEXT, overlay TEXT)"
    )
    size1 = tuple(int(v) for v in cervix_model.input_shape[1:3])
    size2 = tuple(int(v) for v in lesion_model.input_shape[1:3])
    steps: dict[str, float] = dict.fromkeys(
        ("decode", "resize", "stage1", "roi", "stage2", "postprocess", "write", "commit"), 0.0
    )
    last = [time.perf_counter()]

    def lap(step: str) -> None:  # adds the time since the last lap to ``step``
        now = time.perf_counter()
        steps[step] += (now - last[0]) * 1000
        last[0] = now

    started = time.perf_counter()
    for index, path in enumerate(photos):
        last[0] = time.perf_counter()
        bgr: Any = cv2.imread(str(path))
        lap("decode")
        small = cv2.resize(bgr, (size1[1], size1[0]), interpolation=cv2.INTER_AREA)
        x1 = cv2.cvtColor(small, cv2.COLOR_BGR2RGB).astype(np.float32) / 255.0
        lap("resize")
        prob1 = cervix_model.predict(x1[None], verbose=0)[0].mean(axis=-1)
        lap("stage1")
        height, width = bgr.shape[:2]
        cervix = np.where(cv2.resize(prob1, (width, height)) > 0.5, 255, 0).astype(np.uint8)
        x0, y0, box_w, box_h = cv2.boundingRect(cervix)
        crop = bgr[y0 : y0 + box_h, x0 : x0 + box_w]
        lap("roi")
        grey = cv2.cvtColor(crop, cv2.COLOR_BGR2GRAY)
        x2 = cv2.resize(grey, (size2[1], size2[0]), interpolation=cv2.INTER_AREA) / 255.0
        lap("resize")
        prob2 = lesion_model.predict(x2[None, ..., None].astype(np.float32), verbose=0)[0, ..., 0]
        lap("stage2")
        lesion = np.zeros_like(cervix)
        lesion[y0 : y0 + box_h, x0 : x0 + box_w] = np.where(
            cv2.resize(prob2, (box_w, box_h)) > 0.5, 255, 0
        )
        lesion &= cervix
        overlay = _seed_overlay(bgr, cervix, lesion)
        cervix_fraction = float(np.count_nonzero(cervix)) / cervix.size
        lesion_fraction = float(np.count_nonzero(lesion)) / max(1, int(np.count_nonzero(cervix)))
        lap("postprocess")
        folder = out / f"{index:05d}"
        folder.mkdir(exist_ok=True)
        names = [str(folder / n) for n in ("cervix.png", "lesion.png", "overlay.jpg", "crop.jpg")]
        for name, image in zip(names, (cervix, lesion, overlay, crop), strict=True):
            cv2.imwrite(name, image)
        lap("write")
        conn.execute(
            "INSERT INTO results VALUES (?, ?, ?, ?, ?, ?, ?)",
            (str(path), cervix_fraction, lesion_fraction, f"{x0},{y0},{box_w},{box_h}", *names[:3]),
        )
        conn.commit()
        lap("commit")
    elapsed = time.perf_counter() - started
    conn.close()
    return rates(len(photos), elapsed, steps)


def _seed_overlay(bgr: Any, cervix: Any, lesion: Any) -> Any:
    """Outlines drawn on a full-resolution copy, as the seed does."""
    overlay = bgr.copy()
    for mask, colour in ((cervix, (90, 230, 0)), (lesion, (0, 225, 255))):
        contours, _ = cv2.findContours(mask, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
        cv2.drawContours(overlay, contours, -1, colour, 8)
    return overlay


def load_plain(path: Path) -> Any:
    """The model as the seed loads it: plain Keras, float32."""
    import keras

    return keras.models.load_model(path, compile=False)


def rates(count: int, elapsed: float, steps: Mapping[str, float]) -> dict[str, Any]:
    """Images, seconds, images/s and milliseconds per image for each step."""
    return {
        "images": count,
        "seconds": round(elapsed, 3),
        "images_per_s": round(count / elapsed, 3),
        "steps_ms": {k: round(v / count, 2) for k, v in steps.items()},
    }
