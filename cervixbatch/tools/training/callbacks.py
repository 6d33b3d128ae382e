"""What watches a training run: per-epoch log events, the learning-rate warm-up, exact
BatchNorm statistics before validation, and the collapse guard.

A UNet under Dice loss can collapse to one constant mask (seen with seed 001's network at
Adam 1e-3: validation Dice 0.487 at every epoch); the guard stops such a run with a
message that says what happened and what to try, and ``train`` never saves its model.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np
import structlog

from cervixbatch.errors import CervixbatchError
from cervixbatch.segmentation.scores import dice

__all__ = [
    "CONSTANT_SPREAD",
    "FLAT_DICE",
    "PRECISE_BN_BATCHES",
    "SATURATED",
    "CollapseGuard",
    "TrainingCollapsed",
    "epoch_log_callback",
    "precise_batchnorm_callback",
    "prediction_spread",
    "recalibrate_batchnorm",
    "refuse_collapsed",
    "warmup_callback",
]

log = structlog.get_logger(__name__)

PRECISE_BN_BATCHES = 12
# Mean over pixels of (largest - smallest probability across validation images): below
# this the model answers the same whatever the photo.
CONSTANT_SPREAD = 0.02
# Hard validation Dice spanning less than this over the window counts as "has not moved".
FLAT_DICE = 0.005
# Mean over pixels of min(p, 1 - p): below this the model is sure of every pixel. A model
# that has not started learning (outputs near 0.5) is not a collapsed one; a collapsed
# one answers 0 or 1 everywhere (seed 001's UNet at 1e-3: every pixel 1, Dice 0.487).
SATURATED = 0.05
# Mean doubt above this: outputs near 0.5 everywhere, a model that has not started learning.
UNSTARTED = 0.4
# The "same mask for every image" rule needs at least this many validation images.
MIN_SPREAD_IMAGES = 4
# A model whose Dice is within this of the best constant mask's has learnt nothing.
BASELINE_MARGIN = 0.02


def _constant_baseline(val_batches: Any) -> float:
    """The best mean Dice a mask that ignores the photo gets on the validation set: every
    pixel, no pixel, or the pixels that are foreground in most truth masks."""
    truths = [np.asarray(y, dtype=np.float32)[..., 0] > 0.5 for _, y in val_batches]
    if not truths:
        return 0.0
    stacked = np.concatenate(truths)
    candidates = [
        np.ones(stacked.shape[1:], bool),
        np.zeros(stacked.shape[1:], bool),
        stacked.mean(axis=0) > 0.5,
    ]
    return max(float(np.mean([dice(t, c) for t in stacked])) for c in candidates)


class TrainingCollapsed(CervixbatchError):
    """Training stopped because the model stopped depending on its input."""


def epoch_log_callback(stage_name: str) -> Any:
    """One structured log event per epoch (when Keras's own progress bar is off)."""
    import keras

    class EpochLog(keras.callbacks.Callback):  # type: ignore[misc]
        def on_epoch_end(self, epoch: int, logs: dict[str, float] | None = None) -> None:
            values = {k: round(float(v), 5) for k, v in (logs or {}).items()}
            log.info("epoch_done", stage=stage_name, epoch=epoch + 1, **values)

    return EpochLog()


def warmup_callback(base_rate: float, steps: int) -> Any:
    """Raises the learning rate linearly from base/steps to base over the first ``steps``
    batches: Adam's first updates, with its moment estimates still empty, are the ones
    that knock a fresh (or a fine-tuned) UNet into the constant-mask state."""
    import keras

    class WarmUp(keras.callbacks.Callback):  # type: ignore[misc]
        def __init__(self) -> None:
            super().__init__()
            self.seen = 0

        def on_train_batch_begin(self, batch: int, logs: dict[str, float] | None = None) -> None:  # noqa: ARG002
            if self.seen < steps:
                self.seen += 1
                self.model.optimizer.learning_rate.assign(base_rate * self.seen / steps)

    return WarmUp()


def recalibrate_batchnorm(model: Any, batches: Any) -> int:
    """Sets every BatchNorm layer's moving statistics to the exact mean over ``batches``.

    During training the moving averages trail weights that change fast (momentum 0.99),
    so inference-mode masks lag far behind training-mode ones; measured on the lesion
    stage: Dice 0.27 in inference mode against 0.61 in training mode, 0.62 after this
    recalibration ("precise BN"). Dropout is off meanwhile, as it is at inference.
    Returns the number of batches used.
    """
    import keras

    norms = [layer for layer in model.layers if isinstance(layer, keras.layers.BatchNormalization)]
    if not norms:
        return 0
    drops = [layer for layer in model.layers if isinstance(layer, keras.layers.Dropout)]
    momenta = [layer.momentum for layer in norms]
    rates = [layer.rate for layer in drops]
    used = 0
    try:
        for layer in drops:
            layer.rate = 0.0
        for x, _ in batches:
            for layer in norms:
                layer.momentum = used / (used + 1)  # a running mean over the batches seen
            model(x, training=True)
            used += 1
    finally:
        for layer, momentum in zip(norms, momenta, strict=True):
            layer.momentum = momentum
        for layer, rate in zip(drops, rates, strict=True):
            layer.rate = rate
    return used


def precise_batchnorm_callback(model: Any, batches: Any) -> Any:
    """Recalibrates BatchNorm statistics before every validation."""
    import keras

    class PreciseBatchNorm(keras.callbacks.Callback):  # type: ignore[misc]
        def on_test_begin(self, logs: dict[str, float] | None = None) -> None:  # noqa: ARG002
            recalibrate_batchnorm(model, batches)

    return PreciseBatchNorm()


def prediction_spread(probs: Any) -> float:
    """Mean over pixels of the range of ``probs`` (N x H x W) across images; 0 for N < 2."""
    if len(probs) < 2:
        return float("nan")
    return float(np.mean(probs.max(axis=0) - probs.min(axis=0)))


@dataclasses.dataclass
class CollapseGuard:
    """Checks after every epoch whether the model still depends on its input.

    Collapsed, after ``window`` epochs in which the model was sure of every pixel
    (``SATURATED``): its validation predictions were the same for every image in each of
    them. Or, sure or not, after ``window`` epochs in which its hard validation Dice moved
    by no more than ``FLAT_DICE`` and stayed no better than a constant mask's (all cervix,
    none, or the mean mask): the lesion stage under BCE settles on background with outputs
    far from 0 (Dice 0.14 at every epoch, never saturated). A model that is still learning,
    or that has learnt and settled (better than any constant mask), does not.
    """

    val_batches: Any
    window: int = 3
    dices: list[float] = dataclasses.field(default_factory=list)
    hards: list[float] = dataclasses.field(default_factory=list)  # hard Dice at 0.5
    spreads: list[float] = dataclasses.field(default_factory=list)
    doubts: list[float] = dataclasses.field(default_factory=list)
    reason: str | None = None
    epoch: int = 0
    baseline: float | None = None  # the best Dice a constant mask gets on the validation set
    images: int = 0  # validation images measured

    def measure(self, model: Any) -> tuple[float, float, float, float]:
        """(soft Dice, hard Dice at 0.5, prediction spread, doubt) on the validation set,
        where doubt is the mean over pixels of min(p, 1 - p)."""
        probs, soft, hard = [], [], []
        for x, y in self.val_batches:
            pred = np.asarray(model(x, training=False), dtype=np.float32).mean(axis=-1)
            truth = np.asarray(y, dtype=np.float32)[..., 0]
            probs.append(pred)
            for t, p in zip(truth, pred, strict=True):
                soft.append(float((2 * (t * p).sum() + 1) / (t.sum() + p.sum() + 1)))
                hard.append(dice(t > 0.5, p > 0.5))
        stacked = np.concatenate(probs) if probs else np.full((1, 1, 1), 0.5, np.float32)
        self.images = len(soft)
        if self.baseline is None:
            self.baseline = _constant_baseline(self.val_batches)
        mean = float(np.mean(soft)) if soft else 0.0
        doubt = float(np.mean(np.minimum(stacked, 1.0 - stacked)))
        return mean, (float(np.mean(hard)) if hard else 0.0), prediction_spread(stacked), doubt

    def check(self, model: Any, epoch: int) -> str | None:
        """Measures after ``epoch`` (1-based); returns why the run collapsed, or None."""
        soft, hard, spread, doubt = self.measure(model)
        self.dices.append(soft)
        self.spreads.append(spread)
        self.doubts.append(doubt)
        log.info(
            "validation_checked",
            epoch=epoch,
            val_soft_dice=round(soft, 4),
            val_dice=round(hard, 4),
            prediction_spread=round(spread, 4),
            prediction_doubt=round(doubt, 4),
        )
        self.hards.append(hard)
        n = self.window
        if n < 1 or len(self.dices) < n:
            return None
        span = f"epochs {epoch - n + 1}-{epoch}"
        saturated = all(d < SATURATED for d in self.doubts[-n:])
        # alike predictions on two or three photos may be alike photos: not evidence
        alike = all(s < CONSTANT_SPREAD for s in self.spreads[-n:])
        if saturated and self.images >= MIN_SPREAD_IMAGES and alike:
            return (
                f"the model predicts the same mask for every validation image ({span}: "
                f"predictions differ by {spread:.4f} on average across images; validation "
                f"Dice {hard:.3f})"
            )
        recent = self.hards[-n:]
        no_better = max(recent) <= (self.baseline or 0.0) + BASELINE_MARGIN
        # sure or not: a Dice that stays at a constant mask's, epoch after epoch, is a
        # model that settled on background (BCE on small lesions) or never started
        started = any(d < UNSTARTED for d in self.doubts[-n:])
        # unsure outputs on two or three photos may still be learning: not evidence
        enough = saturated or (started and self.images >= MIN_SPREAD_IMAGES)
        if enough and no_better and max(recent) - min(recent) <= FLAT_DICE:
            return (
                f"validation Dice has not moved in {n} epochs ({span}: Dice "
                f"{', '.join(f'{d:.4f}' for d in recent)}) and, at {hard:.3f}, is no better "
                f"than a constant mask's ({self.baseline:.3f})"
            )
        return None

    def callback(self) -> Any:
        """A Keras callback that runs the check and stops training on a collapse."""
        import keras

        guard = self

        class Guard(keras.callbacks.Callback):  # type: ignore[misc]
            def on_epoch_end(self, epoch: int, logs: dict[str, float] | None = None) -> None:  # noqa: ARG002
                if guard.reason is not None:
                    return
                reason = guard.check(self.model, epoch + 1)
                if reason is not None:
                    guard.reason, guard.epoch = reason, epoch + 1
                    self.model.stop_training = True

        return Guard()


def refuse_collapsed(
    guard: CollapseGuard, model: Any, *, stage: str, out: Path, learning_rate: float
) -> None:
    """Raises :class:`TrainingCollapsed` when the run collapsed (during it, or in the
    weights it ends with), after removing the checkpoint: a collapsed model is never saved
    as the best."""
    reason = guard.reason
    if reason is None and guard.window > 0:
        _, hard, spread, doubt = guard.measure(model)
        alike = guard.images >= MIN_SPREAD_IMAGES and spread < CONSTANT_SPREAD
        if alike and doubt < SATURATED:
            reason = (
                f"the final model predicts the same mask for every validation image "
                f"(validation Dice {hard:.3f})"
            )
    if reason is None:
        return
    out.with_name(out.stem + ".checkpoint.keras").unlink(missing_ok=True)
    at = f" at epoch {guard.epoch}" if guard.epoch else ""
    log.warning("training_collapsed", stage=stage, epoch=guard.epoch, reason=reason)
    raise TrainingCollapsed(
        f"training of the {stage} stage stopped{at}: {reason}. Nothing was saved (no "
        f"{out.name}). Try: a lower --learning-rate (this run used {learning_rate:g}; seed "
        "001 trained stage 1 at 1e-4), --init from a model that already works, and check "
        "that every mask belongs to its image (same stem, same orientation) and that the "
        "masks are not all empty or all full."
    )
