"""``cervixbatch train``: one stage, from images with masks or annotations to a ``.keras``
file with its model card beside it.

Samples stream from disk through ``tf.data`` (prepared once, cached to a file, augmented
every epoch); nothing holds the whole set in memory. The defaults are a recipe that
learns on a new labelled set: the seeds' learning rates, a warm-up, augmentation, and a
guard that stops (and saves nothing) when the model collapses to a constant mask.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import sys
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import structlog

from cervixbatch.errors import CervixbatchError
from cervixbatch.model.stage_names import Stage
from cervixbatch.outputs.atomic import PLAIN_MODE, atomic_path, write_atomic
from cervixbatch.segmentation.scores import dice, iou
from cervixbatch.tools.annotations.shapes import CERVIX, LESION, Problem
from cervixbatch.tools.cards import build_card, card_path
from cervixbatch.tools.training.callbacks import (
    PRECISE_BN_BATCHES,
    CollapseGuard,
    epoch_log_callback,
    precise_batchnorm_callback,
    recalibrate_batchnorm,
    refuse_collapsed,
    warmup_callback,
)
from cervixbatch.tools.training.data import make_dataset, split_pairs
from cervixbatch.tools.training.dataset import (
    Augmenter,
    LabelledImage,
    labelled_images,
    prepare_cervix_sample,
    prepare_lesion_sample,
)
from cervixbatch.tools.training.options import TrainOptions

__all__ = [
    "DEFAULT_LEARNING_RATES",
    "SEED_LEARNING_RATES",
    "TrainResult",
    "compile_model",
    "default_learning_rate",
    "train_stage",
]

log = structlog.get_logger(__name__)

# The seeds' own rates: seed 001 trained stage 1 with Adam at 1e-4 (at 1e-3 its un-normalised
# UNet collapses to a constant mask under Dice loss); seed 000 trained stage 2 with Adam's
# default, 1e-3, and BCE alone (--seed-recipe keeps both). Stage 2's default adds a Dice
# term at the same rate: BCE alone settled on background on a set of small lesions (issue
# 24: validation Dice 0.14 at every epoch); on tiny drawn lesions (1 % of the photo, 30
# epochs) BCE + Dice reached Dice 0.61 at 1e-3, BCE alone 0.56, BCE + Dice at 5e-4 only
# 0.14 — the rate matters most. Fine-tuning (--init) starts at a tenth.
SEED_LEARNING_RATES = {Stage.CERVIX: 1e-4, Stage.LESION: 1e-3}
DEFAULT_LEARNING_RATES = {Stage.CERVIX: 1e-4, Stage.LESION: 1e-3}
FINE_TUNE_FACTOR = 0.1
LESION_DROPOUT = 0.05  # what seed 000 trained get_unet with (0.5 is its builder's default)


@dataclasses.dataclass(frozen=True, slots=True)
class TrainResult:
    """What a training run produced."""

    model_path: Path
    card_path: Path
    epochs_run: int
    history: dict[str, list[float]]
    validation: dict[str, float]
    problems: tuple[Problem, ...] = ()  # annotation entries skipped


def default_learning_rate(stage: Stage, *, fine_tune: bool, seed_recipe: bool = False) -> float:
    """The default rate for ``stage`` (the seed's with ``seed_recipe``); a tenth of it when
    fine-tuning a loaded model."""
    rate = (SEED_LEARNING_RATES if seed_recipe else DEFAULT_LEARNING_RATES)[stage]
    return rate * FINE_TUNE_FACTOR if fine_tune else rate


def _augmenter(options: TrainOptions) -> Augmenter:
    if options.augment == "colposcopy":
        from cervixbatch.tools.training.augment import ColposcopyAugmenter

        # stage 2 sees crops of the cervix: scale varies less there than whole photos do
        if options.stage is Stage.LESION:
            return ColposcopyAugmenter(options.seed, zoom_out=0.85, zoom_in=1.2)
        return ColposcopyAugmenter(options.seed)
    return Augmenter(options.seed)


def _build(options: TrainOptions) -> Any:
    from cervixbatch.model.unet import build_cervix_unet, build_lesion_unet

    if options.stage is Stage.CERVIX:
        return build_cervix_unet(options.input_size or 128, base_filters=options.filters or 32)
    return build_lesion_unet(
        options.input_size or 512,
        n_filters=options.filters or 16,
        dropout=LESION_DROPOUT if options.dropout is None else options.dropout,
    )


def _initial_model(options: TrainOptions) -> tuple[Any, dict[str, Any] | None]:
    """A fresh seed UNet, or the --init model (its format and architecture for the card)."""
    if options.init is None:
        return _build(options), None
    from cervixbatch.model.loading import load_model_file

    loaded = load_model_file(options.init, options.stage.value, input_size=options.input_size)
    init = {
        "file": str(options.init),
        "sha256": loaded.version,
        "format": loaded.format,
        "architecture": loaded.architecture,
    }
    log.info("fine_tuning", stage=options.stage.value, init=loaded.description)
    return loaded.model, init


def _learning_rate(options: TrainOptions) -> float:
    if options.learning_rate is not None:
        return options.learning_rate
    return default_learning_rate(
        options.stage, fine_tune=options.init is not None, seed_recipe=options.seed_recipe
    )


def compile_model(model: Any, options: TrainOptions) -> None:
    """Adam at the options' rate with the stage's loss (its recipe), Dice and IoU metrics."""
    import keras

    from cervixbatch.model.losses import bce_dice_loss, dice_coef, dice_coef_loss, iou_coef

    if options.stage is Stage.CERVIX:
        loss: Any = dice_coef_loss
    else:
        dice_term = options.dice_term and not options.seed_recipe
        loss = bce_dice_loss if dice_term else "binary_crossentropy"
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate=_learning_rate(options)),
        loss=loss,
        metrics=[dice_coef, iou_coef],
    )


def _labelled(options: TrainOptions) -> tuple[list[LabelledImage], list[Problem]]:
    lesion = options.stage is Stage.LESION
    if options.masks is None and not options.annotations:
        raise CervixbatchError("give --masks (a folder of PNG masks) or --annotations")
    if lesion and options.cervix_masks is None and not options.annotations:
        raise CervixbatchError("the lesion stage needs --cervix-masks to crop as inference does")
    pairs, problems = labelled_images(
        options.images,
        options.masks,
        options.cervix_masks if lesion else None,
        options.annotations,
        options.labels,
        target=LESION if lesion else CERVIX,
        need_cervix=lesion,
        mask_kind=options.mask_kind,
    )
    for problem in problems:
        log.warning(
            "annotation_skipped",
            file=problem.source.name,
            entry=problem.entry,
            reason=problem.reason,
        )
    if options.max_images:
        pairs = pairs[: options.max_images]
    return pairs, problems


def _starting_model(options: TrainOptions, checkpoint: Path) -> tuple[Any, dict[str, Any] | None]:
    """The model to train, compiled: resumed, fine-tuned from --init, or new."""
    import keras

    if options.resume and (checkpoint.exists() or options.out.exists()):
        from cervixbatch.model import losses  # noqa: F401  (custom objects)

        model = keras.models.load_model(checkpoint if checkpoint.exists() else options.out)
        if getattr(model, "optimizer", None) is None:  # saved without its training state
            compile_model(model, options)
        return model, None
    model, init = _initial_model(options)
    compile_model(model, options)
    return model, init


def _preparer(options: TrainOptions, model: Any) -> Callable[[LabelledImage], tuple[Any, Any]]:
    size = (int(model.input_shape[1]), int(model.input_shape[2]))
    channels = int(model.input_shape[3])
    if options.stage is Stage.CERVIX:
        return lambda pair: prepare_cervix_sample(pair, size, channels)
    return lambda pair: prepare_lesion_sample(pair, size, channels, options.margin)


def _callbacks(
    options: TrainOptions, model: Any, *, rate: float, steps: int, calibration: Any, guard: Any
) -> list[Any]:
    import keras

    checkpoint = options.out.with_name(options.out.stem + ".checkpoint.keras")
    callbacks = []
    if options.warmup_epochs > 0:
        callbacks.append(warmup_callback(rate, max(1, round(options.warmup_epochs * steps))))
    callbacks += [
        # before validation: the checkpoint and the guard see the recalibrated statistics
        precise_batchnorm_callback(model, calibration),
        keras.callbacks.ModelCheckpoint(checkpoint, monitor="val_loss", save_best_only=True),
        keras.callbacks.ReduceLROnPlateau(
            monitor="val_loss", factor=0.5, patience=max(2, options.patience // 3)
        ),
        keras.callbacks.EarlyStopping(
            monitor="val_loss", patience=options.patience, restore_best_weights=True
        ),
        guard.callback(),  # a collapsed run's checkpoint is removed by refuse_collapsed
    ]
    if not sys.stderr.isatty():
        callbacks.append(epoch_log_callback(options.stage.value))
    return callbacks


def train_stage(options: TrainOptions) -> TrainResult:
    """Trains one stage; the best epoch on validation is what ends up in ``options.out``."""
    from cervixbatch.model.device import configure_tensorflow

    if options.out.suffix != ".keras":
        raise CervixbatchError(f"--out must name a .keras file, not {options.out.name}")
    if options.init is not None and options.resume:
        raise CervixbatchError("--init and --resume exclude each other: pick one starting point")
    pairs, problems = _labelled(options)
    configure_tensorflow()
    import keras

    keras.utils.set_random_seed(options.seed)
    checkpoint = options.out.with_name(options.out.stem + ".checkpoint.keras")
    model, init = _starting_model(options, checkpoint)
    size = (int(model.input_shape[1]), int(model.input_shape[2]))
    shapes = ((*size, int(model.input_shape[3])), (*size, 1))
    head = int(model.output_shape[-1])  # seed 001's head has 3 channels: one target each
    rate = float(model.optimizer.learning_rate.numpy())
    prepare = _preparer(options, model)
    train_pairs, val_pairs = split_pairs(
        pairs, options.validation_split, options.seed, options.validation_list
    )
    options.out.parent.mkdir(parents=True, exist_ok=True)
    workdir = Path(tempfile.mkdtemp(prefix="cervixbatch-train-"))
    try:

        def dataset(subset: Sequence[LabelledImage], name: str, *, augment: bool, head: int) -> Any:
            return make_dataset(
                subset,
                prepare,
                shapes,
                batch_size=options.batch_size,
                cache_file=workdir / name,
                augment=_augmenter(options) if augment else None,
                seed=options.seed,
                head=head,
            )

        train_ds = dataset(train_pairs, "train", augment=True, head=head)
        val_ds = dataset(val_pairs, "val", augment=False, head=head)
        calibration = train_pairs[: PRECISE_BN_BATCHES * options.batch_size]
        calibration_ds = dataset(calibration, "calibration", augment=False, head=1)
        guard = CollapseGuard(val_ds, window=options.collapse_epochs)
        steps = -(-len(train_pairs) // options.batch_size)
        log.info(
            "training_started",
            stage=options.stage.value,
            images=len(pairs),
            train=len(train_pairs),
            validation=len(val_pairs),
            skipped=len(problems),
            input=list(shapes[0]),
            params=int(model.count_params()),
            learning_rate=rate,
        )
        history = model.fit(
            train_ds,
            validation_data=val_ds,
            epochs=options.epochs,
            callbacks=_callbacks(
                options, model, rate=rate, steps=steps, calibration=calibration_ds, guard=guard
            ),
            verbose=1 if sys.stderr.isatty() else 0,
            shuffle=False,
        )  # the dataset shuffles itself
        recalibrate_batchnorm(model, calibration_ds)  # the restored best weights, too
        refuse_collapsed(
            guard, model, stage=options.stage.value, out=options.out, learning_rate=rate
        )
        validation = _validate(model, val_ds)
        with atomic_path(options.out) as temp:  # a crash never leaves half a model
            model.save(temp)
        checkpoint.unlink(missing_ok=True)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    hist = {k: [float(v) for v in vals] for k, vals in history.history.items()}
    card = build_card(options, pairs, model, hist, validation, rate, init)
    card_file = card_path(options.out)
    write_atomic(card_file, (json.dumps(card, indent=2) + "\n").encode(), mode=PLAIN_MODE)
    log.info("training_done", stage=options.stage.value, out=str(options.out), **validation)
    epochs = len(hist.get("loss", []))
    return TrainResult(options.out, card_file, epochs, hist, validation, tuple(problems))


def _validate(model: Any, val_ds: Any) -> dict[str, float]:
    """Hard per-image Dice and IoU on the validation set, at threshold 0.5."""
    dices, ious = [], []
    for x, y in val_ds:
        pred = model(x, training=False).numpy().mean(axis=-1) > 0.5
        truth = y.numpy()[..., 0] > 0.5
        for p, t in zip(pred, truth, strict=True):
            dices.append(dice(t, p))
            ious.append(iou(t, p))
    return {
        "val_dice": float(np.mean(dices)) if dices else 0.0,
        "val_iou": float(np.mean(ious)) if ious else 0.0,
        "val_images": float(len(dices)),
    }
