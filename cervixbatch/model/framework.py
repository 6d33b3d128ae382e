"""TensorFlow, checked once where it is first needed: missing or broken, it is one clear
error (a :class:`ModelError`), never a traceback from deep inside an import."""

from __future__ import annotations

import functools

from cervixbatch.errors import ModelError

__all__ = ["FRAMEWORK_MODULES", "framework_error", "require_tensorflow"]

FRAMEWORK_MODULES = frozenset({"tensorflow", "keras", "tf_keras", "ml_dtypes", "h5py"})
_HINT = "install it with `pip install tensorflow` (or reinstall cervixbatch, which requires it)"


def framework_error(exc: BaseException) -> ModelError:
    """The one-line error for a TensorFlow that cannot be imported."""
    first_line = (str(exc).strip().splitlines() or [""])[0][:200]
    detail = f"{type(exc).__name__}: {first_line}" if first_line else type(exc).__name__
    return ModelError(f"TensorFlow is missing or broken ({detail}); {_HINT}")


@functools.cache
def require_tensorflow() -> None:
    """Imports TensorFlow and Keras, or raises :class:`ModelError` saying why not."""
    try:
        import keras  # noqa: F401
        import tensorflow as tf  # noqa: F401
    except Exception as exc:  # a broken build raises anything: ImportError, AttributeError…
        raise framework_error(exc) from exc
