"""Reproduces the shipped demo models (``builtin:demo``) from synthetic data (synth v2).

    python scripts/train_demo_models.py [--work DIR] [--train-count 800] [--steps ...]

Steps (``--steps``, comma-separated, in this order):
  synth     training set: synth v2, seed 1, 800x600, with green-filter images and plastic
            speculums HELD OUT, so that evaluating on them measures generalisation; and
            the lesion stage's hard negatives: seed 11, lesion-free photos (glare
            clusters, ectropion, pale shading and all the rest), the same settings held out
  init      the starting weights: the first demo models (trained on synth v1), taken from
            git (commit ``V1_COMMIT``), also kept as the baseline the new ones must beat
  train     both stages in parallel processes, ``--augment colposcopy``, resumable: a
            stopped run continues from its checkpoint when started again
  finetune  the lesion stage again from the trained model, on the training set plus
            the hard negatives (lesion.keras is replaced; the first is kept beside it)
  evaluate  the new and the old (v1) models on synth v2 with unseen seeds: the default
            mix, green filter only, plastic speculum only; 50 lesion-free photos with
            glare clusters (mean lesion fraction) → figures.json
  pack      only when the new models beat the old ones on the unseen-seed set (both
            stages' mean Dice; ``--force`` overrides): the .keras files →
            cervixbatch/model/demo/ (JSON + float16 weights), cards with the figures
  check     builtin:demo (the packed float16 form) on the unseen-seed set again: the
            figures must match the float32 ones within 0.005

Real photos (issue 24): ``--annocerv DIR --steps annocerv-prepare,annocerv-train,
annocerv-negatives,annocerv-evaluate,annocerv-synthetic,annocerv-pack`` fine-tunes the
lesion stage on AnnoCerv (CC BY 4.0) — see ``scripts/annocerv_steps.py``; the photos stay
in DIR, the repository does not carry them. ``annocerv-blend`` (after ``annocerv-negatives``)
averages the fine-tune's weights with the demo's (``scripts/annocerv_blend.py``).

Trained on synthetic images: for trying the software, not for clinical use.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
DEMO = REPO / "cervixbatch" / "model" / "demo"
V1_COMMIT = "ab61e42"  # the last commit shipping the synth-v1 demo models
TRAIN_SEED = 1
NEGATIVES_SEED, NEGATIVES_COUNT = 11, 240
# the lesion fine-tune on the training set plus the negatives (from the trained model)
FINETUNE_ARGS = ["--epochs", "10", "--learning-rate", "2.5e-4", "--patience", "4"]
HELD_OUT = "green_filter,plastic_speculum"
TRAIN_SIZE = "800x600"  # synth v2 paints at most 800 px wide: no upscaling to undo
# (name, seed, count, synth options): unseen seeds; default sizes (480 px to 12 MP)
EVAL_SETS: tuple[tuple[str, int, int, tuple[str, ...]], ...] = (
    ("unseen_seed", 2, 100, ()),
    ("held_out_green_filter", 3, 100, ("--only", "green_filter")),
    ("held_out_plastic_speculum", 4, 100, ("--only", "plastic_speculum")),
    ("glare_clusters_no_lesion", 5, 50, ("--only", "glare_cluster", "--hold-out", "lesion")),
)
STAGE_ARGS = {
    # Adam at 1e-3 lets the un-normalised seed UNet collapse to a constant mask under Dice loss
    "cervix": ["--input-size", "128", "--filters", "32", "--learning-rate", "1e-4"],
    # dropout 0.05, as the seed project trained its get_unet (0.5 is only the builder default)
    "lesion": [
        "--input-size",
        "256",
        "--filters",
        "16",
        "--dice-term",
        "--dropout",
        "0.05",
        "--learning-rate",
        "5e-4",
    ],
}


def cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "cervixbatch.cli", *args]


def run(cmd: list[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
    print("+", " ".join(cmd), flush=True)
    return subprocess.run(cmd, check=True, text=True, **kwargs)


def main() -> None:  # noqa: C901 - one branch per step, in order
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--work", type=Path, default=Path(tempfile.gettempdir()) / "cervixbatch-demo-v2"
    )
    parser.add_argument("--train-count", type=int, default=800)
    parser.add_argument("--epochs", type=int, default=12)
    parser.add_argument("--steps", default="synth,init,train,finetune,evaluate,pack,check")
    parser.add_argument("--force", action="store_true", help="pack even if not better")
    parser.add_argument("--annocerv", type=Path, help="the annocerv-384 folder (annocerv-* steps)")
    args = parser.parse_args()
    steps = set(args.steps.split(","))
    work: Path = args.work
    if any(step.startswith("annocerv-") for step in steps):
        from annocerv_steps import run_steps  # scripts/annocerv_steps.py, beside this file

        run_steps(args.annocerv, work / "annocerv", steps, force=args.force)
        return
    train_dir, models, v1 = work / "train", work / "models", work / "v1"
    if "synth" in steps:
        make_training_sets(work, train_dir, args.train_count)
    if "init" in steps:
        init_from_v1(v1, models)
    if "train" in steps:
        train(work, train_dir, models, args.epochs)
    if "finetune" in steps:
        finetune_lesion(work, train_dir, work / "negatives", models)
    if "evaluate" in steps:
        evaluate_all(work, models, v1)
    if "evaluate-v1" in steps:  # the baseline alone, e.g. while the new models train
        evaluate_all(work, models, v1, only=("v1",))
    if "pack" in steps:
        figures = json.loads((work / "figures.json").read_text())
        if not (better(figures) or args.force):
            raise SystemExit("the new models are not better than the old ones: not packed")
        pack(models, args.train_count)
        write_cards(figures)
    if "check" in steps:
        check_packed(work)


def make_training_sets(work: Path, train_dir: Path, count: int) -> None:
    """The training set, and the lesion stage's hard negatives (no lesion anywhere)."""
    for out, seed, number, hold_out in (
        (train_dir, TRAIN_SEED, count, HELD_OUT),
        (work / "negatives", NEGATIVES_SEED, NEGATIVES_COUNT, f"{HELD_OUT},lesion"),
    ):
        synth = cli("synth", "--count", str(number), "--out", str(out), "--seed", str(seed))
        run([*synth, "--size", TRAIN_SIZE, "--hold-out", hold_out])


def init_from_v1(v1: Path, models: Path) -> None:
    """The v1 demo models as .keras files: the baseline, and the new models' start."""
    sys.path.insert(0, str(REPO))
    import keras
    import numpy as np

    from cervixbatch.model.stage_names import Stage

    v1.mkdir(parents=True, exist_ok=True)
    models.mkdir(parents=True, exist_ok=True)
    for stage in Stage:
        arch = git_bytes(f"cervixbatch/model/demo/{stage}.json")
        weights = np.load(io.BytesIO(git_bytes(f"cervixbatch/model/demo/{stage}.weights.npz")))
        model = keras.Model.from_config(json.loads(arch))
        model.set_weights([weights[f"w{i}"].astype(np.float32) for i in range(len(weights.files))])
        model.save(v1 / f"{stage}.keras")
        if not (models / f"{stage}.keras").exists():  # a resumed run keeps its progress
            shutil.copy(v1 / f"{stage}.keras", models / f"{stage}.keras")
        print(f"v1 {stage} model from {V1_COMMIT} → {v1 / f'{stage}.keras'}")


def git_bytes(path: str) -> bytes:
    return subprocess.run(
        ["git", "-C", str(REPO), "show", f"{V1_COMMIT}:{path}"],  # noqa: S607
        check=True,
        capture_output=True,
    ).stdout


def train(work: Path, train_dir: Path, models: Path, epochs: int) -> None:
    """Both stages at once, each resuming from its checkpoint or its starting weights."""
    procs = []
    for stage, extra in STAGE_ARGS.items():
        cmd = cli(
            "train",
            "--stage",
            stage,
            "--images",
            str(train_dir / "images"),
            "--masks",
            str(train_dir / stage),
            "--out",
            str(models / f"{stage}.keras"),
            "--epochs",
            str(epochs),
            "--batch-size",
            "8",
            "--patience",
            "4",
            "--seed",
            "0",
            "--augment",
            "colposcopy",
            "--resume",
            *extra,
        )
        if stage == "lesion":
            cmd += ["--cervix-masks", str(train_dir / "cervix")]
        print("+", " ".join(cmd), flush=True)
        log = (work / f"train-{stage}.log").open("a")
        procs.append(subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT))
    if any(p.wait() for p in procs):
        raise SystemExit(f"training failed: see the train-*.log files in {work}")


def finetune_lesion(work: Path, train_dir: Path, negatives: Path, models: Path) -> None:
    """The lesion stage fine-tuned on the training set plus lesion-free hard negatives.

    The two sets are joined by hard links (negatives prefixed ``neg_``); the trained
    model is kept as ``lesion.before-negatives.keras`` and is the fine-tune's start.
    """
    joined = work / "train-with-negatives"
    for folder in ("images", "lesion", "cervix"):
        (joined / folder).mkdir(parents=True, exist_ok=True)
        for prefix, source in (("", train_dir), ("neg_", negatives)):
            for path in sorted((source / folder).iterdir()):
                target = joined / folder / f"{prefix}{path.name}"
                if not target.exists():
                    os.link(path, target)
    before = models / "lesion.before-negatives.keras"
    if not before.exists():
        shutil.copy(models / "lesion.keras", before)
    out = models / "lesion.negatives.keras"
    extra = list(STAGE_ARGS["lesion"])
    extra[extra.index("--learning-rate") : extra.index("--learning-rate") + 2] = []
    cmd = cli(
        "train",
        "--stage",
        "lesion",
        "--images",
        str(joined / "images"),
        "--masks",
        str(joined / "lesion"),
        "--cervix-masks",
        str(joined / "cervix"),
        "--out",
        str(out),
        "--init",
        str(before),
        "--batch-size",
        "8",
        "--seed",
        "0",
        "--augment",
        "colposcopy",
        *FINETUNE_ARGS,
        *extra,
    )
    with (work / "finetune-lesion.log").open("a") as log:
        print("+", " ".join(cmd), flush=True)
        subprocess.run(cmd, check=True, stdout=log, stderr=subprocess.STDOUT)
    shutil.copy(out, models / "lesion.keras")
    shutil.copy(out.with_suffix(".card.json"), models / "lesion.card.json")


def pack(models: Path, train_count: int) -> None:
    """Converts the trained .keras files to the shipped form and writes their cards."""
    sys.path.insert(0, str(REPO))
    import keras

    from cervixbatch.model import losses  # noqa: F401
    from cervixbatch.model.stage import pack_builtin
    from cervixbatch.model.stage_names import Stage

    for stage in Stage:
        model = keras.models.load_model(models / f"{stage}.keras", compile=False)
        version = pack_builtin(model, DEMO, stage)
        card = json.loads((models / f"{stage}.card.json").read_text())
        card["shipped_as"] = {
            "files": [f"{stage}.json", f"{stage}.weights.npz"],
            "weights": "float16, cast to float32 on load",
            "version_sha256": version,
        }
        card["data"]["generator"] = (
            f"cervixbatch synth --generator v2 --count {train_count} --seed {TRAIN_SEED} "
            f"--size {TRAIN_SIZE} --hold-out {HELD_OUT}"
        )
        card["training"]["initialised_from"] = (
            f"the synth-v1 demo model of commit {V1_COMMIT}, fine-tuned"
        )
        if stage == "lesion":
            card["training"]["initialised_from"] += (
                f" ({' '.join(STAGE_ARGS['lesion'])}, 12 epochs), then fine-tuned again "
                "with the hard negatives added (this card's training figures)"
            )
            card["data"]["hard_negatives"] = (
                f"cervixbatch synth --generator v2 --count {NEGATIVES_COUNT} --seed "
                f"{NEGATIVES_SEED} --size {TRAIN_SIZE} --hold-out {HELD_OUT},lesion"
            )
        card["intended_use"] = (
            "Trained on synthetic images made by `cervixbatch synth` (v2): for trying the "
            "software, NOT for clinical use. Not validated on real colposcopy photos."
        )
        (DEMO / f"{stage}.card.json").write_text(json.dumps(card, indent=2) + "\n")
        print(f"packed {stage}: {version[:12]}")


def _config(folder: Path, cervix: str, lesion: str) -> Path:
    """A fresh config, database and outbox for one evaluation run."""
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    path = folder / "config.toml"
    path.write_text(
        f'[paths]\ninbox = "inbox"\noutbox = "outbox"\n'
        f'[database]\nurl = "sqlite:///{folder / "db.sqlite"}"\n'
        f'[models]\ncervix = "{cervix}"\nlesion = "{lesion}"\n'
    )
    return path


def file_sha256(*paths: Path) -> str:
    digest = hashlib.sha256()
    for path in paths:
        digest.update(path.read_bytes())
    return digest.hexdigest()


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), str(REPO / "daemon")])}


def _evaluate(config: Path, folder: Path) -> dict[str, Any]:
    out = run(
        cli(
            "--config",
            str(config),
            "evaluate",
            "--images",
            str(folder / "images"),
            "--cervix-masks",
            str(folder / "cervix"),
            "--lesion-masks",
            str(folder / "lesion"),
            "--format",
            "json",
        ),
        capture_output=True,
        env=_env(),
    ).stdout
    return dict(json.loads(out)["stages"])


def better(figures: dict[str, Any]) -> bool:
    """Whether the new models beat the old ones on the unseen-seed set, in both stages."""
    unseen = figures["unseen_seed"]
    return all(
        unseen["new"][stage]["mean_dice"] > unseen["v1"][stage]["mean_dice"]
        for stage in ("cervix", "lesion")
    )


def evaluate_all(
    work: Path, trained: Path, v1: Path, only: tuple[str, ...] = ("new", "v1")
) -> dict[str, Any]:
    """Every evaluation set, for the new (trained, float32) and the old (v1) models.

    A figure already computed for the same model files and set is reused, so a stopped
    evaluation continues where it was.
    """
    sys.path.insert(0, str(REPO))
    from cervixbatch.segmentation.two_stage import PipelineSettings

    env = _env()
    models = {
        "new": (str(trained / "cervix.keras"), str(trained / "lesion.keras")),
        "v1": (str(v1 / "cervix.keras"), str(v1 / "lesion.keras")),
    }
    models = {which: files for which, files in models.items() if which in only}
    figures: dict[str, Any] = {}
    for name, seed, count, options in EVAL_SETS:
        folder = work / "eval" / name
        if not (folder / "synth.json").exists():
            synth_cmd = cli("synth", "--count", str(count), "--out", str(folder))
            run([*synth_cmd, "--seed", str(seed), *options], env=env)
        command = (
            f"cervixbatch synth --count {count} --out EVAL --seed {seed} {' '.join(options)}"
        ).replace("  ", " ")
        figures[name] = {"command": command.strip(), "images": count}
        for which, (cervix, lesion) in models.items():
            done = work / "runs" / f"{name}-{which}.json"
            key = file_sha256(Path(cervix), Path(lesion), *sorted((folder / "images").iterdir()))
            key += repr(PipelineSettings())  # a changed default post-processing: run again
            if done.exists() and json.loads(done.read_text())["key"] == key:
                figures[name][which] = json.loads(done.read_text())["figures"]
                continue
            config = _config(work / "runs" / f"{name}-{which}", cervix, lesion)
            if name == "glare_clusters_no_lesion":
                figures[name][which] = lesion_fractions(config, folder, env)
            else:
                figures[name][which] = _evaluate(config, folder)
            done.write_text(json.dumps({"key": key, "figures": figures[name][which]}) + "\n")
        print(json.dumps({name: figures[name]}, indent=1), flush=True)
    if len(models) == 2:  # new and v1: the figures the cards take
        (work / "figures.json").write_text(json.dumps(figures, indent=2) + "\n")
    return figures


def lesion_fractions(config: Path, folder: Path, env: dict[str, str]) -> dict[str, float]:
    """``process`` the photos; the mean and largest lesion fraction of their results."""
    run(cli("--config", str(config), "process", str(folder / "images")), env=env)
    report = json.loads(
        run(
            cli("--config", str(config), "report", "--format", "json"),
            capture_output=True,
            env=env,
        ).stdout
    )
    fractions = [r["lesion_fraction"] for item in report["items"] for r in item["results"]]
    return {
        "photos": len(fractions),
        "mean_lesion_fraction": round(sum(fractions) / max(1, len(fractions)), 5),
        "max_lesion_fraction": round(max(fractions, default=0.0), 5),
        "photos_with_any_lesion": sum(1 for f in fractions if f > 0),
    }


def check_packed(work: Path) -> None:
    """The shipped (float16) models give the float32 figures on the unseen-seed set."""
    figures = json.loads((work / "figures.json").read_text())
    config = _config(work / "runs" / "unseen_seed-shipped", "builtin:demo", "builtin:demo")
    shipped = _evaluate(config, work / "eval" / "unseen_seed")
    for stage in ("cervix", "lesion"):
        trained = figures["unseen_seed"]["new"][stage]["mean_dice"]
        if abs(shipped[stage]["mean_dice"] - trained) > 0.005:
            raise SystemExit(f"{stage}: shipped {shipped[stage]} but trained {trained}")
        card_file = DEMO / f"{stage}.card.json"
        card = json.loads(card_file.read_text())
        card["evaluation"]["shipped_float16_unseen_seed"] = shipped
        card_file.write_text(json.dumps(card, indent=2) + "\n")
    print("shipped models match the trained ones:", json.dumps(shipped))


def write_cards(figures: dict[str, Any]) -> None:
    """The evaluation figures (new and old models side by side) into both cards."""
    for stage in ("cervix", "lesion"):
        card_file = DEMO / f"{stage}.card.json"
        card = json.loads(card_file.read_text())
        card["evaluation"] = {
            "end_to_end": "cervixbatch evaluate (both stages, as `process` runs them)",
            "note": (
                "Synthetic photos only (synth v2, unseen seeds). The training set held out "
                f"{HELD_OUT}: the held_out_* sets measure generalisation to them. 'v1' is the "
                "previous demo model on the same photos."
            ),
            "sets": figures,
        }
        card_file.write_text(json.dumps(card, indent=2) + "\n")


if __name__ == "__main__":
    main()
