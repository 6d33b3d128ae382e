"""TensorFlow's process-wide set-up: devices, GPU memory, numeric precision, XLA.

Done once per process, before the first model is loaded: TensorFlow refuses to change
memory growth once a GPU is initialised. The decisions here were measured; the figures
and the commands behind them are in docs/performance.md.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import structlog

from cervixbatch.config import Precision

__all__ = [
    "CPU_BF16_AUTO",
    "DeviceInfo",
    "configure_tensorflow",
    "fitting_batch_size",
    "resolve_precision",
    "use_xla",
]

log = structlog.get_logger(__name__)

# ``auto`` on a CPU with native bfloat16 (AVX512_BF16, AMX): mixed_bfloat16, because on
# the synthetic evaluation set it kept each stage's Dice within 0.005 of float32 (measured:
# |ΔDice| ≤ 0.001) while running the stages 1.5-1.8x faster (docs/performance.md).
CPU_BF16_AUTO = True
# Share of a GPU's free memory one stage's activations may take; the rest is for weights,
# cuDNN workspaces, the other stage and other processes.
GPU_BATCH_SHARE = 0.4
_GPU_MEMORY_FALLBACK = 4 << 30  # when nvidia-smi cannot tell


@dataclasses.dataclass(frozen=True, slots=True)
class DeviceInfo:
    """What inference runs on."""

    device: str  # "/GPU:0" or "/CPU:0"
    gpus: int
    cpu_bf16: bool  # the CPU has native bfloat16 arithmetic (AVX512_BF16 or AMX)
    gpu_free_bytes: int | None = None  # free memory of the first GPU at start-up


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
        device="/GPU:0" if gpus else "/CPU:0",
        gpus=len(gpus),
        cpu_bf16=_cpu_has_bf16(),
        gpu_free_bytes=_gpu_free_bytes() if gpus else None,
    )
    log.info("tensorflow_configured", device=info.device, gpus=info.gpus, cpu_bf16=info.cpu_bf16)
    return info


def resolve_precision(requested: Precision, info: DeviceInfo) -> Precision:
    """Turns ``auto`` into a concrete precision for this device.

    GPUs get float16 with float32 weights and heads (tensor cores). A CPU with native
    bfloat16 gets mixed_bfloat16 when ``CPU_BF16_AUTO`` (a measured decision: speed
    against the Dice it costs); every other CPU float32, as emulated bfloat16 is slower.
    """
    if requested is not Precision.AUTO:
        return requested
    if info.gpus:
        return Precision.MIXED_FLOAT16
    if info.cpu_bf16 and CPU_BF16_AUTO:
        return Precision.MIXED_BFLOAT16
    return Precision.FLOAT32


def use_xla(info: DeviceInfo) -> bool:
    """XLA (``jit_compile``) for the inference call: on GPUs, where fusing the UNet's
    element-wise layers saves memory traffic, yes; on CPUs no, as oneDNN's kernels are
    faster than XLA's there (docs/performance.md)."""
    return info.gpus > 0


def fitting_batch_size(requested: int, image_bytes: int, info: DeviceInfo) -> int:
    """The batch of one compiled call: ``requested``, fewer on a GPU whose memory would not
    hold that many images' activations (``image_bytes`` each). CPUs page, so no bound."""
    if not info.gpus or image_bytes <= 0:
        return requested
    free = info.gpu_free_bytes or _GPU_MEMORY_FALLBACK
    fitting = max(1, int(free * GPU_BATCH_SHARE) // image_bytes)
    if fitting < requested:
        log.info("gpu_batch_bounded", requested=requested, batch=fitting, free_mb=free >> 20)
    return min(requested, fitting)


def _gpu_free_bytes() -> int | None:
    """Free memory of the first visible GPU, from nvidia-smi; None when it cannot tell."""
    smi = shutil.which("nvidia-smi")
    if smi is None:
        return None
    visible = os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",")[0].strip() or "0"
    try:
        out = subprocess.run(  # a fixed command, no shell
            [smi, "--query-gpu=memory.free", "--format=csv,noheader,nounits", "-i", visible],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout
        return int(out.split()[0]) << 20  # MiB
    except (OSError, subprocess.SubprocessError, ValueError, IndexError):
        return None


def _cpu_has_bf16() -> bool:
    try:
        flags = Path("/proc/cpuinfo").read_text(encoding="ascii", errors="replace")
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags
