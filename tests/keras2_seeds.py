"""Writes model files with Keras 2 itself (tf-keras), in the seeds' own ways, and runs
the seeds' own predict steps on a photo. Run as a script in a subprocess with
TF_USE_LEGACY_KERAS=1, so that the test process keeps Keras 3.

    python keras2_seeds.py SPEC.json

SPEC: {"out": DIR, "cervix": {"size", "filters", "analytic", "file"},
       "lesion": {"size", "filters", "analytic", "file"}, "photo": PATH or null,
       "probe": true/false}

Stage 1 follows seed 001 (cervix-roi-segmentation-by-unet): ``create_model`` (its depth,
its 3-channel head, Adam, custom ``dice_coef_loss``), saved by ``ModelCheckpoint`` as a
full model; predict.py's preprocessing (cv2.imread BGR, resize, x 1/255),
``to_binary_mask``, ``morphology_clean``, ``find_bbox`` and ``transform_bbox``. Stage 2
follows seed 000 (UNet_for_cervix_segmentation): ``get_unet(n_filters, dropout=0.05)``,
binary cross-entropy, ``ModelCheckpoint(save_weights_only=True)``; its input is the
seed-1 crop resized with INTER_CUBIC (resize_image.py), read as grayscale by PIL, / 255,
thresholded at 0.5.
"""

from __future__ import annotations

import json
import math
import os
import sys
from pathlib import Path
from typing import Any

os.environ["TF_USE_LEGACY_KERAS"] = "1"
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import cv2
import numpy as np
import tensorflow as tf
from PIL import Image
from tensorflow import keras

K = keras.backend
layers = keras.layers
SMOOTH = 1.0


# -- seed 001: unet.py ---------------------------------------------------------------


def dice_coef(y_true: Any, y_pred: Any) -> Any:
    y_true_f = K.flatten(y_true)
    y_pred_f = K.flatten(y_pred)
    intersection = K.sum(y_true_f * y_pred_f)
    return (2.0 * intersection + SMOOTH) / (K.sum(y_true_f) + K.sum(y_pred_f) + SMOOTH)


def dice_coef_loss(y_true: Any, y_pred: Any) -> Any:
    return -dice_coef(y_true, y_pred)


def create_model(img_height: int, img_width: int, nb_channels: int, f: int) -> Any:
    """Seed 001's create_model; ``f`` is its first width (32 in the seed)."""
    inputs = layers.Input((img_height, img_width, nb_channels))
    conv1 = layers.Conv2D(f, (3, 3), padding="same", activation="relu")(inputs)
    conv1 = layers.Conv2D(f, (3, 3), padding="same", activation="relu")(conv1)
    pool1 = layers.MaxPooling2D(pool_size=(2, 2))(conv1)
    conv2 = layers.Conv2D(2 * f, (3, 3), padding="same", activation="relu")(pool1)
    conv2 = layers.Conv2D(2 * f, (3, 3), padding="same", activation="relu")(conv2)
    pool2 = layers.MaxPooling2D(pool_size=(2, 2))(conv2)
    conv3 = layers.Conv2D(4 * f, (3, 3), padding="same", activation="relu")(pool2)
    conv3 = layers.Conv2D(4 * f, (3, 3), padding="same", activation="relu")(conv3)
    pool3 = layers.MaxPooling2D(pool_size=(2, 2))(conv3)
    conv4 = layers.Conv2D(8 * f, (3, 3), padding="same", activation="relu")(pool3)
    conv4 = layers.Conv2D(8 * f, (3, 3), padding="same", activation="relu")(conv4)
    pool4 = layers.MaxPooling2D(pool_size=(2, 2))(conv4)
    conv5 = layers.Conv2D(16 * f, (3, 3), padding="same", activation="relu")(pool4)
    conv5 = layers.Conv2D(16 * f, (3, 3), padding="same", activation="relu")(conv5)
    up6 = layers.concatenate([layers.UpSampling2D(size=(2, 2))(conv5), conv4], axis=3)
    conv6 = layers.Conv2D(8 * f, (3, 3), padding="same", activation="relu")(up6)
    conv6 = layers.Conv2D(8 * f, (3, 3), padding="same", activation="relu")(conv6)
    up7 = layers.concatenate([layers.UpSampling2D(size=(2, 2))(conv6), conv3], axis=3)
    conv7 = layers.Conv2D(4 * f, (3, 3), padding="same", activation="relu")(up7)
    conv7 = layers.Conv2D(4 * f, (3, 3), padding="same", activation="relu")(conv7)
    up8 = layers.concatenate([layers.UpSampling2D(size=(2, 2))(conv7), conv2], axis=3)
    conv8 = layers.Conv2D(2 * f, (3, 3), padding="same", activation="relu")(up8)
    conv8 = layers.Conv2D(2 * f, (3, 3), padding="same", activation="relu")(conv8)
    up9 = layers.concatenate([layers.UpSampling2D(size=(2, 2))(conv8), conv1], axis=3)
    conv9 = layers.Conv2D(f, (3, 3), padding="same", activation="relu")(up9)
    conv9 = layers.Conv2D(f, (3, 3), padding="same", activation="relu")(conv9)
    conv10 = layers.Conv2D(nb_channels, (1, 1), activation="sigmoid")(conv9)
    model = keras.models.Model(inputs=inputs, outputs=conv10)
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate=0.0), loss=dice_coef_loss, metrics=[dice_coef]
    )
    return model


# -- seed 000: model.py ----------------------------------------------------------------


def conv2d_block(
    input_tensor: Any, n_filters: int, kernel_size: int = 3, batchnorm: bool = True
) -> Any:
    x = layers.Conv2D(
        filters=n_filters,
        kernel_size=(kernel_size, kernel_size),
        kernel_initializer="he_normal",
        padding="same",
    )(input_tensor)
    if batchnorm:
        x = layers.BatchNormalization()(x)
    x = layers.Activation("relu")(x)
    x = layers.Conv2D(
        filters=n_filters,
        kernel_size=(kernel_size, kernel_size),
        kernel_initializer="he_normal",
        padding="same",
    )(x)
    if batchnorm:
        x = layers.BatchNormalization()(x)
    return layers.Activation("relu")(x)


def get_unet(
    input_img: Any, n_filters: int = 16, dropout: float = 0.5, batchnorm: bool = True
) -> Any:
    c1 = conv2d_block(input_img, n_filters=n_filters * 1, kernel_size=3, batchnorm=batchnorm)
    p1 = layers.MaxPooling2D((2, 2))(c1)
    p1 = layers.Dropout(dropout * 0.5)(p1)
    c2 = conv2d_block(p1, n_filters=n_filters * 2, kernel_size=3, batchnorm=batchnorm)
    p2 = layers.MaxPooling2D((2, 2))(c2)
    p2 = layers.Dropout(dropout)(p2)
    c3 = conv2d_block(p2, n_filters=n_filters * 4, kernel_size=3, batchnorm=batchnorm)
    p3 = layers.MaxPooling2D((2, 2))(c3)
    p3 = layers.Dropout(dropout)(p3)
    c4 = conv2d_block(p3, n_filters=n_filters * 8, kernel_size=3, batchnorm=batchnorm)
    p4 = layers.MaxPooling2D(pool_size=(2, 2))(c4)
    p4 = layers.Dropout(dropout)(p4)
    c5 = conv2d_block(p4, n_filters=n_filters * 16, kernel_size=3, batchnorm=batchnorm)
    u6 = layers.Conv2DTranspose(n_filters * 8, (3, 3), strides=(2, 2), padding="same")(c5)
    u6 = layers.concatenate([u6, c4])
    u6 = layers.Dropout(dropout)(u6)
    c6 = conv2d_block(u6, n_filters=n_filters * 8, kernel_size=3, batchnorm=batchnorm)
    u7 = layers.Conv2DTranspose(n_filters * 4, (3, 3), strides=(2, 2), padding="same")(c6)
    u7 = layers.concatenate([u7, c3])
    u7 = layers.Dropout(dropout)(u7)
    c7 = conv2d_block(u7, n_filters=n_filters * 4, kernel_size=3, batchnorm=batchnorm)
    u8 = layers.Conv2DTranspose(n_filters * 2, (3, 3), strides=(2, 2), padding="same")(c7)
    u8 = layers.concatenate([u8, c2])
    u8 = layers.Dropout(dropout)(u8)
    c8 = conv2d_block(u8, n_filters=n_filters * 2, kernel_size=3, batchnorm=batchnorm)
    u9 = layers.Conv2DTranspose(n_filters * 1, (3, 3), strides=(2, 2), padding="same")(c8)
    u9 = layers.concatenate([u9, c1], axis=3)
    u9 = layers.Dropout(dropout)(u9)
    c9 = conv2d_block(u9, n_filters=n_filters * 1, kernel_size=3, batchnorm=batchnorm)
    outputs = layers.Conv2D(1, (1, 1), activation="sigmoid")(c9)
    return keras.models.Model(inputs=[input_img], outputs=[outputs])


def get_iou_vector(a: Any, b: Any) -> Any:
    metric = []
    for batch in range(a.shape[0]):
        t, p = a[batch] > 0, b[batch] > 0
        iou = (np.sum(np.logical_and(t, p)) + 1e-10) / (np.sum(np.logical_or(t, p)) + 1e-10)
        metric.append(np.mean([iou > thresh for thresh in np.arange(0.5, 1, 0.05)]))
    return np.mean(metric)


def my_iou_metric(label: Any, pred: Any) -> Any:
    return tf.numpy_function(get_iou_vector, [label, pred > 0.5], tf.float64)


# -- weights that compute something known ----------------------------------------------


def _convs(model: Any) -> list[Any]:
    return [
        layer
        for layer in model.layers
        if isinstance(layer, layers.Conv2D) and not isinstance(layer, layers.Conv2DTranspose)
    ]


def _zero_all(model: Any) -> None:
    for layer in model.layers:
        if isinstance(layer, layers.BatchNormalization):
            gamma, beta, mean, var = layer.get_weights()
            layer.set_weights([np.ones_like(gamma), beta * 0, mean * 0, np.ones_like(var)])
        elif layer.get_weights():
            layer.set_weights([np.zeros_like(w) for w in layer.get_weights()])


def _pass_through(layer: Any, src: int, gain: float, bias: float, dst: int = 0) -> None:
    kernel, b = layer.get_weights()
    kh, kw = kernel.shape[:2]
    kernel[kh // 2, kw // 2, src, dst] = gain
    b[dst] = bias
    layer.set_weights([kernel, b])


def analytic_cervix(model: Any, f: int) -> None:
    """Mask = reddish pixels, through the seed's first and last levels only (the deeper
    levels are zero): the skip connection carries ReLU(24 R - 12) to a head of 3 channels
    with different biases, so the seed's per-channel sensitivity step matters."""
    _zero_all(model)
    convs = _convs(model)
    _pass_through(convs[0], src=0, gain=1.0, bias=0.0)  # R
    _pass_through(convs[1], src=0, gain=1.0, bias=0.0)
    _pass_through(convs[-3], src=2 * f, gain=24.0, bias=-12.0)  # up9 = [up(conv8), conv1]
    _pass_through(convs[-2], src=0, gain=1.0, bias=0.0)
    head = convs[-1]
    kernel, bias = head.get_weights()
    for channel in range(kernel.shape[3]):
        kernel[0, 0, 0, channel] = 40.0
        bias[channel] = -20.0 - 4.0 * channel
    head.set_weights([kernel, bias])


def analytic_lesion(model: Any, f: int) -> None:
    """Mask = bright pixels: sigmoid(30 (ReLU(8 gray - 6.4)) - 6) through c1 and c9."""
    _zero_all(model)
    convs = _convs(model)
    _pass_through(convs[0], src=0, gain=8.0, bias=-6.4)
    _pass_through(convs[1], src=0, gain=1.0, bias=0.0)
    _pass_through(convs[-3], src=f, gain=1.0, bias=0.0)  # u9 = [transposed(c8), c1]
    _pass_through(convs[-2], src=0, gain=1.0, bias=0.0)
    _pass_through(convs[-1], src=0, gain=30.0, bias=-6.0)


# -- the seeds' predict steps -----------------------------------------------------------


def to_binary_mask(mask: Any, t: float = 0.00001) -> Any:
    mask = mask / (1.0 / 255.0)
    mask[mask > t] = 255
    mask[mask <= t] = 0
    mask_gray = cv2.cvtColor(mask, cv2.COLOR_BGR2GRAY)
    mask_gray = cv2.normalize(
        src=mask_gray, dst=None, alpha=0, beta=255, norm_type=cv2.NORM_MINMAX, dtype=cv2.CV_8UC1
    )
    _, mask_binary = cv2.threshold(mask_gray, 128, 255, cv2.THRESH_BINARY | cv2.THRESH_OTSU)
    return mask_binary


def disk(radius: int) -> Any:
    from skimage.morphology import disk as skimage_disk

    return skimage_disk(radius)


def morphology_clean(mask_binary: Any) -> Any:
    opened = cv2.morphologyEx(mask_binary, cv2.MORPH_OPEN, disk(5))
    return cv2.morphologyEx(opened, cv2.MORPH_CLOSE, disk(5))


def find_bbox(mask_binary: Any, margin_factor: float) -> tuple[int, int, int, int, bool]:
    _, thresh = cv2.threshold(mask_binary, 127, 255, 0)
    # OpenCV 3 returned (image, contours, hierarchy); 4 and later (contours, hierarchy)
    contours = cv2.findContours(thresh, cv2.RETR_TREE, cv2.CHAIN_APPROX_SIMPLE)[-2]
    areas = [cv2.contourArea(c) for c in contours]
    if not areas:
        return (0, 0, mask_binary.shape[0], mask_binary.shape[1], False)
    x, y, w, h = cv2.boundingRect(contours[int(np.argmax(areas))])
    wm, hm = w * margin_factor, h * margin_factor
    x, y, w, h = max(0, x - wm), max(0, y - hm), w + 2 * wm, h + 2 * hm
    big_x = min(x + w, mask_binary.shape[1])
    big_y = min(y + h, mask_binary.shape[0])
    return (int(x), int(y), int(big_x - x), int(big_y - y), True)


def transform_bbox(bbox: Any, from_dim: Any, to_dim: Any) -> tuple[int, int, int, int]:
    h0, w0 = from_dim
    h1, w1 = to_dim
    x, y, w, h = bbox
    wf, hf = 1.0 * w1 / w0, 1.0 * h1 / h0
    return (
        max(0, math.floor(x * wf)),
        max(0, math.floor(y * hf)),
        math.floor(w * wf),
        math.floor(h * hf),
    )


def seed_predict(cervix: Any, lesion: Any, photo: Path, out: Path) -> None:
    """Both seeds' predict steps on one photo; masks written at the photo's full size."""
    original = cv2.imread(str(photo))  # BGR, as predict.py reads it
    size1 = cervix.input_shape[1]
    resized = cv2.resize(original, (size1, size1), interpolation=cv2.INTER_CUBIC)  # resize_image.py
    img1 = cv2.resize(resized, dsize=(size1, size1))  # predict.py
    predict = cervix.predict((img1 * (1.0 / 255.0))[None], batch_size=1, verbose=0)
    morphed = morphology_clean(to_binary_mask(predict[0]))
    x, y, w, h, success = find_bbox(morphed, 0.15)
    assert success
    x1, y1, w1, h1 = transform_bbox((x, y, w, h), morphed.shape, original.shape[:2])
    full_h, full_w = original.shape[:2]
    cervix_full = cv2.resize(morphed, (full_w, full_h), interpolation=cv2.INTER_NEAREST)
    cv2.imwrite(str(out / "seed_cervix.png"), cervix_full)

    crop = original[y1 : y1 + h1, x1 : x1 + w1]
    cv2.imwrite(str(out / "seed_crop.png"), crop)  # predict.py writes the crop
    size2 = lesion.input_shape[1]
    crop_resized = cv2.resize(crop, (size2, size2), interpolation=cv2.INTER_CUBIC)
    cv2.imwrite(str(out / "seed_crop_resized.png"), crop_resized)  # resize_image.py
    gray = np.asarray(Image.open(out / "seed_crop_resized.png").convert("L"), np.float32)
    prob = lesion.predict((gray / 255.0)[None, ..., None], verbose=0)[0, ..., 0]
    # mapped back to the crop, then placed in the photo: the seed stops at the crop's mask
    in_crop = cv2.resize(prob, (crop.shape[1], crop.shape[0]), interpolation=cv2.INTER_LINEAR)
    lesion_full = np.zeros((full_h, full_w), np.uint8)
    lesion_full[y1 : y1 + crop.shape[0], x1 : x1 + crop.shape[1]] = np.where(in_crop > 0.5, 255, 0)
    cv2.imwrite(str(out / "seed_lesion.png"), lesion_full)


def _fit_once(model: Any, callback: Any, channels_out: int) -> None:
    """One epoch through ``fit`` so that ModelCheckpoint writes the file, as in the seeds."""
    size = model.input_shape[1]
    x = np.random.default_rng(0).random((2, size, size, model.input_shape[3]), np.float32)
    y = np.zeros((2, size, size, channels_out), np.float32)
    model.fit(x, y, validation_data=(x, y), epochs=1, batch_size=2, callbacks=[callback], verbose=0)


def main() -> None:
    spec = json.loads(Path(sys.argv[1]).read_text())
    out = Path(spec["out"])
    tf.keras.utils.set_random_seed(0)
    import tf_keras

    report: dict[str, Any] = {"keras": tf_keras.__version__}
    probe = np.random.default_rng(1)
    models: dict[str, Any] = {}
    if "cervix" in spec:
        c = spec["cervix"]
        model = create_model(c["size"], c["size"], 3, c["filters"])
        if c.get("analytic"):
            analytic_cervix(model, c["filters"])
        path = out / c["file"]
        _fit_once(
            model,
            keras.callbacks.ModelCheckpoint(str(path), monitor="val_loss", save_best_only=True),
            3,
        )
        x = probe.random((1, c["size"], c["size"], 3), np.float32)
        np.save(out / "cervix_probe_x.npy", x)
        np.save(out / "cervix_probe_y.npy", model.predict(x, verbose=0))
        report["cervix_params"] = int(model.count_params())
        models["cervix"] = model
    if "lesion" in spec:
        s = spec["lesion"]
        model = get_unet(
            layers.Input((s["size"], s["size"], 1), name="img"),
            n_filters=s["filters"],
            dropout=0.05,
        )
        model.compile(
            optimizer=keras.optimizers.Adam(learning_rate=0.0),
            loss="binary_crossentropy",
            metrics=[my_iou_metric],
        )
        if s.get("analytic"):
            analytic_lesion(model, s["filters"])
        path = out / s["file"]
        callback = keras.callbacks.ModelCheckpoint(
            str(path), verbose=0, save_best_only=True, save_weights_only=True
        )
        _fit_once(model, callback, 1)
        x = probe.random((1, s["size"], s["size"], 1), np.float32)
        np.save(out / "lesion_probe_x.npy", x)
        np.save(out / "lesion_probe_y.npy", model.predict(x, verbose=0))
        report["lesion_params"] = int(model.count_params())
        models["lesion"] = model
    if spec.get("photo"):
        seed_predict(models["cervix"], models["lesion"], Path(spec["photo"]), out)
    (out / "report.json").write_text(json.dumps(report))


if __name__ == "__main__":
    main()
