"""The two UNet architectures of the seed projects, with their sizes as parameters.

Stage 1 (cervix): the classic UNet of "UNet分割提取宫颈部位" — two 3×3 ReLU convolutions per
level, 32→512 filters, max-pooling down, UpSampling2D up, RGB at 128×128, Dice loss.
Its seed ends in a 3-channel sigmoid head only because it reused ``nb_channels`` (the input
channels) for the output; the target is one binary mask, so our default head has one
channel. ``output_channels=3`` rebuilds the seed exactly, and inference averages channels.

Stage 2 (lesion): ``get_unet`` of "UNet_for_cervix_segmentation" — ``n_filters=16``,
BatchNorm, Dropout, Conv2DTranspose up, grayscale at 512×512, sigmoid, binary
cross-entropy.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

__all__ = ["build_cervix_unet", "build_lesion_unet"]


def build_cervix_unet(
    input_size: int = 128,
    *,
    input_channels: int = 3,
    base_filters: int = 32,
    depth: int = 4,
    output_channels: int = 1,
) -> Any:
    """Builds the stage-1 UNet (uncompiled). Defaults are the seed's sizes."""
    from keras import layers

    def block(x: Any, level: int) -> Any:
        return _double_conv(x, base_filters * 2**level)

    def down(x: Any, _level: int) -> Any:
        return layers.MaxPooling2D(pool_size=(2, 2))(x)

    def up(x: Any, skip: Any, _level: int) -> Any:
        return layers.concatenate([layers.UpSampling2D(size=(2, 2))(x), skip], axis=-1)

    inputs = _image_input(input_size, input_channels, depth)
    x = _u_shape(inputs, depth, block, down, up)
    return _mask_model(inputs, x, output_channels, "cervix_unet")


def build_lesion_unet(
    input_size: int = 512,
    *,
    input_channels: int = 1,
    n_filters: int = 16,
    depth: int = 4,
    dropout: float = 0.5,
    batchnorm: bool = True,
    output_channels: int = 1,
) -> Any:
    """Builds the stage-2 UNet (uncompiled). Defaults are the seed's sizes."""
    from keras import layers

    def block(x: Any, level: int) -> Any:
        return _conv2d_block(x, n_filters * 2**level, batchnorm=batchnorm)

    def down(x: Any, level: int) -> Any:
        x = layers.MaxPooling2D((2, 2))(x)
        # the seed drops half as much after the first level as after the deeper ones
        return layers.Dropout(dropout * 0.5 if level == 0 else dropout)(x)

    def up(x: Any, skip: Any, level: int) -> Any:
        x = layers.Conv2DTranspose(n_filters * 2**level, (3, 3), strides=(2, 2), padding="same")(x)
        x = layers.concatenate([x, skip], axis=-1)
        return layers.Dropout(dropout)(x)

    inputs = _image_input(input_size, input_channels, depth)
    x = _u_shape(inputs, depth, block, down, up)
    return _mask_model(inputs, x, output_channels, "lesion_unet")


def _u_shape(
    inputs: Any,
    depth: int,
    block: Callable[[Any, int], Any],
    down: Callable[[Any, int], Any],
    up: Callable[[Any, Any, int], Any],
) -> Any:
    """The U both seeds share, its layers made in the seeds' order: per level a block (kept
    for the skip connection) and a way down; a block at the bottom; per level back up, the
    way up joined with the level's skip, then a block."""
    x, skips = inputs, []
    for level in range(depth):
        x = block(x, level)
        skips.append(x)
        x = down(x, level)
    x = block(x, depth)
    for level in reversed(range(depth)):
        x = block(up(x, skips[level], level), level)
    return x


def _image_input(input_size: int, input_channels: int, depth: int) -> Any:
    """The square image input both UNets take (its side must halve ``depth`` times)."""
    import keras

    _check_divisible(input_size, depth)
    return keras.Input((input_size, input_size, input_channels), name="image")


def _mask_model(inputs: Any, x: Any, output_channels: int, name: str) -> Any:
    """The sigmoid mask head (float32 under mixed precision) and the finished model."""
    import keras
    from keras import layers

    outputs = layers.Conv2D(
        output_channels, (1, 1), activation="sigmoid", dtype="float32", name="mask"
    )(x)
    return keras.Model(inputs=inputs, outputs=outputs, name=name)


def _double_conv(x: Any, filters: int) -> Any:
    from keras import layers

    x = layers.Conv2D(filters, (3, 3), padding="same", activation="relu")(x)
    return layers.Conv2D(filters, (3, 3), padding="same", activation="relu")(x)


def _conv2d_block(x: Any, filters: int, *, batchnorm: bool) -> Any:
    """The seed's ``conv2d_block``: (conv → BN → ReLU) twice, He-initialised."""
    from keras import layers

    for _ in range(2):
        x = layers.Conv2D(filters, (3, 3), kernel_initializer="he_normal", padding="same")(x)
        if batchnorm:
            x = layers.BatchNormalization()(x)
        x = layers.Activation("relu")(x)
    return x


def _check_divisible(input_size: int, depth: int) -> None:
    if input_size % 2**depth:
        msg = f"input size {input_size} must be divisible by 2**depth = {2**depth}"
        raise ValueError(msg)
