"""The ``annocerv-blend`` step: the fine-tune's weights blended with the demo's (WiSE-FT).

Fine-tuning on 141 real photos taught the lesion model real acetowhite change and made it
forget some of what the synthetic demo knew (the held-out plastic-speculum set fell 0.778 →
0.742). Averaging the two models' weights, ``(1 - a) * demo + a * fine-tune``, keeps much of
a fine-tune's gain while restoring the start's robustness on conditions neither saw
(Wortsman et al., "Robust fine-tuning of zero-shot models", CVPR 2022). Both models start
from the same weights (the fine-tune is initialised from the demo), which is what makes the
average a working model.

``a`` is chosen without looking at the held-out synthetic sets: on the AnnoCerv validation
split (as epochs and the threshold are) and on a synthetic *selection* set of a seed no
one trained on, with the held-out conditions (green filter, plastic speculum) left out of it
as they were left out of training. The largest ``a`` whose selection-set lesion Dice stays
within ``SELECTION_MARGIN`` of the demo's and whose validation figures beat the demo's is
kept. The fine-tune itself stays as ``lesion.finetuned.keras``; ``lesion.keras`` becomes the
blend, so ``annocerv-evaluate``, ``-synthetic`` and ``-pack`` judge what would ship.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np

ALPHAS = (0.3, 0.5, 0.7)  # the fine-tune's share; 0 is the demo, 1 the fine-tune
SELECTION_SEED, SELECTION_COUNT = 6, 60  # unused by training and by every evaluation set
SELECTION_ARGS = ("--hold-out", "green_filter,plastic_speculum")
SELECTION_MARGIN = 0.01  # half the verdict's tolerance: the held-out sets may differ


def blend_weights(start: list[Any], tuned: list[Any], alpha: float) -> list[Any]:
    """``(1 - alpha) * start + alpha * tuned``, array by array (batch-norm statistics
    included); the two must be the same architecture."""
    if len(start) != len(tuned) or any(
        a.shape != b.shape for a, b in zip(start, tuned, strict=True)
    ):
        raise SystemExit("cannot blend: the fine-tune is not the demo's architecture")
    return [
        ((1.0 - alpha) * a.astype(np.float64) + alpha * b.astype(np.float64)).astype(a.dtype)
        for a, b in zip(start, tuned, strict=True)
    ]


def blend(work: Path) -> dict[str, Any]:
    """Blends for each of ``ALPHAS`` judged on validation and the selection set; the chosen
    one becomes ``models/lesion.keras`` → blend.json."""
    import keras
    from annocerv_steps import (  # beside this file
        REPO,
        _cli,
        _env,
        choose_threshold,
        demo_keras,
        evaluate_split,
        fold_threshold,
        summary,
    )

    sys.path.insert(0, str(REPO))
    from cervixbatch.model import losses  # noqa: F401 - the custom objects keras loads

    models = work / "models"
    tuned_path = models / "lesion.finetuned.keras"
    if not tuned_path.exists():
        shutil.copy(models / "lesion.keras", tuned_path)
    start = keras.models.load_model(
        demo_keras("lesion", models / "lesion.demo.keras"), compile=False
    )
    tuned = keras.models.load_model(tuned_path, compile=False)
    selection = work / "selection"
    if not (selection / "synth.json").exists():
        cmd = _cli("synth", "--count", str(SELECTION_COUNT), "--out", str(selection))
        subprocess.run([*cmd, "--seed", str(SELECTION_SEED), *SELECTION_ARGS], check=True,
                       env=_env())  # fmt: skip
    candidates: dict[str, Any] = {}
    for alpha in (0.0, *ALPHAS, 1.0):
        name = f"blend-{alpha}"
        path = models / f"lesion.{name}.keras"
        model = keras.models.clone_model(tuned)
        model.set_weights(blend_weights(start.get_weights(), tuned.get_weights(), alpha))
        model.save(path)
        figures = evaluate_split(work, "validation", str(path), name)
        threshold = choose_threshold(figures) if alpha > 0 else "0.5"
        folded = models / f"lesion.{name}.folded.keras"
        fold_threshold(model, float(threshold))
        model.save(folded)
        candidates[str(alpha)] = {
            "alpha": alpha,
            "threshold": float(threshold),
            "validation": summary(figures[threshold]),
            "selection_lesion_dice": _selection_dice(work, selection, folded),
        }
        print(json.dumps({name: candidates[str(alpha)]}, indent=1), flush=True)
    demo = candidates["0.0"]
    chosen = max(
        (c for c in candidates.values() if c["alpha"] > 0 and _acceptable(c, demo)),
        key=lambda c: c["alpha"],
        default=None,
    )
    out = {
        "method": "WiSE-FT: (1 - alpha) * demo + alpha * fine-tune, weights and batch-norm "
        "statistics; alpha the largest whose validation beats the demo and whose selection "
        f"set (synth --count {SELECTION_COUNT} --seed {SELECTION_SEED} "
        f"{' '.join(SELECTION_ARGS)}) lesion Dice is within {SELECTION_MARGIN} of the demo's",
        "candidates": candidates,
        "chosen_alpha": None if chosen is None else chosen["alpha"],
    }
    (work / "blend.json").write_text(json.dumps(out, indent=2) + "\n")
    if chosen is not None:
        # unfolded: annocerv-evaluate chooses (and pack folds) the threshold again
        shutil.copy(models / f"lesion.blend-{chosen['alpha']}.keras", models / "lesion.keras")
    print(json.dumps({"chosen_alpha": out["chosen_alpha"]}), flush=True)
    return out


def _acceptable(candidate: dict[str, Any], demo: dict[str, Any]) -> bool:
    new, old = candidate["validation"], demo["validation"]
    beats = (new["mean_boundary_f"] or 0.0) > (old["mean_boundary_f"] or 0.0) and (
        new["mean_dice_filled_or_partial"] or 0.0
    ) > (old["mean_dice_filled_or_partial"] or 0.0)
    kept = candidate["selection_lesion_dice"] >= demo["selection_lesion_dice"] - SELECTION_MARGIN
    return beats and kept


def _selection_dice(work: Path, selection: Path, lesion: Path) -> float:
    """The lesion Dice of ``evaluate`` on the selection set, the demo cervix stage in front."""
    from train_demo_models import _config, _evaluate  # beside this file

    config = _config(work / "runs" / lesion.stem, "builtin:demo", str(lesion))
    return float(_evaluate(config, selection)["lesion"]["mean_dice"])
