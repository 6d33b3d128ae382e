"""Test photos: a dark field, a pink disc (the cervix) and a white patch (the lesion)."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np


def draw_photo(
    width: int = 320, height: int = 240, *, lesion: bool = True, seed: int = 0
) -> np.ndarray:
    """A simple RGB test photo: dark field, pink disc (the cervix), white patch (the lesion)."""
    rng = np.random.default_rng(seed)
    image = np.full((height, width, 3), 20, dtype=np.uint8)
    centre = (width // 2 + int(rng.integers(-10, 10)), height // 2 + int(rng.integers(-10, 10)))
    axes = (width // 4, height // 4)
    cv2.ellipse(image, centre, axes, 0, 0, 360, (220, 120, 130), -1)
    if lesion:
        cv2.circle(image, centre, max(3, min(axes) // 3), (250, 250, 250), -1)
    return image


def write_photo(path: Path, rgb: np.ndarray) -> Path:
    """Writes an RGB array as a JPEG or PNG (by the suffix)."""
    ok, data = cv2.imencode(path.suffix, cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    assert ok
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data.tobytes())
    return path
