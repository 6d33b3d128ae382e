"""Colour and glare of synth-v2 close-ups against 91 real colposcopy close-ups (issue 16).

Each photo is shrunk to about 130 px on its long side; per photo the mean CIELAB L*, a*,
b* and the share of glare pixels (HSV V > 235 and S < 40); across photos the 10th, 50th
and 90th percentiles, printed beside the real ones. Optionally the first generation too.

    .venv/bin/python benchmarks/synth_colour_stats.py [--count 91] [--seed 0] [--v1]
"""

from __future__ import annotations

import argparse
import json

import numpy as np

from cervixbatch.tools.synth import v1 as synth_v1
from cervixbatch.tools.synth.colour_stats import (
    REAL_CLOSE_UPS,
    PhotoStats,
    percentiles,
    photo_stats,
)
from cervixbatch.tools.synth.v2 import Feature, Selection, make_sample


def _v2(count: int, seed: int, size: tuple[int, int]) -> list[PhotoStats]:
    close_ups = Selection(only=frozenset({Feature.CLOSE_UP}))
    return [
        photo_stats(make_sample(np.random.default_rng([seed, i]), size, selection=close_ups).rgb)
        for i in range(count)
    ]


def _v1(count: int, seed: int, size: tuple[int, int]) -> list[PhotoStats]:
    return [
        photo_stats(synth_v1.make_sample(np.random.default_rng([seed, i]), size).rgb)
        for i in range(count)
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--count", type=int, default=91)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--size", default="1024x768", help="WxH of the photos before shrinking")
    parser.add_argument("--v1", action="store_true", help="also the first generation")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    size = synth_v1.parse_size(args.size)
    rows = {
        "real close-ups (issue 16)": REAL_CLOSE_UPS,
        "synth v2 close-ups": percentiles(_v2(args.count, args.seed, size)),
    }
    if args.v1:
        rows["synth v1 (all photos)"] = percentiles(_v1(args.count, args.seed, size))
    verdict = {
        name: REAL_CLOSE_UPS[name][0]
        <= rows["synth v2 close-ups"][name][1]
        <= REAL_CLOSE_UPS[name][2]
        for name in REAL_CLOSE_UPS
    }
    if args.json:
        print(json.dumps({"count": args.count, "rows": rows, "v2_median_in_real_range": verdict}))
        return
    print(f"{args.count} photos each, shrunk to 130 px; 10th / 50th / 90th percentile")
    print(f"{'':28s}" + "".join(f"{name:>24s}" for name in REAL_CLOSE_UPS))
    for label, stats in rows.items():
        cells = []
        for name, (p10, p50, p90) in stats.items():
            scale, unit = (100.0, " %") if name == "glare" else (1.0, "")
            cells.append(f"{p10 * scale:6.1f} {p50 * scale:6.1f} {p90 * scale:6.1f}{unit:2s}")
        print(f"{label:28s}" + "".join(f"{c:>24s}" for c in cells))
    print(
        "v2 median inside the real 10-90 range: "
        + ", ".join(f"{k} {v}" for k, v in verdict.items())
    )


if __name__ == "__main__":
    main()
