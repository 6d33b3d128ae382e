"""The model card ``train`` writes beside a model: what data, what recipe, what figures."""

from __future__ import annotations

import datetime as dt
import platform
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cervixbatch.model.loading import file_sha256
from cervixbatch.tools.training.dataset import LabelledImage, fingerprint
from cervixbatch.version import __version__

if TYPE_CHECKING:
    from cervixbatch.tools.training.options import TrainOptions

__all__ = ["INTENDED_USE", "build_card", "card_path"]

INTENDED_USE = (
    "Trained on the data named here. A model trained on synthetic images (cervixbatch synth) "
    "is for trying the software, not for clinical use."
)


def card_path(model_path: Path) -> Path:
    """The model card's path: ``cervix.keras`` → ``cervix.card.json``."""
    return model_path.with_name(model_path.stem + ".card.json")


def build_card(  # noqa: PLR0917
    options: TrainOptions,
    pairs: Sequence[LabelledImage],
    model: Any,
    history: dict[str, list[float]],
    validation: dict[str, float],
    learning_rate: float,
    init: dict[str, Any] | None,
) -> dict[str, Any]:
    """The card of the model just saved at ``options.out``."""
    import keras
    import tensorflow as tf

    from cervixbatch.model.stage_names import Stage

    dice_term = options.dice_term and not options.seed_recipe
    loss = "dice" if options.stage is Stage.CERVIX else "bce+dice" if dice_term else "bce"
    return {
        "model": options.out.name,
        "sha256": file_sha256(options.out),
        "stage": options.stage.value,
        "architecture": model.name,
        "input_shape": list(model.input_shape[1:]),
        "parameters": int(model.count_params()),
        "init": init,  # the model fine-tuned from: file, sha256, format, architecture
        "data": {
            "images": str(options.images),
            "masks": str(options.masks) if options.masks else None,
            "cervix_masks": str(options.cervix_masks) if options.cervix_masks else None,
            "annotations": [str(p) for p in options.annotations],
            "fingerprint": fingerprint(pairs),
            "image_count": len(pairs),
        },
        "training": {
            "epochs_requested": options.epochs,
            "epochs_run": len(history.get("loss", [])),
            "batch_size": options.batch_size,
            "learning_rate": learning_rate,
            "warmup_epochs": options.warmup_epochs,
            "collapse_check_epochs": options.collapse_epochs,
            "augment": options.augment,
            "validation_split": options.validation_split,
            "seed": options.seed,
            "loss": loss,
            "history": history,
        },
        "validation": validation,
        "versions": {
            "cervixbatch": __version__,
            "tensorflow": tf.__version__,
            "keras": keras.__version__,
            "python": platform.python_version(),
        },
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "intended_use": INTENDED_USE,
    }
