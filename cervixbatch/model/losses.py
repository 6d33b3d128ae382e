"""Losses and metrics of the seeds, registered so that saved ``.keras`` files load."""

from __future__ import annotations

from typing import Any

import keras
from keras import ops

__all__ = ["bce_dice_loss", "dice_coef", "dice_coef_loss", "iou_coef"]

_SMOOTH = 1.0


@keras.saving.register_keras_serializable(package="cervixbatch")
def dice_coef(y_true: Any, y_pred: Any) -> Any:
    """Soft Dice over the whole batch, smoothed as in the stage-1 seed."""
    y_true = ops.cast(ops.reshape(y_true, (-1,)), "float32")
    y_pred = ops.cast(ops.reshape(y_pred, (-1,)), "float32")
    intersection = ops.sum(y_true * y_pred)
    return (2.0 * intersection + _SMOOTH) / (ops.sum(y_true) + ops.sum(y_pred) + _SMOOTH)


@keras.saving.register_keras_serializable(package="cervixbatch")
def dice_coef_loss(y_true: Any, y_pred: Any) -> Any:
    """1 - Dice: the stage-1 seed's loss, shifted to be non-negative."""
    return 1.0 - dice_coef(y_true, y_pred)


@keras.saving.register_keras_serializable(package="cervixbatch")
def bce_dice_loss(y_true: Any, y_pred: Any) -> Any:
    """Binary cross-entropy plus a Dice term: the optional stage-2 loss for small lesions."""
    bce = ops.mean(keras.losses.binary_crossentropy(y_true, y_pred))
    return bce + dice_coef_loss(y_true, y_pred)


@keras.saving.register_keras_serializable(package="cervixbatch")
def iou_coef(y_true: Any, y_pred: Any) -> Any:
    """Soft intersection over union, as a training metric."""
    y_true = ops.cast(ops.reshape(y_true, (-1,)), "float32")
    y_pred = ops.cast(ops.reshape(y_pred, (-1,)), "float32")
    intersection = ops.sum(y_true * y_pred)
    union = ops.sum(y_true) + ops.sum(y_pred) - intersection
    return (intersection + _SMOOTH) / (union + _SMOOTH)
