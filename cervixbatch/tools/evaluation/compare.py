"""``report --compare-models A B``: two model versions on the same inputs, side by side,
the way ``evaluate`` compares a model with the truth.

For every input with results under both pairs of models (each pair's latest run of that
input), per frame: the lesion fraction under each, and the Dice between their lesion
masks and between their cervix masks, read from the mask files. A pair is named by
sha256 prefixes, ``CERVIX:LESION`` (either part may be left empty), or by one prefix
that matches either stage's version; ``report --all-versions`` lists the versions.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import numpy.typing as npt
from sqlalchemy import Select
from sqlalchemy.orm import Session

from cervixbatch.errors import CervixbatchError
from cervixbatch.segmentation.scores import dice
from cervixbatch.store.runs import ModelPair, model_pairs, results_of_pairs
from cervixbatch.store.schema import Result

__all__ = [
    "Comparison",
    "FrameComparison",
    "compare_models",
    "render_compare_csv",
    "render_compare_json",
    "render_compare_table",
    "resolve_pair",
]


@dataclasses.dataclass(frozen=True, slots=True)
class FrameComparison:
    """One frame of one input under the two pairs."""

    input_id: int
    frame: int
    run_a: int
    run_b: int
    lesion_fraction_a: float
    lesion_fraction_b: float
    lesion_dice: float | None  # None: a mask file is gone (purged, say)
    cervix_dice: float | None

    def as_dict(self) -> dict[str, Any]:
        """Plain JSON values."""
        return {
            "id": self.input_id,
            "frame": self.frame,
            "run_a": self.run_a,
            "run_b": self.run_b,
            "lesion_fraction_a": round(self.lesion_fraction_a, 6),
            "lesion_fraction_b": round(self.lesion_fraction_b, 6),
            "lesion_dice": _round(self.lesion_dice),
            "cervix_dice": _round(self.cervix_dice),
        }


@dataclasses.dataclass(frozen=True, slots=True)
class Comparison:
    """Every compared frame, and the means over them."""

    a: ModelPair
    b: ModelPair
    frames: tuple[FrameComparison, ...]

    @property
    def inputs(self) -> int:
        """How many inputs were compared."""
        return len({f.input_id for f in self.frames})

    def mean(self, name: str) -> float | None:
        """The mean of one measure over the frames that have it."""
        values = [getattr(f, name) for f in self.frames if getattr(f, name) is not None]
        return float(np.mean(values)) if values else None

    @property
    def mean_abs_lesion_difference(self) -> float | None:
        """The mean of |lesion fraction A - lesion fraction B|."""
        if not self.frames:
            return None
        return float(np.mean([abs(f.lesion_fraction_a - f.lesion_fraction_b) for f in self.frames]))

    def summary(self) -> dict[str, Any]:
        """The means, as plain JSON values."""
        return {
            "a": {"cervix": self.a[0], "lesion": self.a[1]},
            "b": {"cervix": self.b[0], "lesion": self.b[1]},
            "inputs": self.inputs,
            "frames": len(self.frames),
            "mean_lesion_dice": _round(self.mean("lesion_dice")),
            "mean_cervix_dice": _round(self.mean("cervix_dice")),
            "mean_abs_lesion_fraction_difference": _round(self.mean_abs_lesion_difference),
        }


def resolve_pair(session: Session, spec: str) -> ModelPair:
    """The one pair of model versions in the results that ``spec`` names."""
    cervix_prefix, colon, lesion_prefix = spec.partition(":")
    text = spec.strip().lower()
    if not text or not all(c in "0123456789abcdef:" for c in text):
        raise CervixbatchError(f"{spec!r} is not a model version prefix (hex, or CERVIX:LESION)")
    pairs = [(c, les) for c, les, _ in model_pairs(session)]
    if colon:
        found = [
            (c, les)
            for c, les in pairs
            if c.startswith(cervix_prefix.lower()) and les.startswith(lesion_prefix.lower())
        ]
    else:
        found = [(c, les) for c, les in pairs if c.startswith(text) or les.startswith(text)]
    if len(found) == 1:
        return found[0]
    known = ", ".join(f"{c[:12]}:{les[:12]}" for c, les in pairs) or "none"
    if not found:
        raise CervixbatchError(f"no results were made by models {spec!r} (pairs: {known})")
    raise CervixbatchError(f"{spec!r} names several pairs of models; be more precise ({known})")


def compare_models(
    session: Session,
    spec_a: str,
    spec_b: str,
    restrict: Callable[[Select[Any]], Select[Any]],
    limit: int | None = None,
) -> Comparison:
    """Compares the two pairs on every input both have results for."""
    a, b = resolve_pair(session, spec_a), resolve_pair(session, spec_b)
    if a == b:
        raise CervixbatchError(f"{spec_a!r} and {spec_b!r} name the same pair of models")
    latest: dict[tuple[int, ModelPair], dict[int, Result]] = {}
    for result in results_of_pairs(session, a, b, restrict, limit):
        key = (result.input_id, (result.cervix_model, result.lesion_model))
        frames = latest.setdefault(key, {})
        if result.frame not in frames or frames[result.frame].run < result.run:
            frames[result.frame] = result
    pairs: list[tuple[Result, Result]] = []
    for (input_id, pair), frames in latest.items():
        if pair != a:
            continue
        other = latest.get((input_id, b), {})
        pairs.extend((frames[f], other[f]) for f in sorted(frames) if f in other)
    workers = max(1, min(8, os.cpu_count() or 1))
    with ThreadPoolExecutor(workers, thread_name_prefix="cervixbatch-compare") as pool:
        frames_compared = list(pool.map(lambda pair: _compare(*pair), pairs))
    return Comparison(a=a, b=b, frames=tuple(frames_compared))


def _compare(first: Result, second: Result) -> FrameComparison:
    return FrameComparison(
        input_id=first.input_id,
        frame=first.frame,
        run_a=first.run,
        run_b=second.run,
        lesion_fraction_a=first.lesion_fraction,
        lesion_fraction_b=second.lesion_fraction,
        lesion_dice=_mask_dice(first.lesion_mask_path, second.lesion_mask_path),
        cervix_dice=_mask_dice(first.cervix_mask_path, second.cervix_mask_path),
    )


def _mask_dice(first: str, second: str) -> float | None:
    a, b = _read_mask(first), _read_mask(second)
    if a is None or b is None or a.shape != b.shape:
        return None
    return dice(a, b)


def _read_mask(path: str) -> npt.NDArray[np.bool_] | None:
    if not Path(path).is_file():
        return None
    mask = cv2.imread(path, cv2.IMREAD_GRAYSCALE)
    return None if mask is None else mask > 127


def render_compare_json(comparison: Comparison) -> str:
    """The comparison as one JSON object: the means, then every frame."""
    document = {
        "summary": comparison.summary(),
        "items": [f.as_dict() for f in comparison.frames],
    }
    return json.dumps(document, indent=2) + "\n"


_CSV_COLUMNS = (
    "id",
    "frame",
    "run_a",
    "run_b",
    "lesion_fraction_a",
    "lesion_fraction_b",
    "lesion_dice",
    "cervix_dice",
)


def render_compare_csv(comparison: Comparison) -> str:
    """One CSV row per compared frame."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(_CSV_COLUMNS)
    for frame in comparison.frames:
        values = frame.as_dict()
        writer.writerow(["" if values[k] is None else values[k] for k in _CSV_COLUMNS])
    return buffer.getvalue()


def render_compare_table(comparison: Comparison) -> str:
    """The means, then one line per frame, for a terminal."""
    summary = comparison.summary()
    a, b = comparison.a, comparison.b
    means = (
        f"{summary['inputs']} inputs, {summary['frames']} frames with results under both; "
        f"mean Dice lesion {_text(summary['mean_lesion_dice'])}, "
        f"cervix {_text(summary['mean_cervix_dice'])}; "
        f"mean |lesion A - lesion B| {_text(summary['mean_abs_lesion_fraction_difference'])}"
    )
    header = (
        f"{'id':>8} {'frame':>5} {'lesion A':>9} {'lesion B':>9} {'Dice lesion':>11} "
        f"{'Dice cervix':>11}"
    )
    lines = [
        f"A  cervix {a[0][:12]}  lesion {a[1][:12]}",
        f"B  cervix {b[0][:12]}  lesion {b[1][:12]}",
        means,
        "",
        header,
    ]
    lines.extend(
        f"{f.input_id:>8} {f.frame:>5} {f.lesion_fraction_a:>9.1%} {f.lesion_fraction_b:>9.1%} "
        f"{_text(f.lesion_dice):>11} {_text(f.cervix_dice):>11}"
        for f in comparison.frames
    )
    return "\n".join(lines) + "\n"


def _round(value: float | None) -> float | None:
    return round(value, 4) if value is not None else None


def _text(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"
