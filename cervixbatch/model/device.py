"""TensorFlow's process-wide set-up: devices, GPU memory, numeric precision.

Done once per process, before the first model is loaded: TensorFlow refuses to change
memory growth once a GPU is initialised.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import os
import sys
from collections.abc import Iterator
from pathlib import Path

import structlog

from cervixbatch.config import Precision

__all__ = ["DeviceInfo", "configure_tensorflow", "resolve_precision"]

log = structlog.get_logger(__name__)


@dataclasses.dataclass(frozen=True, slots=True)
class DeviceInfo:
    """What inference runs on."""

    device: str  # "/GPU:0" or "/CPU:0"
    gpus: int
    cpu_bf16: bool  # the CPU has native bfloat16 arithmetic (AVX512_BF16 or AMX)


@contextlib.contextmanager
def _quiet_native_stderr() -> Iterator[None]:
    """Hides what TensorFlow's C++ core prints while it loads.

    Its start-up chatter (absl and oneDNN notices) ignores TF_CPP_MIN_LOG_LEVEL in recent
    releases and would land in journald as unstructured lines. Python errors still raise.
    """
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    sys.stderr.flush()
    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


@functools.cache
def configure_tensorflow() -> DeviceInfo:
    """Enables GPU memory growth and returns the device inference should use."""
    with _quiet_native_stderr():
        import keras  # noqa: F401  (its first import prints too)
        import tensorflow as tf

    gpus = tf.config.list_physical_devices("GPU")
    for gpu in gpus:
        try:
            # Without growth TensorFlow takes all GPU memory at once, starving any other
            # process (a second worker, the decoder) on the same card.
            tf.config.experimental.set_memory_growth(gpu, enable=True)
        except RuntimeError:  # already initialised by an earlier import in this process
            log.warning("gpu_memory_growth_unavailable", gpu=gpu.name)
    info = DeviceInfo(
        device="/GPU:0" if gpus else "/CPU:0", gpus=len(gpus), cpu_bf16=_cpu_has_bf16()
    )
    log.info("tensorflow_configured", device=info.device, gpus=info.gpus, cpu_bf16=info.cpu_bf16)
    return info


def resolve_precision(requested: Precision, info: DeviceInfo) -> Precision:
    """Turns ``auto`` into a concrete precision for this device.

    GPUs get float16 with float32 master weights (tensor cores). On CPUs, float32: bfloat16
    is only chosen when asked for, because its speed-up must be weighed against the Dice it
    costs on the evaluation set (see docs/performance.md).
    """
    if requested is not Precision.AUTO:
        return requested
    return Precision.MIXED_FLOAT16 if info.gpus else Precision.FLOAT32


def _cpu_has_bf16() -> bool:
    try:
        flags = Path("/proc/cpuinfo").read_text(encoding="ascii", errors="replace")
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags
