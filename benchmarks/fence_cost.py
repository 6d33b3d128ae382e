"""The cost of fencing writes on commit throughput: staged and published against written in
place, in the same run (issue 22: it must stay under 5 %).

Each round processes the same N photos twice through the real ``Runner`` (register,
claim, decode, the simulated device for both stages, write, commit, dispose) on a fresh
SQLite database opened as a worker opens it (``synchronous = FULL`` with
``watch.after = delete``): once as the product runs now (each attempt writes into its
staging folder; the commit fences the claim and renames the files into place), once with
the outputs written straight into their final folder as before the fence (a stand-in
stage installed by this benchmark only). The simulated device makes the model calls
cheap, so the writes weigh as much as they can. Rounds alternate the order and pair their
ratios, so a shared machine's drifting load weighs on both alike. Prints JSON with the
CPU model.

    .venv/bin/python benchmarks/fence_cost.py [--photos 48] [--rounds 6] [--size 1600x1200]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shutil
import statistics
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import durability_cost as bench

from cervixbatch.config.types import LogLevel
from cervixbatch.logs import configure_logging
from cervixbatch.model.pair import load_stages
from cervixbatch.outputs.outbox import FrameOutputs, Outbox
from cervixbatch.outputs.staging import Stage, stage_for
from cervixbatch.worker import runner as runner_module


@dataclasses.dataclass(frozen=True, slots=True)
class InPlace(Stage):
    """Before the fence: frames written straight into the run's folder, nothing to publish."""

    def publish(self, written: Sequence[FrameOutputs]) -> None:
        """Nothing to move: the files are where they belong."""

    def discard(self) -> None:
        """Nothing of its own to remove (the folder is the input's)."""


def _in_place(outbox: Outbox, input_id: int, run: int, attempt: int) -> Stage:
    del attempt
    target = outbox.run_dir(input_id, run)
    return InPlace(root=target, target=target)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--photos", type=int, default=48)
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--size", default="1600x1200")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--device-ms", type=float, default=5.0)
    parser.add_argument("--pipeline", action=argparse.BooleanOptionalAction, default=True)
    args = parser.parse_args()
    configure_logging(LogLevel.WARNING)
    width, height = (int(v) for v in args.size.split("x"))
    root = Path(tempfile.mkdtemp(prefix="fence-cost-"))
    try:
        sources = bench._photos(root / "sources", args.photos, (width, height))  # noqa: SLF001
        stages = load_stages(bench._config(root, args))  # noqa: SLF001
        modes = {"in_place": _in_place, "fenced": stage_for}
        runs: dict[str, list[dict[str, float]]] = {mode: [] for mode in modes}
        ratios = []
        for index in range(args.rounds + 1):  # round 0 warms up and is not counted
            order = list(modes) if index % 2 == 0 else list(reversed(modes))
            this_round = {}
            for mode in order:
                runner_module.stage_for = modes[mode]  # type: ignore[assignment]
                this_round[mode] = bench._one_run(sources, root, args, stages, full=True)  # noqa: SLF001
            if index == 0:
                continue
            for mode, run in this_round.items():
                runs[mode].append(run)
            ratios.append(
                this_round["fenced"]["photos_per_s"] / this_round["in_place"]["photos_per_s"]
            )
        median = statistics.median(ratios)
        report: dict[str, Any] = {
            "cpu": bench._cpu(),  # noqa: SLF001
            "cores": len(os.sched_getaffinity(0)),
            "load_average": os.getloadavg()[0],
            "photos": args.photos,
            "size": args.size,
            "pipeline": args.pipeline,
            "rounds": args.rounds,
            "in_place": bench._summary(runs["in_place"]),  # noqa: SLF001
            "fenced": bench._summary(runs["fenced"]),  # noqa: SLF001
            "fenced_over_in_place_photos_per_s": {
                "median": round(median, 4),
                "per_round": [round(r, 4) for r in ratios],
            },
            "throughput_cost_percent": round((1 - median) * 100, 2),
        }
        print(json.dumps(report, indent=2))
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
