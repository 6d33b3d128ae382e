"""cervixbatch: batch segmentation of colposcopy images with a two-stage UNet."""

from __future__ import annotations

__all__ = ["__version__"]

__version__ = "0.1.0"
