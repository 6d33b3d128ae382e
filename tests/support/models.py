"""Real Keras models whose masks are a fixed function of colour, and a config pointed at
another lesion model."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

ANALYTIC_SIZE = 64


def analytic_model(channels: int, weights: list[float], bias: float, name: str) -> Any:
    """A real Keras model whose mask is a fixed function of colour: deterministic results
    for end-to-end tests (one image input, sigmoid output of the same height and width)."""
    import keras

    inputs = keras.Input((ANALYTIC_SIZE, ANALYTIC_SIZE, channels))
    conv = keras.layers.Conv2D(1, (1, 1), activation="sigmoid", name="mask")
    outputs = conv(inputs)
    conv.set_weights(
        [
            np.array(weights, dtype=np.float32).reshape(1, 1, channels, 1),
            np.array([bias], dtype=np.float32),
        ]
    )
    return keras.Model(inputs, outputs, name=name)


def with_lesion_model(config: Path, model: Path) -> Path:
    """Points the config's lesion model at ``model``; returns the config."""
    text = config.read_text(encoding="utf-8")
    lines = [
        f'lesion = "{model}"' if line.startswith("lesion = ") else line
        for line in text.splitlines()
    ]
    config.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return config
