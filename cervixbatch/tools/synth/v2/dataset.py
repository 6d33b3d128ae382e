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
from cervixbatch.tools.synth.v1 import sample_folders, write_sample
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
    selection = selection or Selection()
    folders = sample_folders(out)
    stems: list[str] = []
    samples: list[dict[str, Any]] = []
    for i in range(count):
        index = start + i
        sample = make_sample(np.random.default_rng([seed, index]), size, selection=selection)
        stem = f"synth_{index:05d}"
        write_sample(folders, stem, sample)
        stems.append(stem)
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
        if on_progress is not None:
            on_progress(i + 1)
    manifest = {
        "generator": "v2",
        "seed": seed,
        "start": start,
        "hold_out": sorted(f.value for f in selection.hold_out),
        "only": sorted(f.value for f in selection.only),
        "samples": samples,
    }
    text = json.dumps(manifest, indent=1) + "\n"
    write_atomic(out / MANIFEST, text.encode("utf-8"), mode=PLAIN_MODE)
    return stems
