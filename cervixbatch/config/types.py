"""The fixed sets of values the settings take, as Enums converted from TOML strings."""

from __future__ import annotations

import enum

__all__ = [
    "AfterAction",
    "CervixRegion",
    "ChannelOrder",
    "LogFormat",
    "LogLevel",
    "Precision",
    "Resize",
    "Runtime",
]


class AfterAction(enum.StrEnum):
    """What happens to an input file once it is done or rejected."""

    KEEP = "keep"
    ARCHIVE = "archive"
    DELETE = "delete"


class Precision(enum.StrEnum):
    """Numeric precision of inference. ``auto`` picks per device (see model.device)."""

    AUTO = "auto"
    FLOAT32 = "float32"
    MIXED_BFLOAT16 = "mixed_bfloat16"
    MIXED_FLOAT16 = "mixed_float16"
    INT8 = "int8"  # OpenVINO only: the model `cervixbatch quantize` wrote, agreement-gated


class Runtime(enum.StrEnum):
    """What runs the models. ``auto``: OpenVINO when installed and inference is on a CPU."""

    AUTO = "auto"
    TENSORFLOW = "tensorflow"
    OPENVINO = "openvino"


class Resize(enum.StrEnum):
    """How a photo or crop is shrunk to a model's input size (OpenCV interpolations)."""

    AREA = "area"  # ours: area averaging, no aliasing
    LINEAR = "linear"  # seed 001's training data (cv2.resize's default)
    CUBIC = "cubic"  # seed 001's predict input and seed 000's crops (resize_image.py)


class ChannelOrder(enum.StrEnum):
    """The channel order a colour model is fed."""

    RGB = "rgb"
    BGR = "bgr"  # seed 001's predict script (cv2.imread), though it trained on RGB


class CervixRegion(enum.StrEnum):
    """How the binarised stage-1 mask becomes the cervix region and its crop box."""

    LARGEST = "largest"  # ours: 3×3 opening, largest component, holes filled, box + margin
    # seed 001: morphology_clean (opening, closing with disk(5)), largest contour, and
    # find_bbox/transform_bbox's arithmetic (margin on the model grid, floors)
    SEED = "seed"


class LogLevel(enum.StrEnum):
    """The least severe log event written. ``INFO`` is accepted as ``info``."""

    DEBUG = "debug"
    INFO = "info"
    WARNING = "warning"
    ERROR = "error"

    @classmethod
    def _missing_(cls, value: object) -> LogLevel | None:
        lowered = value.lower() if isinstance(value, str) else None
        return next((member for member in cls if member.value == lowered), None)


class LogFormat(enum.StrEnum):
    """``auto``: readable lines on a terminal, JSON otherwise (journald keeps the fields)."""

    AUTO = "auto"
    JSON = "json"
    CONSOLE = "console"
