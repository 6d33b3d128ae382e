"""A stand-in model with a fixed answer, for tests of what the pipeline does with it."""

from __future__ import annotations

import numpy as np


class FixedMaps:
    """A stand-in model that answers every image with the same probability map."""

    def __init__(self, prob: np.ndarray, channels: int) -> None:
        self.prob = prob.astype(np.float32)
        self.input_channels = channels

    @property
    def input_size(self) -> tuple[int, int]:
        return self.prob.shape

    def predict_batch(self, images: np.ndarray) -> np.ndarray:
        return np.repeat(self.prob[None], images.shape[0], axis=0)
