"""How ``train`` splits its images and streams them: the validation split (random, or the
stems a list names) and the ``tf.data`` pipeline (prepared once, cached, augmented)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from cervixbatch.errors import CervixbatchError
from cervixbatch.tools.training.dataset import Augmenter, LabelledImage

__all__ = ["make_dataset", "read_stems", "split_pairs"]


def read_stems(path: Path) -> set[str]:
    """The image stems a validation list names, one a line (blank lines and # ignored)."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise CervixbatchError(f"validation list {path.name} is not readable: {exc}") from exc
    return {line.strip() for line in lines if line.strip() and not line.startswith("#")}


def split_pairs(
    pairs: Sequence[LabelledImage], fraction: float, seed: int, listed: Path | None = None
) -> tuple[list[LabelledImage], list[LabelledImage]]:
    """(train, validation): the stems ``listed`` names, else a random share ``fraction``."""
    if listed is not None:
        stems = read_stems(listed)
        val = [pair for pair in pairs if pair.stem in stems]
        train = [pair for pair in pairs if pair.stem not in stems]
        if not val or not train:
            raise CervixbatchError(
                f"validation list {listed.name} names {len(val)} of the {len(pairs)} labelled "
                "images: both the training and the validation part must keep at least one"
            )
        return train, val
    order = np.random.default_rng(seed).permutation(len(pairs))
    n_val = max(1, round(len(pairs) * fraction)) if len(pairs) > 1 else 0
    val = [pairs[i] for i in order[:n_val]]
    train = [pairs[i] for i in order[n_val:]] or val
    return train, val


def make_dataset(
    pairs: Sequence[LabelledImage],
    prepare: Callable[[LabelledImage], tuple[Any, Any]],
    shapes: tuple[tuple[int, ...], tuple[int, ...]],
    *,
    batch_size: int,
    cache_file: Path,
    augment: Augmenter | None,
    seed: int,
    head: int = 1,
) -> Any:
    """Batches of (input, mask) prepared once, cached to ``cache_file``, then augmented."""
    import tensorflow as tf

    def load(index: Any) -> tuple[Any, Any]:
        return prepare(pairs[int(index)])

    def loaded(index: Any) -> tuple[Any, Any]:
        x, y = tf.numpy_function(load, [index], [tf.float32, tf.float32])
        x.set_shape(shapes[0])
        y.set_shape(shapes[1])
        return x, y

    ds = tf.data.Dataset.from_tensor_slices(np.arange(len(pairs), dtype=np.int64))
    ds = ds.map(loaded, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    ds = ds.cache(str(cache_file))  # decoded once; later epochs read the cache file
    if augment is not None:
        ds = ds.shuffle(min(len(pairs), 512), seed=seed, reshuffle_each_iteration=True)

        def augmented(x: Any, y: Any) -> tuple[Any, Any]:
            ax, ay = tf.numpy_function(augment, [x, y], [tf.float32, tf.float32])
            ax.set_shape(shapes[0])
            ay.set_shape(shapes[1])
            return ax, ay

        ds = ds.map(augmented, num_parallel_calls=1)  # one Augmenter rng: reproducible
    if head > 1:
        ds = ds.map(lambda x, y: (x, tf.repeat(y, head, axis=-1)))
    return ds.batch(batch_size).prefetch(tf.data.AUTOTUNE)
