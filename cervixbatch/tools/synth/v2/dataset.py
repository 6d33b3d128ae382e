"""Writing a synth-v2 set: the same layout and seeding as the first generation, plus a
manifest (``synth.json``) naming each photo's features, so evaluation can be sliced by
setting afterwards."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from cervixbatch.outputs.atomic import PLAIN_MODE, write_atomic
from cervixbatch.tools.synth.v1 import SynthSample, write_samples
from cervixbatch.tools.synth.v2.compose import make_sample
from cervixbatch.tools.synth.v2.plan import Selection

__all__ = ["MANIFEST", "write_dataset"]

MANIFEST = "synth.json"


def write_dataset(
    out: Path,
    count: int,
    *,
    seed: int = 0,
    size: tuple[int, int] | None = None,
    start: int = 0,
    selection: Selection | None = None,
    on_progress: Callable[[int], None] | None = None,
) -> list[str]:
    """Write ``count`` synth-v2 samples as images/, cervix/ and lesion/ plus ``synth.json``.

    Sample ``index`` (= start + i) is drawn from a Generator seeded ``[seed, index]``: any
    one can be regenerated alone, and it does not depend on ``count``.
    """
    chosen = selection or Selection()
    samples: list[dict[str, Any]] = []

    def record(stem: str, sample: SynthSample) -> None:
        cervix_px = int(np.count_nonzero(sample.cervix_mask))
        samples.append(
            {
                "stem": stem,
                "size": [int(sample.rgb.shape[1]), int(sample.rgb.shape[0])],
                "features": sorted(sample.features),
                "cervix_fraction": round(cervix_px / sample.cervix_mask.size, 4),
                "lesion_fraction": round(
                    int(np.count_nonzero(sample.lesion_mask)) / cervix_px if cervix_px else 0.0, 4
                ),
            }
        )

    stems = write_samples(
        out,
        count,
        lambda rng: make_sample(rng, size, selection=chosen),
        seed=seed,
        start=start,
        on_progress=on_progress,
        on_sample=record,
    )
    manifest = {
        "generator": "v2",
        "seed": seed,
        "start": start,
        "hold_out": sorted(f.value for f in chosen.hold_out),
        "only": sorted(f.value for f in chosen.only),
        "samples": samples,
    }
    text = json.dumps(manifest, indent=1) + "\n"
    write_atomic(out / MANIFEST, text.encode("utf-8"), mode=PLAIN_MODE)
    return stems
