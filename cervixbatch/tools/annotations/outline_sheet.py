"""Contact sheets for checking labels by eye: one row per photo, tiles side by side.

``labels sheet`` shows photo | stroke | filled region (the outline rule's answer, with its
status), so a user can see where the rule of :mod:`cervixbatch.tools.annotations.outline` goes wrong
on their own data. The same tiles serve stage-1 checks (the found cervix over the photo)
and the worst-overlay review (truth and prediction over the photo).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np
import numpy.typing as npt

from cervixbatch.errors import CervixbatchError
from cervixbatch.tools.annotations.outline import Filled, fill_outline

__all__ = ["TILE", "contact_sheet", "outline_row", "overlay", "write_sheet"]

Image = npt.NDArray[np.uint8]
TILE = 192
RED, GREEN, YELLOW = (0, 0, 255), (0, 200, 0), (0, 220, 255)  # BGR


def _tile(image: Image, size: int = TILE) -> Image:
    if image.ndim == 2:
        image = cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
    return cv2.resize(image, (size, size), interpolation=cv2.INTER_AREA)


def overlay(photo: Image, masks: Sequence[tuple[Image, tuple[int, int, int]]]) -> Image:
    """The photo (BGR) with each mask's outline drawn in its colour."""
    out = photo.copy()
    for mask, colour in masks:
        sized = mask
        if mask.shape != out.shape[:2]:
            sized = cv2.resize(mask, (out.shape[1], out.shape[0]), interpolation=cv2.INTER_NEAREST)
        contours, _ = cv2.findContours(
            (sized > 0).astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE
        )
        cv2.drawContours(out, contours, -1, colour, max(1, out.shape[1] // 192))
    return out


def _label(tile: Image, text: str) -> Image:
    cv2.putText(tile, text, (4, 14), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (0, 0, 0), 3, cv2.LINE_AA)
    cv2.putText(tile, text, (4, 14), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (255, 255, 255), 1)
    return tile


def outline_row(photo: Image, stroke: Image, name: str) -> tuple[Image, Filled]:
    """A row of three tiles (photo, stroke over it, filled region over it) and the fill."""
    filled = fill_outline(stroke)
    if stroke.shape != photo.shape[:2]:
        photo = cv2.resize(photo, (stroke.shape[1], stroke.shape[0]), interpolation=cv2.INTER_AREA)
    drawn = photo.copy()
    drawn[stroke > 0] = YELLOW
    region = photo.copy()
    tint = np.zeros_like(photo)
    tint[filled.region > 0] = GREEN
    region = cv2.addWeighted(region, 1.0, tint, 0.5, 0)
    region = overlay(region, [(filled.region, GREEN)])
    tiles = [
        _label(_tile(photo), name[:28]),
        _label(_tile(drawn), "stroke"),
        _label(_tile(region), filled.status.value),
    ]
    return np.hstack(tiles), filled


def contact_sheet(rows: Sequence[Image], columns: int = 1) -> Image:
    """Rows stacked (and laid out in ``columns`` columns), white gaps between them."""
    if not rows:
        raise CervixbatchError("nothing to put on the contact sheet")
    height, width = rows[0].shape[:2]
    per_column = -(-len(rows) // columns)
    sheet = np.full((per_column * (height + 4), columns * (width + 8), 3), 255, np.uint8)
    for index, row in enumerate(rows):
        col, pos = divmod(index, per_column)
        y, x = pos * (height + 4), col * (width + 8)
        sheet[y : y + height, x : x + width] = row
    return sheet


def write_sheet(path: Path, rows: Sequence[Image], columns: int = 1) -> None:
    """The contact sheet of ``rows`` written as PNG (or JPEG by its suffix)."""
    if not cv2.imwrite(str(path), contact_sheet(rows, columns)):
        raise CervixbatchError(f"could not write the contact sheet {path.name}")
