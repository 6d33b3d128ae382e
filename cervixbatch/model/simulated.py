"""A stand-in accelerator: the two model calls replaced by a wait.

``bench --simulate-device MS`` (and the hidden key ``models.simulate_device_ms``) put this
in place of the two loaded stages. A call waits ``MS`` milliseconds per image in all
(stage 1 takes :data:`STAGE1_SHARE` of it, stage 2 the rest) without using the CPU: it
sleeps, which releases the GIL, as a call into a GPU does while its kernels run. Calls
from any thread take turns, as kernels on one GPU do. The masks returned are plausible
and fixed: a soft ellipse for the cervix, a blob in the crop for the lesion. Everything
else (decode, ROI, crops, post-processing, encoding, the database) is real, so a CPU
machine shows what a host with a fast accelerator would see.
"""

from __future__ import annotations

import threading
import time

import numpy as np
import numpy.typing as npt

from cervixbatch.model.loaded import Stages

__all__ = ["STAGE1_SHARE", "SimulatedDevice", "SimulatedStage", "simulated_stages"]

# Stage 1 at the seed's 128x128x3 is 7.0 of the 32.4 GFLOP both stages take per image
# (docs/performance.md): about a fifth of the device time.
STAGE1_SHARE = 0.2
CERVIX_SIZE = (128, 128)  # the seeds' input sizes, so that pre-processing costs what it will
LESION_SIZE = (512, 512)

Floats = npt.NDArray[np.float32]


class SimulatedDevice:
    """One accelerator: calls wait their turn, and the time it was busy is counted."""

    def __init__(self, ms_per_image: float) -> None:
        if ms_per_image <= 0:
            raise ValueError("a simulated device needs a positive time per image")
        self.ms_per_image = ms_per_image
        self._lock = threading.Lock()
        self._busy_s = 0.0

    def run(self, images: int, share: float) -> None:
        """Occupies the device for ``images`` x ``share`` of the time per image."""
        seconds = images * share * self.ms_per_image / 1000
        with self._lock:
            time.sleep(seconds)
            self._busy_s += seconds

    @property
    def busy_s(self) -> float:
        """Seconds the device has been occupied so far."""
        with self._lock:
            return self._busy_s


class SimulatedStage:
    """A stage model (``pipeline.Predictor``) that waits on the simulated device and
    returns the same plausible probability map for every image."""

    def __init__(
        self, device: SimulatedDevice, template: Floats, channels: int, share: float
    ) -> None:
        self.device = device
        self._template = template
        self._channels = channels
        self._share = share

    @property
    def input_size(self) -> tuple[int, int]:
        """(height, width) this stage works at."""
        height, width = self._template.shape
        return int(height), int(width)

    @property
    def input_channels(self) -> int:
        """1 for grayscale models, 3 for RGB."""
        return self._channels

    def warm_up(self) -> None:
        """Nothing to trace."""

    def predict_batch(self, images: Floats) -> Floats:
        """The template for each image (read-only, shared), after the device's wait."""
        count = images.shape[0]
        self.device.run(count, self._share)
        return np.broadcast_to(self._template, (count, *self._template.shape))


def simulated_stages(ms_per_image: float) -> Stages:
    """Both stages on one simulated device of ``ms_per_image`` per image."""
    device = SimulatedDevice(ms_per_image)
    cervix = SimulatedStage(device, _ellipse(CERVIX_SIZE, 0.32, 0.30), 3, STAGE1_SHARE)
    lesion = SimulatedStage(
        device, _ellipse(LESION_SIZE, 0.22, 0.18, (0.42, 0.55)), 1, 1 - STAGE1_SHARE
    )
    version = f"simulated-{ms_per_image:g}ms"
    return Stages(
        cervix=cervix,
        lesion=lesion,
        cervix_version=version,
        lesion_version=version,
        precision="simulated",
    )


def _ellipse(
    size: tuple[int, int],
    half_width: float,
    half_height: float,
    centre: tuple[float, float] = (0.5, 0.5),
) -> Floats:
    """Probabilities of a soft-edged ellipse (fractions of the size), 1 inside to 0 out."""
    height, width = size
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    distance = ((x / width - centre[0]) / half_width) ** 2
    distance += ((y / height - centre[1]) / half_height) ** 2
    template = np.clip(1.5 - distance, 0.0, 1.0).astype(np.float32)
    template.setflags(write=False)
    return template
