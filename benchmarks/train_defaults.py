"""Does `cervixbatch train --stage cervix` learn with its defaults only, on photos of a
kind the demo models never saw?

Makes 160 synthetic photos at 1600×1200 with a seed and a size that the demo models'
training (seed 1, mixed sizes) never used, then runs `train --stage cervix` with nothing
but --images, --masks and --out, as a subprocess, and reads its log: the validation Dice
(hard, per image at 0.5, as `evaluate` counts) and the wall time at every epoch, the first
epoch and minute at which it reached 0.85, the final validation Dice (the card's), and
whether the collapse guard stopped it. Prints JSON; the CPU is named, and each epoch has
the training process's CPU minutes beside its wall minutes (a shared machine's wall time
says more about the other jobs than about training).

    .venv/bin/python benchmarks/train_defaults.py [--work DIR] [--count 160] [--seed 15]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

TARGET = 0.85


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def cpu_minutes(pid: int) -> float | None:
    """CPU minutes (user + system) a running process has used: comparable across loads,
    where wall time on a shared machine is not."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    ticks = int(fields[11]) + int(fields[12])  # utime, stime
    return round(ticks / os.sysconf("SC_CLK_TCK") / 60, 2)


def cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "cervixbatch.cli", *args]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "cb-train-bench")
    parser.add_argument("--count", type=int, default=160)
    parser.add_argument("--seed", type=int, default=15)
    parser.add_argument("--size", default="1600x1200")
    args = parser.parse_args()
    data, out = args.work / "data", args.work / "cervix.keras"
    if not (data / "images").is_dir():
        subprocess.run(
            cli(
                "synth",
                "--count",
                str(args.count),
                "--out",
                str(data),
                "--seed",
                str(args.seed),
                "--size",
                args.size,
            ),
            check=True,
        )
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    command = cli(
        "train",
        "--stage",
        "cervix",
        "--images",
        str(data / "images"),
        "--masks",
        str(data / "cervix"),
        "--out",
        str(out),
    )
    start = time.monotonic()
    epochs: list[dict[str, Any]] = []
    collapsed = None
    with subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env
    ) as proc:
        assert proc.stdout is not None
        for line in proc.stdout:
            try:
                event = json.loads(line)
            except json.JSONDecodeError:
                continue
            if event.get("event") == "validation_checked":  # the guard's, before epoch_done
                epochs.append(
                    {
                        "epoch": event["epoch"],
                        "minutes": round((time.monotonic() - start) / 60, 2),
                        "val_dice": event.get("val_dice"),
                        "val_soft_dice": event.get("val_soft_dice"),
                    }
                )
            elif event.get("event") == "epoch_done" and epochs:
                epochs[-1]["learning_rate"] = event.get("learning_rate")
                print(json.dumps(epochs[-1]), file=sys.stderr, flush=True)
            elif event.get("event") == "training_collapsed":
                collapsed = event.get("reason")
    elapsed = time.monotonic() - start
    reached = next((e for e in epochs if (e["val_dice"] or 0) >= TARGET), None)
    card_file = out.with_name("cervix.card.json")
    card = json.loads(card_file.read_text()) if card_file.exists() and proc.returncode == 0 else {}
    print(
        json.dumps(
            {
                "cpu": cpu_name(),
                "cores": os.cpu_count(),
                "photos": args.count,
                "size": args.size,
                "synth_seed": args.seed,
                "exit_status": proc.returncode,
                "collapsed": collapsed,
                "minutes_total": round(elapsed / 60, 2),
                "epochs_run": len(epochs),
                "first_epoch_at_target": reached,
                "final_hard_val_dice": card.get("validation", {}).get("val_dice"),
                "learning_rate": card.get("training", {}).get("learning_rate"),
                "epochs": epochs,
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
