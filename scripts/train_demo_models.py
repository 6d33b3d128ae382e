"""Reproduces the shipped demo models (``builtin:demo``) from synthetic data.

    python scripts/train_demo_models.py [--work DIR] [--train-count 400] [--eval-count 100]

Steps: synth a training set (seed 1) → train both stages (in parallel processes) →
pack them into cervixbatch/model/demo/ (architecture JSON + float16 weights) → synth an
evaluation set with a seed training never saw (seed 2) → evaluate ``builtin:demo`` end to
end → write the figures into the model cards. Trained on synthetic images: for trying the
software, not for clinical use.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
DEMO = REPO / "cervixbatch" / "model" / "demo"
TRAIN_SEED, EVAL_SEED = 1, 2
# Stage 1 keeps the seed architecture. Stage 2 keeps the seed's architecture and width
# (n_filters=16) at 256×256 instead of 512×512: a quarter of the compute, which is what
# lets it train to convergence on a 2-core CPU (see the model card).
STAGE_ARGS = {
    # Adam at 1e-3 lets the un-normalised seed UNet collapse to a constant mask under Dice loss
    "cervix": [
        "--input-size",
        "128",
        "--filters",
        "32",
        "--batch-size",
        "8",
        "--learning-rate",
        "1e-4",
    ],
    # dropout 0.05, as the seed project trained its get_unet (0.5 is only the builder default)
    "lesion": [
        "--input-size",
        "256",
        "--filters",
        "16",
        "--batch-size",
        "8",
        "--dice-term",
        "--dropout",
        "0.05",
    ],
}


def cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "cervixbatch.cli", *args]


def run(cmd: list[str]) -> None:
    print("+", " ".join(cmd), flush=True)
    subprocess.run(cmd, check=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--work", type=Path, default=Path(tempfile.gettempdir()) / "cervixbatch-demo"
    )
    parser.add_argument("--train-count", type=int, default=400)
    parser.add_argument("--eval-count", type=int, default=100)
    parser.add_argument("--epochs", type=int, default=25)
    parser.add_argument("--steps", default="synth,train,pack,evaluate")
    args = parser.parse_args()
    steps = set(args.steps.split(","))
    train_dir, eval_dir, models = args.work / "train", args.work / "eval", args.work / "models"

    if "synth" in steps:
        run(
            cli(
                "synth",
                "--count",
                str(args.train_count),
                "--out",
                str(train_dir),
                "--seed",
                str(TRAIN_SEED),
                "--size",
                "1600x1200",
            )
        )
    if "train" in steps:
        procs = []
        for stage, extra in STAGE_ARGS.items():
            masks = train_dir / stage
            cmd = cli(
                "train",
                "--stage",
                stage,
                "--images",
                str(train_dir / "images"),
                "--masks",
                str(masks),
                "--out",
                str(models / f"{stage}.keras"),
                "--epochs",
                str(args.epochs),
                "--patience",
                "6",
                "--seed",
                "0",
                *extra,
            )
            if stage == "lesion":
                cmd += ["--cervix-masks", str(train_dir / "cervix")]
            print("+", " ".join(cmd), flush=True)
            log = (args.work / f"train-{stage}.log").open("w")
            procs.append(subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT))
        if any(p.wait() for p in procs):
            raise SystemExit("training failed: see the train-*.log files in " + str(args.work))
    if "pack" in steps:
        pack(models)
    if "evaluate" in steps:
        run(
            cli(
                "synth",
                "--count",
                str(args.eval_count),
                "--out",
                str(eval_dir),
                "--seed",
                str(EVAL_SEED),
            )
        )
        env = {**os.environ, "CERVIXBATCH_CONFIG": str(REPO / "config.toml")}
        out = subprocess.run(
            cli(
                "evaluate",
                "--images",
                str(eval_dir / "images"),
                "--cervix-masks",
                str(eval_dir / "cervix"),
                "--lesion-masks",
                str(eval_dir / "lesion"),
                "--format",
                "json",
            ),
            check=True,
            capture_output=True,
            text=True,
            env=env,
        ).stdout
        figures = json.loads(out)
        print(json.dumps(figures, indent=2))
        for stage in ("cervix", "lesion"):
            card_file = DEMO / f"{stage}.card.json"
            card = json.loads(card_file.read_text())
            card["evaluation"] = {
                "command": (
                    f"cervixbatch synth --count {args.eval_count} --out EVAL --seed {EVAL_SEED}"
                    " && cervixbatch evaluate --images EVAL/images --cervix-masks EVAL/cervix"
                    " --lesion-masks EVAL/lesion --format json"
                ),
                "images": figures["images"],
                "end_to_end": figures["stages"],
            }
            card_file.write_text(json.dumps(card, indent=2) + "\n")


def pack(models: Path) -> None:
    """Converts the trained .keras files to the shipped form and copies their cards."""
    sys.path.insert(0, str(REPO))
    import keras

    from cervixbatch.model import losses  # noqa: F401
    from cervixbatch.model.stage import Stage, pack_builtin

    for stage in Stage:
        model = keras.models.load_model(models / f"{stage}.keras", compile=False)
        version = pack_builtin(model, DEMO, stage)
        card = json.loads((models / f"{stage}.card.json").read_text())
        card["shipped_as"] = {
            "files": [f"{stage}.json", f"{stage}.weights.npz"],
            "weights": "float16, cast to float32 on load",
            "version_sha256": version,
        }
        card["intended_use"] = (
            "Trained on synthetic images made by `cervixbatch synth`: for "
            "trying the software, NOT for clinical use."
        )
        (DEMO / f"{stage}.card.json").write_text(json.dumps(card, indent=2) + "\n")
        print(f"packed {stage}: {version[:12]}")


if __name__ == "__main__":
    main()
