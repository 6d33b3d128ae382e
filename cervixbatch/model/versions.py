"""A configured model's version — what result rows record — without loading the model.

``reprocess --other-models`` compares the versions of past results with the configured
models'; hashing the files answers that in milliseconds, where loading would import
TensorFlow. A test pins this to the version :func:`~cervixbatch.model.stage.load_stage`
reports.
"""

from __future__ import annotations

from pathlib import Path

from cervixbatch.errors import ModelError
from cervixbatch.model.loading import file_sha256
from cervixbatch.model.stage import DEMO_DIR
from cervixbatch.model.stage_names import Stage

__all__ = ["configured_version"]


def configured_version(ref: str, stage: Stage) -> str:
    """The sha256 version of ``builtin:demo`` or a model file, as loading would record it."""
    if ref.startswith("builtin:"):
        name = ref.removeprefix("builtin:")
        if name != "demo":
            raise ModelError(f"unknown built-in model {ref!r} (only 'builtin:demo' exists)")
        files = [DEMO_DIR / f"{stage}.json", DEMO_DIR / f"{stage}.weights.npz"]
    else:
        files = [Path(ref)]
    missing = [path for path in files if not path.is_file()]
    if missing:
        raise ModelError(f"{stage} model {ref} does not exist")
    return file_sha256(*files)
